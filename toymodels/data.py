"""Synthetic tokens with planted features (paper-notes §1).

Shapes:
  B  batch of queries     m  key tokens per query     N  features
  f_q [B, N] query features, f_k [B, m, N] key features: sparse, non-negative.

Sampling is a pure function of its PRNG key, so a training run's data stream
is fixed by (seed, step) and nothing else.
"""

import jax
import jax.numpy as jnp
import numpy as np

from toymodels.config import ToyConfig


def template_matrix(template, N: int) -> np.ndarray:
    """Dense T [N, N] from (query_feature, key_feature, value) triples."""
    T = np.zeros((N, N), np.float32)
    for i, j, value in template:
        T[i, j] = value
    return T


def importance_weights(cfg: ToyConfig) -> np.ndarray:
    """I_i = importance_decay ** i, shape [N]."""
    return (cfg.importance_decay ** np.arange(cfg.N)).astype(np.float32)


def sample_features(key, p_active, shape) -> jax.Array:
    """Features of `shape` (..., N): each active with prob p_active [N], magnitude U[0, 1]."""
    k_on, k_mag = jax.random.split(key)
    on = jax.random.uniform(k_on, shape) < jnp.broadcast_to(p_active, shape)
    magnitude = jax.random.uniform(k_mag, shape)
    return jnp.where(on, magnitude, 0.0)


def sample_onehot(key, shape) -> jax.Array:
    """One-hot tokens of `shape` (..., N): one feature each, uniform, magnitude 1."""
    return jax.nn.one_hot(jax.random.randint(key, shape[:-1], 0, shape[-1]), shape[-1])


def sample_batch(key, p_active, batch_size: int, m: int, tokens: str = "sparse"):
    """One training batch: f_q [B, N] and f_k [B, m, N]."""
    N = p_active.shape[-1]
    k_q, k_k = jax.random.split(key)
    if tokens == "onehot":
        return sample_onehot(k_q, (batch_size, N)), sample_onehot(k_k, (batch_size, m, N))
    f_q = sample_features(k_q, p_active, (batch_size, N))
    f_k = sample_features(k_k, p_active, (batch_size, m, N))
    return f_q, f_k


def second_moment(cfg: ToyConfig) -> np.ndarray:
    """M = E[f fᵀ] [N, N] of one token (float64): the input statistics in Theorem 1's
    normal equations. Sparse: E[f_i²] = p_i/3, E[f_i f_j] = p_i p_j/4 (U[0, 1] magnitudes)."""
    if cfg.tokens == "onehot":
        return np.eye(cfg.N) / cfg.N
    p = np.asarray(cfg.p_active_vector, np.float64)
    M = np.outer(p, p) / 4
    np.fill_diagonal(M, p / 3)
    return M


def target_logits(f_q, f_k, T, target_scale):
    """t_j = target_scale * f_q^T T f_j, shape [B, m]."""
    return target_scale * jnp.einsum("bn,nk,bjk->bj", f_q, T, f_k)
