"""Planted features shared by every task: sparse activations and feature frames.

Shapes: N features, D residual dim; activations f [..., N] (sparse, non-negative);
frames X [D, N] (column x_i is feature i's direction).
"""

import jax
import jax.numpy as jnp
import numpy as np


def sample_features(key, p_active, shape) -> jax.Array:
    """Features of `shape` (..., N): each active with prob p_active [N], magnitude U[0, 1].

    One uniform u per feature does both: active when u < p, and then u/p is again
    uniform on [0, 1) (u given u < p is uniform on [0, p)): half the draws of separate
    activity and magnitude draws, which were half of a toy training step."""
    p = jnp.broadcast_to(p_active, shape)
    with _fast_threefry():
        u = jax.random.uniform(key, shape)
    return jnp.where(u < p, u / jnp.where(p > 0, p, 1.0), 0.0)


def _fast_threefry():
    """Threefry in its non-partitionable layout while tracing the draws: on the CPU it
    draws the same number of bits 2.6x faster (17.7 against 46.8 ms a step for 64
    instances of the single-pair preset's tokens, benchmarks/bench_train.py). Values are
    still a pure function of the key, the same alone or vmapped with other instances;
    only the stream differs from the default layout. Scoped, so callers' own JAX code
    keeps their setting."""
    return jax.threefry_partitionable(False)


def sample_onehot(key, shape) -> jax.Array:
    """One-hot tokens of `shape` (..., N): one feature each, uniform, magnitude 1."""
    with _fast_threefry():
        index = jax.random.randint(key, shape[:-1], 0, shape[-1])
    return jax.nn.one_hot(index, shape[-1])


def anisotropic_features(rng: np.random.Generator, N: int, D: int, eps: float,
                         M=None) -> np.ndarray:
    """Features X [D, N] with tr(X Xᵀ) = N and ‖E_X‖₂ / α = eps exactly (α = tr(Σ_X)/D).

    Σ_X has one spike α(1 + eps) along a random direction and α(1 − eps/(D−1)) on the
    other D − 1 (so the trace stays Dα), as a few dominant directions do in real
    residual streams. eps = 0 gives a random tight frame (Σ_X = (N/D) I).
    Σ_X is X Xᵀ, or X M Xᵀ when a token second moment M [N, N] (positive definite) is
    given: the matrix a loss on such tokens sees (sparse tokens add a mean term to M).
    Needs N >= D and 0 <= eps < D − 1 (beyond that an eigenvalue would be <= 0)."""
    if N < D:
        raise ValueError(f"need N >= D for a full-rank frame, got N={N}, D={D}")
    if not 0 <= eps < D - 1:
        raise ValueError(f"eps must be in [0, D-1) = [0, {D - 1}), got {eps}")
    alpha = N / D
    eig = np.full(D, alpha * (1 - eps / (D - 1)))
    eig[0] = alpha * (1 + eps)
    U, _ = np.linalg.qr(rng.standard_normal((D, D)))
    R, _ = np.linalg.qr(rng.standard_normal((N, D)))  # [N, D], orthonormal columns
    X = U @ np.diag(np.sqrt(eig)) @ R.T
    if M is None:
        return X
    # X M^{-1/2} has X M Xᵀ = U diag(eig) Uᵀ; a scalar rescale restores tr(X Xᵀ) = N
    # and leaves ε (a ratio) alone.
    lam, Q = np.linalg.eigh(np.asarray(M, np.float64))
    X = X @ (Q / np.sqrt(lam)) @ Q.T
    return X * np.sqrt(N / np.trace(X @ X.T))
