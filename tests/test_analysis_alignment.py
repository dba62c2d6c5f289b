"""Known answers and invariances of the metric tables (analysis/alignment.py: analyze)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import orthonormal
from toymodels.analysis.alignment import analyze
from toymodels.analysis.head_rows import match, set_metrics
from toymodels.errors import AnalysisInputError


def planted_head(W, template, H, rng=None):
    """W_Q, W_K [H, D] with Ω = Σ_p value_p w_{i_p} w_{j_p}ᵀ, optionally mixed by a
    random rotation of head space (which leaves Ω unchanged)."""
    D = W.shape[0]
    W_Q, W_K = np.zeros((H, D)), np.zeros((H, D))
    for row, (i, j, value) in enumerate(template):
        W_Q[row], W_K[row] = np.sqrt(value) * W[:, i], np.sqrt(value) * W[:, j]
    if rng is not None:
        R = orthonormal(rng, H, H)
        W_Q, W_K = R @ W_Q, R @ W_K
    return W_Q.astype(np.float32), W_K.astype(np.float32)


def by_pair(rows):
    return {(p["query_feature"], p["key_feature"]): p for p in rows}


def test_known_answer_planted_pairs():
    rng = np.random.default_rng(0)
    D, N, H = 10, 8, 6
    W = orthonormal(rng, D, N).astype(np.float32)
    # Listed out of σ order: the assignment, not the SVD order, must find the indices.
    template = ((4, 5, 1.0), (0, 1, 3.0), (2, 6, 2.0))
    W_Q, W_K = planted_head(W, template, H, rng)
    out = analyze(W, layout="toymodels", W_Q=W_Q[None], W_K=W_K[None], template=template,
                  axes=("instance",))
    S = out.arrays["qk_S"][0]
    np.testing.assert_allclose(S[:3], [3.0, 2.0, 1.0], rtol=1e-5)
    np.testing.assert_allclose(S[3:], 0, atol=1e-5)
    pairs = by_pair(out.pairs)
    for (i, j, value), expected_k in zip(template, (2, 0, 1)):
        p = pairs[(i, j)]
        assert p["sv_index"] == expected_k and p["max_k"] == expected_k
        assert p["target"] == value and p["significant"]
        assert p["sigma"] == pytest.approx(value, rel=1e-5)
        assert p["cos_query_u"] == pytest.approx(1, abs=1e-5)
        assert p["cos_key_v"] == pytest.approx(1, abs=1e-5)
    (head,) = out.heads
    assert head["n_significant"] == 3
    assert head["mmcs_query_u"] == pytest.approx(1, abs=1e-5)
    assert head["hungarian_key_v"] == pytest.approx(1, abs=1e-5)
    assert head["principal_cos_query_min"] == pytest.approx(1, abs=1e-5)
    assert head["sigma_target_r2"] == pytest.approx(1, abs=1e-6)
    assert head["sigma_target_spearman"] == pytest.approx(1)
    # The random-rotation baseline keeps the span but loses the alignment.
    assert head["baseline_hungarian_query_u"] < 0.9
    assert head["mean_baseline_cos_query_u"] < head["mean_cos_query_u"] - 0.1
    # Feature geometry: orthonormal features do not interfere.
    feats = [f for f in out.features]
    assert len(feats) == N and all(f["interference"] < 1e-10 for f in feats)
    assert all(f["dimensionality"] == pytest.approx(1) for f in feats)
    assert [f["attended_query"] for f in feats[:3]] == [True, False, True]


def test_a_pair_on_a_negligible_singular_value_is_not_alignment():
    rng = np.random.default_rng(1)
    W = orthonormal(rng, 10, 8).astype(np.float32)
    W_Q, W_K = planted_head(W, ((0, 1, 1.0),), 6)
    out = analyze(W, layout="toymodels", W_Q=W_Q, W_K=W_K,
                  template=((0, 1, 1.0), (2, 3, 1.0)), axes=())
    pairs = by_pair(out.pairs)
    assert pairs[(0, 1)]["significant"] and pairs[(0, 1)]["sv_index"] == 0
    assert not pairs[(2, 3)]["significant"]
    assert out.heads[0]["n_significant"] == 1


def test_more_pairs_than_singular_vectors():
    cos = np.eye(4)[:, :2]
    assert sorted(match(cos[:3] * cos[:3]).tolist()) == [-1, 0, 1]
    mmcs, hung = set_metrics(cos, (0, 1, 2), np.ones(2, bool))
    assert mmcs == pytest.approx(2 / 3) and hung == pytest.approx(2 / 3)
    # Principal angles: 4 pairs on a rank-2 head: the span of the top-2 query features
    # is found, the rest is not.
    rng = np.random.default_rng(2)
    W = orthonormal(rng, 8, 8).astype(np.float32)
    template = ((0, 4, 2.0), (1, 5, 2.0), (2, 6, 1.0), (3, 7, 1.0))
    W_Q, W_K = planted_head(W, template[:2], 2)
    out = analyze(W, layout="toymodels", W_Q=W_Q, W_K=W_K, template=template, axes=())
    head = out.heads[0]
    assert head["principal_cos_query_mean"] == pytest.approx(1.0, abs=1e-5)  # 2 angles, both 0
    pairs = by_pair(out.pairs)
    assert pairs[(2, 6)]["sv_index"] is None and pairs[(3, 7)]["sv_index"] is None


def test_geometry_of_an_antipodal_pair():
    W = np.zeros((3, 3), np.float32)
    W[:, 0], W[:, 1], W[:, 2] = [1, 0, 0], [-1, 0, 0], [0, 1, 0]
    out = analyze(W, layout="toymodels", W_Q=np.eye(3, dtype=np.float32),
                  W_K=np.eye(3, dtype=np.float32), axes=())
    f = out.features
    assert f[0]["interference"] == pytest.approx(1) and f[2]["interference"] == pytest.approx(0)
    assert f[0]["dimensionality"] == pytest.approx(0.5) and f[2]["dimensionality"] == 1
    np.testing.assert_allclose(out.arrays["gram"], W.T @ W)


def test_layer_head_axes_and_per_instance_features():
    rng = np.random.default_rng(3)
    W_Q, W_K = rng.normal(size=(2, 3, 4, 4, 12)).astype(np.float32), \
        rng.normal(size=(2, 3, 4, 4, 12)).astype(np.float32)
    W_V, W_O = rng.normal(size=(2, 3, 4, 4, 12)).astype(np.float32), \
        rng.normal(size=(2, 3, 4, 12, 4)).astype(np.float32)
    features = rng.normal(size=(2, 12, 20)).astype(np.float32)  # one dictionary per instance
    out = analyze(features, W_Q=W_Q, W_K=W_K, W_V=W_V, W_O=W_O, template=((0, 1, 1.0),))
    assert out.axes == ("instance", "layer", "head")
    assert len(out.heads) == 2 * 2 * 3 * 4 and len(out.pairs) == 2 * 3 * 4
    assert len(out.features) == 2 * 20
    assert out.arrays["ov_cos_u"].shape == (2, 3, 4, 20, 4)
    row = next(r for r in out.heads if (r["instance"], r["layer"], r["head"], r["circuit"])
               == (1, 2, 3, "qk"))
    # The same head analysed alone, with its own instance's features.
    alone = analyze(features[1], W_Q=W_Q[1, 2, 3], W_K=W_K[1, 2, 3], template=((0, 1, 1.0),),
                    axes=())
    assert row["sigma_1"] == pytest.approx(alone.heads[0]["sigma_1"], rel=1e-5)
    assert row["mmcs_query_u"] == pytest.approx(alone.heads[0]["mmcs_query_u"], abs=1e-5)


@pytest.mark.parametrize("kwargs,message", [
    ({"W_Q": np.ones((2, 5))}, "QK needs both W_Q and W_K"),
    ({}, "give W_Q and W_K"),
    ({"W_Q": np.ones((2, 6)), "W_K": np.ones((2, 6))}, "its D axis is 6"),
    ({"W_Q": np.ones((1, 1, 1, 1, 2, 5)), "W_K": np.ones((1, 1, 1, 1, 2, 5))},
     "name them with axes"),
    ({"W_Q": np.ones((2, 5)), "W_K": np.ones((2, 5)), "template": ((0, 9, 1.0),)},
     "out of range for N=4"),
])
def test_bad_input_is_a_typed_error(kwargs, message):
    with pytest.raises(AnalysisInputError, match=message):
        analyze(np.ones((5, 4)), **kwargs)


# Fixed shapes for hypothesis (every new shape recompiles).
D, N, H = 10, 12, 6


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), perm_seed=st.integers(0, 2**31 - 1))
def test_metrics_are_unchanged_by_feature_permutation_and_head_rotation(seed, perm_seed):
    rng = np.random.default_rng(seed)
    W = (orthonormal(rng, D, D) @ rng.normal(size=(D, N)) / 3).astype(np.float32)
    template = ((0, 1, 2.0), (2, 3, 1.0))
    W_Q, W_K = planted_head(W, template, H)
    W_Q = W_Q + 0.01 * rng.normal(size=W_Q.shape).astype(np.float32)  # not exact
    base = analyze(W, layout="toymodels", W_Q=W_Q, W_K=W_K, template=template, axes=())

    perm = np.random.default_rng(perm_seed).permutation(N)  # new index of old feature i
    W_perm = np.empty_like(W)
    W_perm[:, perm] = W
    template_perm = tuple((int(perm[i]), int(perm[j]), v) for i, j, v in template)
    R = orthonormal(np.random.default_rng(perm_seed), H, H).astype(np.float32)
    moved = analyze(W_perm, layout="toymodels", W_Q=-R @ W_Q, W_K=-R @ W_K,
                    template=template_perm, axes=())
    for a, b in zip(base.pairs, moved.pairs):
        assert a["sv_index"] == b["sv_index"] and a["max_k"] == b["max_k"]
        for key in ("cos_query_u", "cos_key_v", "sigma", "max_cos_query_u"):
            assert a[key] == pytest.approx(b[key], abs=1e-4)
    for key in ("sigma_1", "mmcs_query_u", "hungarian_key_v", "principal_cos_query_min"):
        assert base.heads[0][key] == pytest.approx(moved.heads[0][key], abs=1e-4)
    feats = {f["feature"]: f for f in moved.features}
    for f in base.features:
        assert feats[int(perm[f["feature"]])]["interference"] == pytest.approx(
            f["interference"], abs=1e-4)


def test_unrepresented_pairs_are_unmatched_not_aligned_with_the_null_space():
    """Issue 11: one planted pair and two pairs the head does not represent. The old
    assignment gave the two an insignificant index and reported their |cos| with an
    arbitrary null-space vector (0.17–0.47), and a mean over pairs of 0.48 for 1/3."""
    rng = np.random.default_rng(11)
    W = rng.standard_normal((8, 12)).astype(np.float32)  # random: null-space cosines ≠ 0
    W /= np.linalg.norm(W, axis=0)
    template = ((0, 1, 1.0), (2, 3, 1.0), (4, 5, 1.0))
    W_Q, W_K = planted_head(W, template[:1], 6)
    out = analyze(W, layout="toymodels", W_Q=W_Q, W_K=W_K, template=template, axes=())
    pairs, head = by_pair(out.pairs), out.heads[0]
    assert head["n_significant"] == 1 and head["n_pairs_matched"] == 1
    assert pairs[(0, 1)]["sv_index"] == 0 and pairs[(0, 1)]["max_k"] == 0
    for p in ((2, 3), (4, 5)):
        assert pairs[p]["sv_index"] is None and pairs[p]["cos_query_u"] is None
        assert pairs[p]["cos_key_v"] is None and pairs[p]["sigma"] is None
        assert not pairs[p]["significant"]
    cos_q = pairs[(0, 1)]["cos_query_u"]
    assert head["mean_cos_query_u"] == pytest.approx(cos_q / 3, abs=1e-6)
    assert head["min_matched_cos"] == 0.0
    assert head["mean_cos_query_u"] == pytest.approx(head["hungarian_query_u"], abs=1e-6)


def test_a_zero_head_reports_no_pair_metrics():
    W = np.eye(4, 6, dtype=np.float32)
    out = analyze(W, W_Q=np.zeros((2, 4), np.float32), W_K=np.zeros((2, 4), np.float32),
                  template=((0, 1, 1.0),), axes=())
    head, pair = out.heads[0], out.pairs[0]
    assert head["mean_cos_query_u"] is None and head["min_matched_cos"] is None
    assert pair["sv_index"] is None and pair["max_k"] is None
