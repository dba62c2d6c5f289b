import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toymodels.analysis import (analyze_heads, dense_qk_svd, feature_cosines, match_pairs,
                                qk_svd)


def orthonormal(rng, D, n):
    q, _ = np.linalg.qr(rng.normal(size=(D, D)))
    return q[:, :n]


def planted_head(W, template, H, rng=None):
    """W_Q, W_K [H, D] with Ω = W_Qᵀ W_K = Σ_p value_p w_{i_p} w_{j_p}ᵀ, optionally
    mixed by a random rotation of head space (which leaves Ω unchanged)."""
    D = W.shape[0]
    W_Q, W_K = np.zeros((H, D)), np.zeros((H, D))
    for row, (i, j, value) in enumerate(template):
        W_Q[row], W_K[row] = np.sqrt(value) * W[:, i], np.sqrt(value) * W[:, j]
    if rng is not None:
        R = orthonormal(rng, H, H)
        W_Q, W_K = R @ W_Q, R @ W_K
    return W_Q.astype(np.float32), W_K.astype(np.float32)


def test_known_answer_planted_pairs():
    rng = np.random.default_rng(0)
    D, N, H = 10, 8, 6
    W = orthonormal(rng, D, N)
    # Listed out of σ order: the assignment, not the SVD order, must find the indices.
    template = ((4, 5, 1.0), (0, 1, 3.0), (2, 6, 2.0))
    W_Q, W_K = planted_head(W, template, H, rng)
    out = analyze_heads(W[None].astype(np.float32), W_Q[None], W_K[None], template)
    S = out["singular_values"][0]
    np.testing.assert_allclose(S[:3], [3.0, 2.0, 1.0], rtol=1e-5)
    np.testing.assert_allclose(S[3:], 0, atol=1e-5)
    got = {(p["query_feature"], p["key_feature"]): p for p in out["pairs"][0]}
    for (i, j, value), expected_k in zip(template, (2, 0, 1)):
        p = got[(i, j)]
        assert p["sv_index"] == expected_k and p["target"] == value
        assert p["sigma"] == pytest.approx(value, rel=1e-5)
        assert p["cos_query_u"] == pytest.approx(1, abs=1e-5)
        assert p["cos_key_v"] == pytest.approx(1, abs=1e-5)
    # Unattended features are orthogonal to the used singular vectors.
    assert out["cos_u"][0][[3, 7]][:, :3].max() < 1e-5


def test_thin_route_matches_float64_dense_oracle():
    rng = np.random.default_rng(1)
    for D, H in ((10, 10), (50, 10), (50, 50), (384, 32)):
        W_Q = rng.normal(size=(4, H, D)).astype(np.float32)
        W_K = rng.normal(size=(4, H, D)).astype(np.float32)
        U, S, V = (np.asarray(x) for x in qk_svd(W_Q, W_K))
        omega = np.swapaxes(W_Q, -1, -2).astype(np.float64) @ W_K.astype(np.float64)
        U64, S64, Vt64 = np.linalg.svd(omega)
        K = min(D, H)
        assert S.shape == (4, K) and U.shape == (4, D, K)
        # Within 1e-5 of σ_1 (float32 cannot resolve tiny σ_k more finely than that).
        assert np.all(np.abs(S - S64[:, :K]) <= 1e-5 * S64[:, :1])
        gaps = np.diff(S64[:, :K], axis=-1)
        for b in range(4):
            for k in range(K):  # well-separated singular values only
                sep = min(-gaps[b, k - 1] if k else np.inf, -gaps[b, k] if k < K - 1 else np.inf)
                if sep > 1e-2 * S64[b, 0]:
                    assert abs(U[b, :, k] @ U64[b, :, k]) > 1 - 1e-4
                    assert abs(V[b, :, k] @ Vt64[b, k]) > 1 - 1e-4
        dense_S = np.asarray(dense_qk_svd(W_Q, W_K)[1])
        assert np.all(np.abs(dense_S[:, :K] - S64[:, :K]) <= 1e-5 * S64[:, :1])


def test_more_pairs_than_singular_vectors_leaves_some_unmatched():
    cos = np.eye(4)[:, :2]
    pairs = match_pairs(((0, 0, 1.0), (1, 1, 1.0), (2, 2, 1.0)), cos, cos, np.ones(2))
    assert sorted(p["sv_index"] for p in pairs if p["sv_index"] is not None) == [0, 1]
    assert [p["sv_index"] for p in pairs].count(None) == 1


def test_empty_template_gives_no_pairs():
    out = analyze_heads(np.ones((2, 4, 5), np.float32), np.ones((2, 3, 4), np.float32),
                        np.ones((2, 3, 4), np.float32), ())
    assert out["pairs"] == [[], []]


# Fixed shapes for hypothesis (every new shape recompiles).
D, N, H = 10, 12, 6


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), flips=st.lists(st.sampled_from([-1.0, 1.0]),
                                                      min_size=2 * H, max_size=2 * H))
def test_alignment_is_unchanged_by_sign_flips(seed, flips):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(D, N)).astype(np.float32)
    U, S, V = qk_svd(rng.normal(size=(H, D)).astype(np.float32),
                     rng.normal(size=(H, D)).astype(np.float32))
    s_u, s_v = np.asarray(flips[:H], np.float32), np.asarray(flips[H:], np.float32)
    a_u, a_v = feature_cosines(W, U, V)
    b_u, b_v = feature_cosines(W, np.asarray(U) * s_u, np.asarray(V) * s_v)
    np.testing.assert_array_equal(a_u, b_u)
    np.testing.assert_array_equal(a_v, b_v)
    template = ((0, 1, 1.0), (2, 3, 0.5))
    assert match_pairs(template, a_u, a_v, S) == match_pairs(template, b_u, b_v, S)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), perm_seed=st.integers(0, 2**31 - 1))
def test_alignment_is_unchanged_by_feature_permutation_and_head_rotation(seed, perm_seed):
    rng = np.random.default_rng(seed)
    W = orthonormal(rng, D, D) @ rng.normal(size=(D, N)) / 3  # features in superposition
    template = ((0, 1, 2.0), (2, 3, 1.0))
    W_Q, W_K = planted_head(W, template, H)
    W_Q = W_Q + 0.01 * rng.normal(size=W_Q.shape).astype(np.float32)  # not exact
    base = analyze_heads(W[None].astype(np.float32), W_Q[None], W_K[None], template)

    perm = np.random.default_rng(perm_seed).permutation(N)  # new index of old feature i
    W_perm = np.empty_like(W)
    W_perm[:, perm] = W
    template_perm = tuple((int(perm[i]), int(perm[j]), v) for i, j, v in template)
    R = orthonormal(np.random.default_rng(perm_seed), H, H).astype(np.float32)
    moved = analyze_heads(W_perm[None].astype(np.float32), (-R @ W_Q)[None],
                          (-R @ W_K)[None], template_perm)
    np.testing.assert_allclose(moved["singular_values"], base["singular_values"], rtol=1e-4,
                               atol=1e-6)
    for a, b in zip(base["pairs"][0], moved["pairs"][0]):
        assert a["sv_index"] == b["sv_index"]
        for key in ("cos_query_u", "cos_key_v", "sigma"):
            assert a[key] == pytest.approx(b[key], abs=1e-4)
