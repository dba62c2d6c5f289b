"""The paper's toy model in Flax NNX: a superposition autoencoder with one attention head.
Its losses belong to the task that defines them (tasks/toy.py).

Shapes (paper-notes notation):
  B batch, m keys per query, N features, D residual dim, H head dim
  W [D, N] feature dictionary, b [N] bias, W_Q, W_K [H, D]
  r = W f [.., D];  f' = ReLU(Wᵀ r + b);  ℓ_j = (W_Q r)·(W_K s_j);  Ω = W_Qᵀ W_K [D, D]
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
        return jax.nn.relu(self.residual(f) @ self.W + jnp.broadcast_to(self.b, f.shape))

    def attention_logits(self, f_q, f_k):  # [B, N], [B, m, N] -> [B, m]
        q = self.residual(f_q) @ self.W_Q.T  # [B, H]
        k = self.residual(f_k) @ self.W_K.T  # [B, m, H]
        return jnp.einsum("bh,bjh->bj", q, k)

    def omega(self):  # [D, D]
        return self.W_Q.T @ self.W_K
