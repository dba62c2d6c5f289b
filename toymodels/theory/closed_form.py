"""The paper's theory (docs/science.md) as float64 NumPy: closed forms, bounds, feature sets.

Shapes (notation of docs/science.md):
  X [D, N] query-side features (columns x_i), Y [D, N] key-side features
  M [N, N] token second moment E[f fᵀ]; T [N, N] template
  Σ_X = X M Xᵀ [D, D] (with M = I: the frame operator X Xᵀ), written Σ_X = αI + E_X

Theorem 1 (squared-error loss on logits): the loss E[(f_qᵀ XᵀΩY f_k − s f_qᵀ T f_k)²]
is minimised where Σ_X Ω Σ_Y = s X M T M Yᵀ, so Ω* = s Σ_X⁺ X M T M Yᵀ Σ_Y⁺. With one-hot
tokens (M = I/N) the factors of N cancel and one pair gives the notes' rank-one
Ω* = Σ_X⁻¹ x_1 y_1ᵀ Σ_Y⁻¹.

Anisotropy scale. We write α = tr(Σ_X)/D (the mean eigenvalue) and measure anisotropy
as ε = ‖E_X‖₂ / α, which does not depend on how the features are scaled. Our feature
sets have tr(X Xᵀ) = N (unit mean squared norm), so α = N/D. The paper quotes
‖E_X‖₂ ≈ 10–55 for GPT-2; reading those as unit-norm SAE features with N/D = 32
(24,576 features in GPT-2 small's 768 dimensions, our assumption) puts GPT-2 at
ε ≈ 0.31–1.72.
"""

import numpy as np

from toymodels.tasks.features import anisotropic_features  # noqa: F401  (re-exported)

GPT2_ALPHA = 32.0
"""Assumed α of the paper's GPT-2 features: N/D = 24576/768 for unit-norm SAE features."""
GPT2_E_RANGE = (10.0, 55.0)
"""The paper's ‖E_X‖₂ range for GPT-2."""
GPT2_EPS_RANGE = tuple(e / GPT2_ALPHA for e in GPT2_E_RANGE)
"""The same range on our scale ε = ‖E_X‖₂ / α."""


def frame_operator(X, M=None) -> np.ndarray:
    """Σ_X = X M Xᵀ [D, D] (M = identity when not given)."""
    X = np.asarray(X, np.float64)
    return X @ X.T if M is None else X @ np.asarray(M, np.float64) @ X.T


def closed_form_omega(X, Y, T, scale: float = 1.0, M_q=None, M_k=None) -> np.ndarray:
    """Theorem 1's optimum Ω* = s Σ_X⁺ X M_q T M_k Yᵀ Σ_Y⁺ [D, D] (pseudo-inverses, so
    N < D works too)."""
    X, Y, T = (np.asarray(a, np.float64) for a in (X, Y, T))
    N = X.shape[1]
    M_q = np.eye(N) if M_q is None else np.asarray(M_q, np.float64)
    M_k = np.eye(N) if M_k is None else np.asarray(M_k, np.float64)
    rhs = X @ M_q @ T @ M_k @ Y.T
    return scale * np.linalg.pinv(frame_operator(X, M_q)) @ rhs @ np.linalg.pinv(
        frame_operator(Y, M_k))


def anisotropy(Sigma) -> tuple[float, float]:
    """(α, ‖E_X‖₂) for Σ_X = αI + E_X with α = tr(Σ_X)/D."""
    Sigma = np.asarray(Sigma, np.float64)
    alpha = np.trace(Sigma) / Sigma.shape[0]
    E = Sigma - alpha * np.eye(Sigma.shape[0])
    return float(alpha), float(np.linalg.norm(E, 2))


def sin_bound(Sigma) -> float:
    """Theorem 2 (Neumann series): sin∠(Σ_X⁻¹ x, x) <= ε / (1 − ε), ε = ‖E_X‖₂ / α,
    for every x; min(1, ε/(1−ε)), so 1 (no information) from ε = 1/2 on."""
    alpha, e = anisotropy(Sigma)
    eps = e / alpha
    return float(eps / (1 - eps)) if eps < 0.5 else 1.0


def condition_number(Sigma) -> float:
    """κ = λ_max / λ_min of a symmetric positive definite Σ."""
    lam = np.linalg.eigvalsh(np.asarray(Sigma, np.float64))
    return float(lam[-1] / lam[0])


def tight_sin_bound(Sigma) -> float:
    """sin∠(Σ⁻¹ x, x) <= (κ − 1)/(κ + 1) for every x (κ = cond(Σ)): the Kantorovich
    (Wielandt) inequality cos∠(x, Σx) >= 2√κ/(κ + 1), the same for Σ⁻¹ (same κ), and
    attained by x ∝ √κ·e_max + e_min. Below 1 at every ε, unlike the Neumann bound."""
    kappa = condition_number(Sigma)
    return float((kappa - 1) / (kappa + 1))


def psd_sqrt(Sigma, inverse: bool = False) -> np.ndarray:
    """Σ^{1/2} (or its pseudo-inverse Σ^{+1/2}) of a symmetric PSD matrix, float64."""
    lam, Q = np.linalg.eigh(np.asarray(Sigma, np.float64))
    keep = lam > lam.max() * 1e-12
    root = np.zeros_like(lam)
    root[keep] = np.sqrt(lam[keep]) ** (-1 if inverse else 1)
    return (Q * root) @ Q.T


def loss_metric(Omega, Sigma_X, Sigma_Y) -> float:
    """‖Σ_X^{1/2} Ω Σ_Y^{1/2}‖_F: the squared-error loss is ‖Σ_X^{1/2}(Ω − Ω*)Σ_Y^{1/2}‖_F²
    plus a constant, when query and key tokens are independent (docs/science.md: the theory)."""
    return float(np.linalg.norm(psd_sqrt(Sigma_X) @ np.asarray(Omega, np.float64)
                                @ psd_sqrt(Sigma_Y)))


def rank_h_optimum(Omega_star, Sigma_X, Sigma_Y, H: int) -> np.ndarray:
    """The best Ω of rank <= H under the squared-error loss: with A = Σ_X^{1/2},
    B = Σ_Y^{1/2} the loss is ‖A(Ω − Ω*)B‖_F² + const, so Z = AΩB is the best rank-H
    approximation of AΩ*B (Eckart–Young) and Ω_H = A⁺ [AΩ*B]_H B⁺. With one-hot tokens
    A, B whiten the features: the Frobenius norm after whitening."""
    A, B = psd_sqrt(Sigma_X), psd_sqrt(Sigma_Y)
    U, S, Vt = np.linalg.svd(A @ np.asarray(Omega_star, np.float64) @ B)
    Z = (U[:, :H] * S[:H]) @ Vt[:H]
    return psd_sqrt(Sigma_X, inverse=True) @ Z @ psd_sqrt(Sigma_Y, inverse=True)


def sin_angle(a, b) -> float:
    """sin of the angle between two lines (sign-free), from the residual of b after
    projection on a: accurate near 0, where sqrt(1 − cos²) loses half the digits."""
    a, b = (np.asarray(v, np.float64) for v in (a, b))
    a_hat = a / np.linalg.norm(a)
    return float(np.linalg.norm(b - (b @ a_hat) * a_hat) / np.linalg.norm(b))


def top_pair(Omega) -> tuple[np.ndarray, float, np.ndarray]:
    """(u_1, σ_1, v_1) of Ω."""
    U, S, Vt = np.linalg.svd(np.asarray(Omega, np.float64))
    return U[:, 0], float(S[0]), Vt[0]
