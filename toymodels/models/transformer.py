"""A small transformer in Flax NNX whose heads are stored the way the analysis reads them.

Shapes:
  B batch, T tokens, N features, D residual width, H head dim
  L layers, n heads per layer (the model's n_heads), F MLP width (4D)
  E [D, N] embedding (a token with features f enters as E f; the readout is Eᵀ, tied)
  W_Q, W_K, W_V [L, n, H, D];  W_O [L, n, D, H];  b_Q, b_K, b_V [L, n, H];  b_O [L, D]

Attention of head (l, h): q_t = W_Q x_t + b_Q, k_s = W_K x_s + b_K (RoPE rotates both by
their positions), logits ℓ(t, s) = q_t·k_s / √H with a causal mask, where x is the
layer's attention input (the residual, or its LayerNorm with layernorm=True). Without
biases or RoPE, ℓ(t, s) = x_tᵀ Ω x_s / √H with Ω = W_Qᵀ W_K, the matrix the analysis
decomposes. With RoPE, the key at offset δ = t − s before the query sees
Ω_δ = W_Qᵀ R_{−δ} W_K (rope_offset_queries).
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from toymodels.models.layers import layer_norm, lift

HEAD_PARAMS = ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O")




def rope_angles(T: int, H: int, base: float):
    """Angles [T, H/2]: position t turns the plane (2m, 2m+1) of a head by t·θ_m."""
    theta = base ** (-jnp.arange(0, H, 2, dtype=jnp.float32) / H)
    return jnp.arange(T, dtype=jnp.float32)[:, None] * theta[None, :]


def rotate(x, angles):
    """Rotate consecutive pairs of the last axis of x [..., T, H] by angles [..., T, H/2]
    (leading axes of the two broadcast)."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    cos, sin = lift(jnp.cos(angles), x1), lift(jnp.sin(angles), x1)
    out = jnp.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)  # [..., T, H/2, 2]
    return out.reshape(out.shape[:-2] + (x.shape[-1],))


