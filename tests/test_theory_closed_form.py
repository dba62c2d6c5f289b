"""The theory's math (theory/closed_form.py: closed form, bound, feature construction)
against float64 checks. The training modes the theory checks rely on are tested where they
live: one-hot tokens in test_tasks_toy.py, frozen parameters in test_training_loop.py."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toymodels.theory import closed_form as theory
from toymodels.configs import ToyConfig
from toymodels.tasks.toy import second_moment, template_matrix

seeds = st.integers(0, 2**31 - 1)


def _well_conditioned(rng, D, N):
    X = rng.standard_normal((D, N))
    return X + 2.0 * np.eye(D, N)  # keeps Σ_X = X Xᵀ well away from singular


@settings(max_examples=40, deadline=None)
@given(seed=seeds, D=st.integers(2, 8), extra=st.integers(0, 6),
       scale=st.floats(0.1, 10))
def test_closed_form_solves_the_normal_equations(seed, D, extra, scale):
    rng = np.random.default_rng(seed)
    N = D + extra
    X, Y = _well_conditioned(rng, D, N), _well_conditioned(rng, D, N)
    T = rng.standard_normal((N, N)) * (rng.random((N, N)) < 0.3)
    A = rng.standard_normal((N, N))
    M_q = A @ A.T / N + np.eye(N)  # a random second moment (SPD)
    M_k = np.diag(rng.random(N) + 0.1)
    Omega = theory.closed_form_omega(X, Y, T, scale, M_q, M_k)
    lhs = theory.frame_operator(X, M_q) @ Omega @ theory.frame_operator(Y, M_k)
    np.testing.assert_allclose(lhs, scale * X @ M_q @ T @ M_k @ Y.T, atol=1e-8 * (1 + abs(lhs).max()))


@settings(max_examples=20, deadline=None)
@given(seed=seeds)
def test_closed_form_minimises_the_squared_error(seed):
    """Ω* beats random perturbations of itself on the exact expected loss
    tr(A M_k Aᵀ M_q), A = XᵀΩY − sT (independent query and key tokens)."""
    rng = np.random.default_rng(seed)
    D, N = 4, 7
    X, Y = _well_conditioned(rng, D, N), _well_conditioned(rng, D, N)
    T = template_matrix(((0, 1, 1.0), (2, 3, 0.5)), N)
    cfg = ToyConfig(N=N, D=D, H=D, p_active=0.3)
    M = second_moment(cfg)

    def loss(Om):
        A = X.T @ Om @ Y - 2.0 * T
        return np.trace(A @ M @ A.T @ M)

    star = theory.closed_form_omega(X, Y, T, 2.0, M, M)
    for _ in range(5):
        assert loss(star) <= loss(star + 1e-3 * rng.standard_normal((D, D)))


def test_one_hot_single_pair_is_the_notes_rank_one_formula():
    rng = np.random.default_rng(0)
    X = theory.anisotropic_features(rng, 12, 5, 0.7)
    cfg = ToyConfig(N=12, D=5, H=5, tokens="onehot")
    M = second_moment(cfg)
    star = theory.closed_form_omega(X, X, template_matrix(((0, 1, 1.0),), 12), 1.0, M, M)
    S_inv = np.linalg.inv(X @ X.T)
    np.testing.assert_allclose(star, S_inv @ np.outer(X[:, 0], X[:, 1]) @ S_inv, atol=1e-12)
    assert np.linalg.matrix_rank(star, tol=1e-9) == 1


@settings(max_examples=40, deadline=None)
@given(seed=seeds, D=st.integers(2, 12), extra=st.integers(0, 20), frac=st.floats(0, 0.99))
def test_anisotropic_features_hit_the_requested_level(seed, D, extra, frac):
    N = D + extra
    eps = frac * (D - 1)
    X = theory.anisotropic_features(np.random.default_rng(seed), N, D, eps)
    alpha, e = theory.anisotropy(X @ X.T)
    assert X.shape == (D, N)
    assert alpha == pytest.approx(N / D, rel=1e-9)
    assert e / alpha == pytest.approx(eps, abs=1e-9)


def test_isotropic_features_are_a_tight_frame():
    X = theory.anisotropic_features(np.random.default_rng(1), 20, 10, 0.0)
    np.testing.assert_allclose(X @ X.T, 2.0 * np.eye(10), atol=1e-12)


def test_anisotropic_features_reject_impossible_levels():
    with pytest.raises(ValueError, match="eps"):
        theory.anisotropic_features(np.random.default_rng(0), 20, 10, 9.0)
    with pytest.raises(ValueError, match="N >= D"):
        theory.anisotropic_features(np.random.default_rng(0), 5, 10, 0.1)


@settings(max_examples=100, deadline=None)
@given(seed=seeds, D=st.integers(2, 10), spread=st.floats(0.0, 1.0))
def test_neumann_bound_holds(seed, D, spread):
    """sin∠(Σ⁻¹x, x) <= ε/(1−ε) for random SPD Σ and random x (checked before trusting it)."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((D, D)))
    Sigma = Q @ np.diag(1 + spread * rng.random(D) * 2) @ Q.T
    x = rng.standard_normal(D)
    assert theory.sin_angle(np.linalg.solve(Sigma, x), x) <= theory.sin_bound(Sigma) + 1e-12


