"""Foils: wrong models of the same shapes and scale that a prediction must reject (issue 19).

A check counts only if it would reject a wrong model. Each prediction row of `toymodels
theory` is measured on the trained heads and, with the same measurement, on foils built
here; a foil that passes is a defect of the check (checks.row reports it).

Shapes (notation of docs/science.md): X [D, N] query-side and Y [D, N] key-side features,
Ω [D, D] = W_Qᵀ W_K, template ((i, j, value), ...).

  random_head      a random Ω of the same rank (significant σ) and Frobenius norm
  rotated_twin     U R Σ (V R')ᵀ: the same σ and spans, Haar-random singular bases
  naive_answer     Σ_p t_p x_i y_jᵀ: the template written on the features (Ω ∝ x₀x₁ᵀ for
                   one pair), ignoring Σ_X⁻¹ and Σ_Y⁻¹
  best_scale       the scale c minimising ‖A(cF − Ω)B‖_F (A, B = I: Frobenius; A, B =
                   Σ^{1/2}: the squared-error loss, what training restricted to F reaches)
  shuffled_pairs   every pair kept whole at another pair's strength (aligned, wrong order)
  factor           W_Q, W_K [H, D] with W_Qᵀ W_K = Ω, to hand a foil to `analyze`
"""

import numpy as np

from toymodels.analysis.svd import DEFAULT_REL_TOL


def _svd(Omega):
    return np.linalg.svd(np.asarray(Omega, np.float64))


def significant_rank(Omega, rel_tol: float = DEFAULT_REL_TOL) -> int:
    """Number of σ_k > rel_tol · σ_1 (at least 1): the rank the analysis sees."""
    S = np.linalg.svd(np.asarray(Omega, np.float64), compute_uv=False)
    return max(1, int(np.sum(S > rel_tol * S[0])))


def random_head(Omega, rng: np.random.Generator, rank: int | None = None,
                rel_tol: float = DEFAULT_REL_TOL) -> np.ndarray:
    """A random head A Bᵀ (A, B [D, r] standard normal, as random W_Qᵀ, W_K of head
    dimension r) with r = Ω's significant rank and ‖·‖_F = ‖Ω‖_F."""
    Omega = np.asarray(Omega, np.float64)
    r = significant_rank(Omega, rel_tol) if rank is None else rank
    D_q, D_k = Omega.shape
    foil = rng.standard_normal((D_q, r)) @ rng.standard_normal((r, D_k))
    return foil * (np.linalg.norm(Omega) / np.linalg.norm(foil))


def rotated_twin(Omega, rng: np.random.Generator, rel_tol: float = DEFAULT_REL_TOL,
                 block: slice | None = None) -> np.ndarray:
    """Ω with its significant left and right singular bases rotated by independent
    Haar-random orthogonal matrices: the same singular values and the same column and
    row spaces, the singular vectors themselves random inside them. block: rotate only
    those singular indices (e.g. a cluster of nearly equal σ)."""
    U, S, Vt = _svd(Omega)
    block = slice(0, significant_rank(Omega, rel_tol)) if block is None else block
    k = len(range(*block.indices(len(S))))
    U, Vt = U.copy(), Vt.copy()
    Ru, Rv = (np.linalg.qr(rng.standard_normal((k, k)))[0] for _ in range(2))
    U[:, block] = U[:, block] @ Ru
    Vt[block] = Rv.T @ Vt[block]
    return (U * S) @ Vt


def naive_answer(X, Y, template) -> np.ndarray:
    """Σ_p t_p x_i y_jᵀ [D, D]: the template written on the raw features."""
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    return sum(v * np.outer(X[:, i], Y[:, j]) for i, j, v in template)


def best_scale(foil, Omega, A=None, B=None) -> float:
    """c minimising ‖A(c·foil − Ω)B‖_F (A, B default to the identity)."""
    foil, Omega = np.asarray(foil, np.float64), np.asarray(Omega, np.float64)
    if A is not None:
        foil, Omega = A @ foil, A @ Omega
    if B is not None:
        foil, Omega = foil @ B, Omega @ B
    return float(np.sum(foil * Omega) / np.sum(foil * foil))


def shuffled_pairs(X, Y, strengths, rng: np.random.Generator) -> np.ndarray:
    """Σ_p s_π(p) x̂_p ŷ_pᵀ: every pair kept whole (unit feature directions) at another
    pair's strength, π a random derangement-like permutation (no strength keeps its
    rank when len > 1). X, Y [D, P] are the pairs' own query and key features."""
    X = np.asarray(X, np.float64) / np.linalg.norm(X, axis=0)
    Y = np.asarray(Y, np.float64) / np.linalg.norm(Y, axis=0)
    s = np.asarray(strengths, np.float64)
    perm = np.arange(len(s))
    while len(s) > 1 and (perm == np.arange(len(s))).any():
        perm = rng.permutation(len(s))
    return (X * s[perm]) @ Y.T


def factor(Omega, H: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """W_Q, W_K [H, D] (float32) with W_Qᵀ W_K = Ω, H = D unless given (H >= rank)."""
    U, S, Vt = _svd(Omega)
    H = len(S) if H is None else H
    root = np.sqrt(S[:H])[:, None]
    return (root * U[:, :H].T).astype(np.float32), (root * Vt[:H]).astype(np.float32)


def tilt(v, angle: float, rng: np.random.Generator) -> np.ndarray:
    """Unit vector at `angle` (radians) from v, in a random plane through v."""
    v = np.asarray(v, np.float64) / np.linalg.norm(v)
    w = rng.standard_normal(v.shape)
    w -= (w @ v) * v
    w /= np.linalg.norm(w)
    return np.cos(angle) * v + np.sin(angle) * w
