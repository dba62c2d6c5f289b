"""The paper's toy model in Flax NNX: a superposition autoencoder with one attention head.
Its losses belong to the task that defines them (tasks/toy.py).

Shapes (notation of docs/science.md):
  B batch, m keys per query, N features, D residual dim, H head dim
  W [D, N] feature dictionary, b [N] bias, W_Q, W_K [H, D]
  r = W f [.., D];  f' = ReLU(Wᵀ r + b);  ℓ_j = (W_Q r)·(W_K s_j);  Ω = W_Qᵀ W_K [D, D]
  WᵀW [N, N] and Wᵀ Ω W [N, N]: the same maps on features, f' = ReLU(WᵀW f + b) and
  ℓ_j = f_qᵀ (Wᵀ Ω W) f_j (the form of the targets, s·f_qᵀ T f_j)

Each product has two contraction orders, through the residuals or through the [N, N]
matrix. The model takes the one with fewer multiply-adds (forward and backward) for the
batch at hand, from the static shapes at trace time: for the reconstruction the [N, N] route while N is
below about 2.5 D, for the logits while N is below about (m + 1) D. The two agree to
float32 rounding (tests/test_toy_model.py).
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx


class ToyModel(nnx.Module):
    def __init__(self, N: int, D: int, H: int, *, init_scale: float, rngs: nnx.Rngs):
        # W: Xavier-normal, as in Toy Models of Superposition.
        self.W = nnx.Param(jax.random.normal(rngs.params(), (D, N)) * math.sqrt(2 / (D + N)))
        self.b = nnx.Param(jnp.zeros((N,)))
        # A small head at start, so Ω starts near zero and only learned structure remains.
        head_std = init_scale / math.sqrt(D)
        self.W_Q = nnx.Param(jax.random.normal(rngs.params(), (H, D)) * head_std)
        self.W_K = nnx.Param(jax.random.normal(rngs.params(), (H, D)) * head_std)

    def residual(self, f):  # [..., N] -> [..., D]
        return f @ self.W.T

    def reconstruct(self, f):  # [..., N] -> [..., N]
        D, N = self.W.shape
        if gram_route_is_cheaper(N, D, tokens=math.prod(f.shape[:-1])):
            pre = f @ (self.W.T @ self.W)
        else:
            pre = self.residual(f) @ self.W
        return jax.nn.relu(pre + jnp.broadcast_to(self.b, f.shape))

    def attention_logits(self, f_q, f_k):  # [B, N], [B, m, N] -> [B, m]
        (D, N), H, m = self.W.shape, self.W_Q.shape[0], f_k.shape[-2]
        if feature_route_is_cheaper(N, D, H, m, queries=math.prod(f_q.shape[:-1])):
            return jnp.einsum("bk,bjk->bj", f_q @ self.feature_qk(), f_k)
        q = self.residual(f_q) @ self.W_Q.T  # [B, H]
        k = self.residual(f_k) @ self.W_K.T  # [B, m, H]
        return jnp.einsum("bh,bjh->bj", q, k)

    def feature_qk(self):  # [N, N] = Wᵀ Ω W
        return (self.W_Q @ self.W).T @ (self.W_K @ self.W)

    def omega(self):  # [D, D]
        return self.W_Q.T @ self.W_K


# Multiply-adds of a training step, forward + backward, as (through the [N, N] matrix,
# through the residuals). No gradient flows to the features f. The [N, N] matrix is formed
# once per step; its cost is shared by the step's tokens. On the CPU the [N, N] routes make
# a step of the presets 1.2-1.6x faster (benchmarks/bench_routes.py).


def reconstruction_macs(N: int, D: int, tokens: int) -> tuple[int, int]:
    """f (WᵀW): N² + N² (gradient of WᵀW) per token, and WᵀW, DN² + 2DN² per step;
    (f Wᵀ) W: 2ND + 3ND per token."""
    return 2 * N * N * tokens + 3 * D * N * N, 5 * N * D * tokens


def logit_macs(N: int, D: int, H: int, m: int, queries: int) -> tuple[int, int]:
    """Per query and its m keys, f_q (Wᵀ Ω W) f_j: N² + mN forward, N² + mN backward (the
    gradient of f_q (Wᵀ Ω W) and of Wᵀ Ω W share Σ_j δ_j f_j), and per step Wᵀ Ω W =
    (W_Q W)ᵀ(W_K W): 2HDN + HN² forward, twice that backward. Through the residuals:
    (m + 1)(ND + DH) + mH forward, (m + 1)(ND + 2DH) + 2mH backward, per query."""
    per_step = 3 * (2 * H * D * N + H * N * N)
    return ((2 * N * N + 2 * m * N) * queries + per_step,
            ((m + 1) * (2 * N * D + 3 * D * H) + 3 * m * H) * queries)


def gram_route_is_cheaper(N: int, D: int, tokens: int) -> bool:
    features, residuals = reconstruction_macs(N, D, tokens)
    return features < residuals


def feature_route_is_cheaper(N: int, D: int, H: int, m: int, queries: int) -> bool:
    features, residuals = logit_macs(N, D, H, m, queries)
    return features < residuals