@settings(max_examples=100, deadline=None)
@given(seed=seeds, D=st.integers(2, 10), spread=st.floats(0.0, 20.0))
def test_tight_bound_holds(seed, D, spread):
    """sin∠(Σ⁻¹x, x) <= (κ−1)/(κ+1) for random SPD Σ and random x (checked before trusting it)."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((D, D)))
    Sigma = Q @ np.diag(1 + spread * rng.random(D)) @ Q.T
    x = rng.standard_normal(D)
    assert theory.sin_angle(np.linalg.solve(Sigma, x), x) <= theory.tight_sin_bound(Sigma) + 1e-12


@pytest.mark.parametrize("kappa", [1.5, 6.0, 100.0])
def test_tight_bound_is_attained(kappa):
    """x ∝ √κ e_max + e_min (eigenvectors of Σ) reaches the bound: it cannot be smaller."""
    Sigma = np.diag([kappa, (1 + kappa) / 2, 1.0])
    x = np.array([np.sqrt(kappa), 0.0, 1.0])
    assert theory.sin_angle(np.linalg.solve(Sigma, x), x) == pytest.approx(
        theory.tight_sin_bound(Sigma), abs=1e-12)
    assert theory.tight_sin_bound(Sigma) == pytest.approx((kappa - 1) / (kappa + 1))


@pytest.mark.parametrize("seed", range(3))
def test_anisotropic_features_hit_the_level_of_the_matrix_the_loss_sees(seed):
    """With a token second moment M, ε is exact for X M Xᵀ (sparse tokens' mean term), and
    tr(X Xᵀ) = N still."""
    from toymodels.configs import preset
    from toymodels.tasks.toy import second_moment
    M = second_moment(preset("single-pair"))
    X = theory.anisotropic_features(np.random.default_rng(seed), 20, 10, 1.72, M=M)
    alpha, e = theory.anisotropy(theory.frame_operator(X, M))
    assert e / alpha == pytest.approx(1.72, abs=1e-9)
    assert np.trace(X @ X.T) == pytest.approx(20)
    alpha0, e0 = theory.anisotropy(theory.frame_operator(X))
    assert abs(e0 / alpha0 - 1.72) > 0.01  # X Xᵀ alone is not the matrix the loss sees


@pytest.mark.parametrize("seed", range(3))
def test_the_squared_error_loss_is_the_metric_around_its_optimum(seed):
    """One-hot tokens, loss enumerated over all (query, key) token pairs in float64:
    L(Ω) − L(Ω*) = ‖Σ_X^{1/2}(Ω − Ω*)Σ_Y^{1/2}‖_F² (with Σ = X M Xᵀ, M = I/N), and the
    rank-H optimum has lower loss than any other rank-H Ω tried, the plain truncation too."""
    rng = np.random.default_rng(seed)
    N, D, H = 9, 5, 2
    X, Y = rng.standard_normal((D, N)), rng.standard_normal((D, N))
    T = np.zeros((N, N))
    T[[0, 1, 2, 3], [4, 5, 6, 7]] = [1.0, 0.7, 0.5, 0.3]
    M = np.eye(N) / N

    def loss(Omega):  # E over independent one-hot query and key tokens
        return np.mean((X.T @ Omega @ Y - 2.0 * T) ** 2)

    star = theory.closed_form_omega(X, Y, T, 2.0, M, M)
    Sx, Sy = theory.frame_operator(X, M), theory.frame_operator(Y, M)
    for _ in range(5):
        Omega = rng.standard_normal((D, D))
        assert loss(Omega) - loss(star) == pytest.approx(
            theory.loss_metric(Omega - star, Sx, Sy) ** 2, rel=1e-9)
    best = theory.rank_h_optimum(star, Sx, Sy, H)
    assert np.linalg.matrix_rank(best) == H
    U, S, Vt = np.linalg.svd(star)
    others = [(U[:, :H] * S[:H]) @ Vt[:H]] + [best + 0.01 * rng.standard_normal((D, H)) @
                                              rng.standard_normal((H, D)) for _ in range(5)]
    for other in others:
        assert loss(best) < loss(other)


def test_bound_is_zero_for_isotropy_and_vacuous_beyond_half():
    assert theory.sin_bound(3.0 * np.eye(4)) == 0.0
    assert theory.sin_bound(np.diag([1.0, 1.0, 1.0, 4.0])) == 1.0  # ε = 1.2/1.75 > 1/2
