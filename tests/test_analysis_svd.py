"""The jit SVDs of QK and OV (analysis/svd.py) against a float64 NumPy oracle, and their
invariances."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import orthonormal
from toymodels.analysis.svd import (dense_qk_svd, feature_cosines, ov_svd, principal_cosines,
                                    qk_svd, random_rotations)


def head_with_spectrum(rng, D, H, sigma):
    """W_Q, W_K [H, D] whose Ω has singular values sigma (len <= min(D, H)) and random
    singular vectors, mixed by a random rotation of head space."""
    r = len(sigma)
    U, V = orthonormal(rng, D, r), orthonormal(rng, D, r)
    R = orthonormal(rng, H, H)[:, :r]
    root = np.sqrt(np.asarray(sigma))
    return (R @ (root[:, None] * U.T)), (R @ (root[:, None] * V.T))


SHAPES = [(D, H) for D in (10, 50, 384) for H in (10, 32, 50)]


def oracle(W_Q, W_K):
    omega = np.swapaxes(W_Q, -1, -2).astype(np.float64) @ W_K.astype(np.float64)
    U, S, Vt = np.linalg.svd(omega)
    return U, S, np.swapaxes(Vt, -1, -2)


@pytest.mark.parametrize("D,H", SHAPES)
def test_svd_matches_float64_oracle(D, H):
    """9 shapes × 120 heads = 1,080 heads: 100 Gaussian, 20 with repeated σ."""
    rng = np.random.default_rng(D * 1000 + H)
    K = min(D, H)
    W_Q = rng.normal(size=(120, H, D))
    W_K = rng.normal(size=(120, H, D))
    for n in range(100, 120):  # σ in repeated blocks of 3: (5, 5, 5, 2, 2, 2, 1, 1, 1, ...)
        sigma = np.repeat([5.0, 2.0, 1.0, 0.5] * K, 3)[:K]
        W_Q[n], W_K[n] = head_with_spectrum(rng, D, H, sigma)
    W_Q, W_K = W_Q.astype(np.float32), W_K.astype(np.float32)
    U, S, V = (np.asarray(x, np.float64) for x in qk_svd(W_Q, W_K))
    U64, S64, V64 = oracle(W_Q, W_K)
    assert S.shape == (120, K) and U.shape == V.shape == (120, D, K)
    # float32 resolves σ_k to a fraction of σ_1 (Weyl), not of σ_k itself.
    assert np.all(np.abs(S - S64[:, :K]) <= 1e-5 * S64[:, :1])

    for n in range(120):
        s = S64[n, :K]
        # Group indices into clusters of (near-)equal σ; compare vectors or subspaces.
        cuts = np.flatnonzero(-np.diff(s) > 1e-2 * s[0]) + 1
        for block in np.split(np.arange(K), cuts):
            if s[block[0]] < 1e-3 * s[0]:
                continue  # null-space directions are arbitrary
            if len(block) == 1:
                k = block[0]
                assert 1 - abs(U[n, :, k] @ U64[n, :, k]) <= 1e-4
                assert 1 - abs(V[n, :, k] @ V64[n, :, k]) <= 1e-4
            else:
                for A, B in ((U, U64), (V, V64)):
                    cos = np.linalg.svd(A[n][:, block].T @ B[n][:, block], compute_uv=False)
                    assert cos.min() >= 1 - 1e-4, (n, block, cos)


def test_dense_oracle_route_agrees():
    rng = np.random.default_rng(3)
    W_Q, W_K = (rng.normal(size=(8, 10, 50)).astype(np.float32) for _ in range(2))
    thin_S = np.asarray(qk_svd(W_Q, W_K)[1])
    dense_S = np.asarray(dense_qk_svd(W_Q, W_K)[1])
    np.testing.assert_allclose(dense_S[:, :10], thin_S, atol=1e-5 * thin_S[:, :1].max())
    np.testing.assert_allclose(dense_S[:, 10:], 0, atol=1e-4)


def test_ov_is_W_O_times_W_V():
    rng = np.random.default_rng(4)
    W_V = rng.normal(size=(3, 8, 40)).astype(np.float32)
    W_O = rng.normal(size=(3, 40, 8)).astype(np.float32)
    U, S, V = (np.asarray(x) for x in ov_svd(W_V, W_O))
    ov = W_O.astype(np.float64) @ W_V.astype(np.float64)
    np.testing.assert_allclose(U * S[:, None, :] @ np.swapaxes(V, -1, -2), ov,
                               atol=1e-4 * np.abs(ov).max())
    np.testing.assert_allclose(S, np.linalg.svd(ov, compute_uv=False)[:, :8], rtol=1e-5)


# Hypothesis draws values on fixed shapes (every new shape recompiles).
D, N, H = 10, 12, 6


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), flips=st.lists(st.sampled_from([-1.0, 1.0]),
                                                      min_size=2 * H, max_size=2 * H))
def test_cosines_are_unchanged_by_sign_flips(seed, flips):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(D, N)).astype(np.float32)
    U, S, V = qk_svd(rng.normal(size=(H, D)).astype(np.float32),
                     rng.normal(size=(H, D)).astype(np.float32))
    s_u, s_v = np.asarray(flips[:H], np.float32), np.asarray(flips[H:], np.float32)
    a_u, a_v = feature_cosines(W, U, V)
    b_u, b_v = feature_cosines(W, np.asarray(U) * s_u, np.asarray(V) * s_v)
    np.testing.assert_array_equal(a_u, b_u)
    np.testing.assert_array_equal(a_v, b_v)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), angle=st.floats(0, 2 * np.pi))
def test_principal_angles_are_unchanged_by_rotation_inside_a_degenerate_subspace(seed, angle):
    rng = np.random.default_rng(seed)
    sigma = [3.0, 3.0, 1.0]  # σ_1 = σ_2: only span(u_1, u_2) is defined
    W_Q, W_K = head_with_spectrum(rng, D, H, sigma)
    U, S, V = (np.asarray(x) for x in qk_svd(W_Q.astype(np.float32), W_K.astype(np.float32)))
    c, s = np.cos(angle), np.sin(angle)
    G = np.eye(H, dtype=np.float32)
    G[:2, :2] = [[c, -s], [s, c]]  # the same rotation of u_1, u_2 and v_1, v_2 keeps Ω
    U_rot, V_rot = U @ G, V @ G
    np.testing.assert_allclose((U_rot * S) @ V_rot.T, (U * S) @ V.T, atol=1e-5)
    F = rng.normal(size=(D, 2)).astype(np.float32)
    mask = np.ones(H, bool)
    a = np.asarray(principal_cosines(F, U, 2, mask))
    b = np.asarray(principal_cosines(F, U_rot, 2, mask))
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_random_rotations_keep_the_masked_span_and_nothing_else():
    import jax

    mask = np.array([True, True, True, False, False])
    R = np.asarray(random_rotations(jax.random.key(0), mask))
    np.testing.assert_allclose(R @ R.T, np.eye(5), atol=1e-5)
    np.testing.assert_allclose(R[3:, 3:], np.eye(2), atol=1e-6)
    np.testing.assert_allclose(R[:3, 3:], 0, atol=1e-6)
    assert np.abs(R[:3, :3] - np.eye(3)).max() > 0.1  # it does rotate