def rope_offset_queries(W_Q, offsets, base: float):
    """W_Q^(δ) = R_δ W_Q [..., δ, H, D] for each offset δ, so that the per-offset matrix
    Ω_δ = W_Qᵀ R_{−δ} W_K = (W_Q^(δ))ᵀ W_K: the analysis reads it like any other head."""
    H, D = W_Q.shape[-2:]
    theta = base ** (-jnp.arange(0, H, 2, dtype=jnp.float32) / H)
    angles = jnp.asarray(offsets, jnp.float32)[:, None] * theta[None, :]  # [δ, H/2]
    angles = jnp.broadcast_to(angles[:, None, :], (len(offsets), D, H // 2))
    columns = jnp.swapaxes(W_Q, -1, -2)[..., None, :, :]  # [..., 1, D, H]: W_Q's columns
    return jnp.swapaxes(rotate(columns, angles), -1, -2)


class Transformer(nnx.Module):
    def __init__(self, *, N: int, D: int, H: int, n_heads: int, n_layers: int, T: int,
                 mlp: bool, layernorm: bool, bias: bool, positions: str, rope_base: float,
                 init_scale: float, rngs: nnx.Rngs):
        L, n = n_layers, n_heads
        self.positions, self.rope_base, self.layernorm, self.use_mlp = (
            positions, rope_base, layernorm, mlp)

        def normal(shape, fan_in):
            return jax.random.normal(rngs.params(), shape) * init_scale / math.sqrt(fan_in)

        self.E = nnx.Param(jax.random.normal(rngs.params(), (D, N)) / math.sqrt(D))
        self.W_Q = nnx.Param(normal((L, n, H, D), D))
        self.W_K = nnx.Param(normal((L, n, H, D), D))
        self.W_V = nnx.Param(normal((L, n, H, D), D))
        self.W_O = nnx.Param(normal((L, n, D, H), n * H))
        zeros = jnp.zeros
        if bias:
            self.b_Q, self.b_K, self.b_V = (nnx.Param(zeros((L, n, H))) for _ in range(3))
            self.b_O = nnx.Param(zeros((L, D)))
        if positions == "learned":
            self.pos = nnx.Param(jax.random.normal(rngs.params(), (T, D)) * 0.1)
        if layernorm:
            self.ln1_g, self.ln1_b = nnx.Param(jnp.ones((L, D))), nnx.Param(zeros((L, D)))
            self.lnf_g, self.lnf_b = nnx.Param(jnp.ones((D,))), nnx.Param(zeros((D,)))
            if mlp:
                self.ln2_g, self.ln2_b = nnx.Param(jnp.ones((L, D))), nnx.Param(zeros((L, D)))
        if mlp:
            F = 4 * D
            self.W_in, self.b_in = nnx.Param(normal((L, F, D), D)), nnx.Param(zeros((L, F)))
            self.W_out, self.b_out = nnx.Param(normal((L, D, F), F)), nnx.Param(zeros((L, D)))

    def has(self, name: str) -> bool:
        return hasattr(self, name)

    def embed(self, f):  # [B, T, N] -> [B, T, D]
        x = f @ self.E[...].T
        if self.positions == "learned":
            x = x + self.pos[...][None, : f.shape[1]]
        return x

    def attention_input(self, x, layer: int):
        """What the heads of `layer` read: the residual, or its LayerNorm."""
        if self.layernorm:
            return layer_norm(x, self.ln1_g[...][layer], self.ln1_b[...][layer])
        return x

    def attention_logits(self, x_in, layer: int):
        """ℓ [B, n, T, T] (before the causal mask) from attention inputs x_in [B, T, D]."""
        q = jnp.einsum("btd,nhd->bnth", x_in, self.W_Q[...][layer])
        k = jnp.einsum("btd,nhd->bnth", x_in, self.W_K[...][layer])
        if self.has("b_Q"):
            q = q + self.b_Q[...][layer][None, :, None, :]
            k = k + self.b_K[...][layer][None, :, None, :]
        if self.positions == "rope":
            angles = rope_angles(x_in.shape[1], q.shape[-1], self.rope_base)
            q, k = rotate(q, angles), rotate(k, angles)
        return jnp.einsum("bnth,bnsh->bnts", q, k) / math.sqrt(q.shape[-1])

    def __call__(self, f):
        """f [B, T, N] -> (residual out [B, T, D], per layer: attention inputs [B, T, D] and
        attention probabilities [B, n, T, T])."""
        x = self.embed(f)
        T = f.shape[1]
        causal = jnp.tril(jnp.ones((T, T), bool))
        inputs, probs = [], []
        for layer in range(self.W_Q.shape[0]):
            x_in = self.attention_input(x, layer)
            logits = jnp.where(causal[None, None], self.attention_logits(x_in, layer),
                               -jnp.inf)
            attn = jax.nn.softmax(logits, axis=-1)
            v = jnp.einsum("btd,nhd->bnth", x_in, self.W_V[...][layer])
            if self.has("b_V"):
                v = v + self.b_V[...][layer][None, :, None, :]
            z = jnp.einsum("bnts,bnsh->bnth", attn, v)
            x = x + jnp.einsum("bnth,ndh->btd", z, self.W_O[...][layer])
            if self.has("b_O"):
                x = x + self.b_O[...][layer][None, None]
            if self.use_mlp:
                h = x
                if self.layernorm:
                    h = layer_norm(x, self.ln2_g[...][layer], self.ln2_b[...][layer])
                h = jax.nn.gelu(h @ self.W_in[...][layer].T + self.b_in[...][layer][None, None])
                x = x + h @ self.W_out[...][layer].T + self.b_out[...][layer][None, None]
            inputs.append(x_in)
            probs.append(attn)
        if self.layernorm:
            x = layer_norm(x, self.lnf_g[...], self.lnf_b[...])
        return x, {"inputs": inputs, "attn": probs}

    def readout(self, x, features):
        """Feature values read from the residual x [..., D] through the tied embedding:
        E_vᵀ x for each v in features -> [..., len(features)]."""
        return x @ self.E[...][:, jnp.asarray(features)]


def export_heads(params: dict) -> dict:
    """The head weights of a parameter dict (as stored in params.npz), in the analysis'
    order: W_Q, W_K, W_V [.., layer, head, H, D], W_O [.., layer, head, D, H], biases."""
    return {k: params[k] for k in HEAD_PARAMS if k in params}
