"""JAX building blocks shared by the BERT and GPT-2 forward passes (float32, full precision).

Shapes: x [P, T, D]; mask [P, T, T] bool; per-layer head weights W_Q, W_K, W_V [n, H, D],
W_O [n, D, H], b_Q, b_K, b_V [n, H]; logits and probs [P, n, T, T].
"""

import jax
import jax.numpy as jnp

from toymodels.models.layers import lift, normalize

NEG_INF = -1e30  # a finite -inf: a row with no visible key stays finite


def layer_norm(x, gain, bias, eps):
    """(LN(x), normalized x): LN(x) = normalized * gain + bias (models/layers.py)."""
    normalized = normalize(x, eps)
    return normalized * lift(gain, x) + lift(bias, x), normalized


def dense(x, W, b):
    """x [..., D_in] @ Wᵀ + b, W [D_out, D_in] (nn.Linear layout)."""
    y = x @ W.T
    return y + lift(b, y)


def activation(name: str):
    if name == "gelu":
        return lambda x: jax.nn.gelu(x, approximate=False)
    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        return lambda x: jax.nn.gelu(x, approximate=True)
    if name == "relu":
        return jax.nn.relu
    raise ValueError(name)


ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu")


def head_logits(x, W_Q, W_K, b_Q, b_K):
    """ℓ(d, s) = (W_Q x_d + b_Q)·(W_K x_s + b_K) / √H, [P, n, T, T]."""
    q = jnp.einsum("ptd,nhd->pnth", x, W_Q) + b_Q[None, :, None, :]
    k = jnp.einsum("ptd,nhd->pnth", x, W_K) + b_K[None, :, None, :]
    return jnp.einsum("pnth,pnsh->pnts", q, k) / jnp.sqrt(W_Q.shape[-2]).astype(x.dtype)


def attention(x, mask, W_Q, W_K, W_V, W_O, b_Q, b_K, b_V, b_O):
    """Multi-head attention from per-head weights: (output [P, T, D], probs [P, n, T, T])."""
    logits = jnp.where(mask[:, None], head_logits(x, W_Q, W_K, b_Q, b_K), NEG_INF)
    probs = jax.nn.softmax(logits, axis=-1)
    v = jnp.einsum("ptd,nhd->pnth", x, W_V) + b_V[None, :, None, :]
    z = jnp.einsum("pnts,pnsh->pnth", probs, v)
    out = jnp.einsum("pnth,ndh->ptd", z, W_O)
    return out + lift(b_O, out), probs
