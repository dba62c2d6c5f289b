"""The SAD controls (analysis/sad_control.py and the multi-draw path of analysis/sad.py): the
rotated control over Haar draws, N_recon at several fractions, and the planted validation
that a rank-one or a rotated foil fails while a rank-3 head with distinct σ passes."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from test_analysis_sad import oracle, random_model
from toymodels.analysis import sad, sad_control, sad_tables
from toymodels.errors import AnalysisInputError


def rank3_head(D=16, H=12, P=60, T=7, seed=0):
    """One head with Ω = Σ_{k<3} σ_k u_k v_kᵀ, σ = 4, 2, 1 (chosen orthonormal u, v) and
    prompts whose query (last token) carries 3·u_k and key key_pos carries 3·v_k, k = the
    prompt's pair (prompt mod 3); the other tokens are small noise. Pair k's matched index
    is k, so its planted firing's top contribution must be k."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.normal(size=(D, 3)))
    V, _ = np.linalg.qr(rng.normal(size=(D, 3)))
    sigma = np.array([4.0, 2.0, 1.0])
    W_Q, W_K = np.zeros((H, D)), np.zeros((H, D))
    W_Q[:3] = np.sqrt(sigma)[:, None] * U.T * H ** 0.25  # Ω̃ = W_Qᵀ W_K / √H
    W_K[:3] = np.sqrt(sigma)[:, None] * V.T * H ** 0.25
    x = rng.normal(size=(P, T, D)) * 0.05
    pair = np.arange(P) % 3
    key_pos = rng.integers(0, T - 1, P)
    x[np.arange(P), T - 1] = 3 * U[:, pair].T
    x[np.arange(P), key_pos] = 3 * V[:, pair].T
    mask = np.zeros((P, T, T), bool)
    mask[:, T - 1, :T - 1] = True  # the query reads the keys; nothing else attends
    as32 = (lambda a: np.asarray(a, np.float32))  # noqa: E731
    return (as32(x[None]), mask, as32(W_Q[None, None]), as32(W_K[None, None]), pair, key_pos,
            sigma)


def test_rank3_known_answer():
    x, mask, W_Q, W_K, pair, key_pos, sigma = rank3_head()
    result = sad.decompose(x, mask, W_Q, W_K)
    np.testing.assert_allclose(result.S[0, 0, :3], sigma, rtol=1e-5)
    assert result.S[0, 0, 3] < 1e-5
    P, T = x.shape[1:3]
    where = (0, np.arange(P), 0, T - 1, key_pos)
    np.testing.assert_array_equal(result.lookup("top_k", *where), pair)
    assert (result.lookup("n_recon", *where) == 1).all()


def test_validation_passes_rank3_head_and_rejects_both_foils():
    x, mask, W_Q, W_K, pair, key_pos, _ = rank3_head()
    rows, pair_rows = sad_control.validate_planted(x, mask, W_Q, W_K, pair, key_pos,
                                                   matched=np.arange(3), rotations=20)
    by = {m: [r for r in rows if r["model"] == m] for m in ("head", "rank_one", "rotated")}
    head, = by["head"]
    assert head["verdict"] == "PASS" and head["pairs_recovered"] == 3
    assert head["share_recovered"] == 1.0 and head["planted_firings"] == len(pair)
    one, = by["rank_one"]  # recovers pair 0 only, and still looks perfectly sparse
    assert one["verdict"] == "FAIL" and one["pairs_recovered"] <= 1
    assert one["median_n_recon_at_1"] == 1 and one["median_sparseness"] == pytest.approx(1 / 12)
    assert len(by["rotated"]) == 20 and all(r["verdict"] == "FAIL" for r in by["rotated"])
    assert max(r["pairs_recovered"] for r in by["rotated"]) < sad_control.MIN_RECOVERED_PAIRS
    # a matching that points elsewhere fails the same head: the verdict reads the matching
    wrong, _ = sad_control.validate_planted(x, mask, W_Q, W_K, pair, key_pos,
                                            matched=np.array([1, 2, 0]), rotations=20)
    assert wrong[0]["verdict"] == "FAIL" and wrong[0]["pairs_recovered"] == 0
    assert {r["pair"] for r in pair_rows} == {0, 1, 2}


def test_draw_zero_is_the_single_draw():
    x, mask, W_Q, W_K, b_Q, b_K = random_model()
    one = sad.decompose(x, mask, W_Q, W_K, b_Q, b_K, options=sad.SadOptions(seed=3))
    many = sad.decompose(x, mask, W_Q, W_K, b_Q, b_K,
                         options=sad.SadOptions(seed=3, rotations=20))
    for k, v in one.firings.items():  # the default columns, bit for bit
        np.testing.assert_array_equal(many.firings[k], v)
    R = np.stack([many.rotation_draws(l) for l in range(x.shape[0])])  # [L, n, N, K, K]
    np.testing.assert_array_equal(R[:, :, 0], one.R)
    for k in sad.DRAW_METRICS:
        assert many.draws[k].shape == (len(v), 20)
        np.testing.assert_array_equal(many.draws[k][:, 0], one.firings[k])
    assert one.draws is None
    # draws differ from each other and between layers, and each is orthogonal
    np.testing.assert_allclose(R @ np.swapaxes(R, -1, -2), np.broadcast_to(np.eye(R.shape[-1]),
                                                                           R.shape), atol=1e-5)
    assert not np.allclose(R[:, :, 0], R[:, :, 1]) and not np.allclose(R[0, :, 1], R[1, :, 1])


def test_every_draw_matches_float64_oracle():
    """Draws 1.. take another route (pass 3 rotates each firing's own coordinates): the
    oracle, given draw r's rotations, must agree with it as it does with draw 0."""
    x, mask, W_Q, W_K, b_Q, b_K = random_model()
    result = sad.decompose(x, mask, W_Q, W_K, b_Q, b_K, options=sad.SadOptions(rotations=20))
    f = result.firings
    keys = list(zip(*(f[k] for k in ("layer", "prompt", "head", "d", "s"))))
    draws = np.stack([result.rotation_draws(l) for l in range(x.shape[0])])
    for r in (1, 19):
        result.R = draws[:, :, r]  # the oracle reads result.R
        want = oracle(x, mask, W_Q, W_K, b_Q, b_K, result)
        got = {key: result.draws["n_recon_rot"][i, r] for i, key in enumerate(keys)}
        assert set(got) == set(want) and len(want) > 20
        assert all(got[key] == w["n_recon_rot"] for key, w in want.items())


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2 ** 16), threshold=st.sampled_from([None, 0.3]))
def test_n_recon_non_decreasing_in_the_fraction(seed, threshold):
    x, mask, W_Q, W_K, b_Q, b_K = random_model(seed=seed)
    fracs = (0.5, 0.9, 0.99, 1.0)
    result = sad.decompose(x, mask, W_Q, W_K, b_Q, b_K, options=sad.SadOptions(
        threshold=threshold, rotations=20, recon_fracs=fracs))
    f, d = result.firings, result.draws
    np.testing.assert_array_equal(f["n_recon_at_1"], f["n_recon"])  # recon_frac is 1
    for suffix, src in (("", f), ("_rot", f), ("_rot", d)):  # head, twin, every draw
        chain = [src[sad.at("n_recon" + suffix, fr)] for fr in fracs]
        for lo, hi in zip(chain, chain[1:]):
            assert (lo <= hi).all()
        assert (chain[0] >= 1).all() and (chain[-1] <= result.S.shape[-1]).all()


def test_tables_of_the_spread():
    x, mask, W_Q, W_K, b_Q, b_K = random_model()
    result = sad.decompose(x, mask, W_Q, W_K, b_Q, b_K, options=sad.SadOptions(rotations=20))
    table = sad_control.draw_table(result.firings, result.draws, result.S)
    L, n = result.S.shape[:2]
    assert len(table["draw"]) == L * n * 20
    firings = sad_tables.firing_table(result, mask)
    heads = sad_tables.head_table(firings, result.S)
    spread = sad_control.spread_columns(table, L, n)
    zero = table["draw"] == 0  # draw 0's per-head medians are heads.parquet's own column
    np.testing.assert_array_equal(table["median_n_recon_rot"][zero], heads["median_n_recon_rot"])
    assert (spread["median_n_recon_rot_q05"] <= spread["median_n_recon_rot_q50"]).all()
    assert (spread["median_n_recon_rot_q50"] <= spread["median_n_recon_rot_q95"]).all()
    o = sad_control.overall_spread(result.firings, result.draws, table)
    assert o["draws"] == 20 and len(o["median_n_recon_rot"]["per_draw"]) == 20
    assert o["share_n_recon_le4_rot"]["per_draw"][0] == pytest.approx(
        sad_tables.overall(firings, heads)["share_n_recon_le4_rot"])
    assert o["heads_median_n_recon_rot_le4"]["per_draw"][0] == \
        sad_tables.overall(firings, heads)["heads_median_n_recon_rot_le4"]


@pytest.mark.parametrize("options, message", [
    (dict(rotations=0), "rotations must be 1"), (dict(rotations=5), "at least 20"),
    (dict(rotations=2.5), "rotations must be 1"), (dict(recon_fracs=(1.5,)), "(0, 1]"),
    (dict(recon_fracs=(0.0,)), "(0, 1]"), (dict(recon_fracs=(0.9, 0.9)), "repeat")])
def test_bad_options_raise_before_any_work(options, message):
    x, mask, W_Q, W_K, b_Q, b_K = random_model()
    with pytest.raises(AnalysisInputError, match=message.replace("(", r"\(").replace(
            "]", r"\]")):
        sad.decompose(x[:, :, :, :-1], mask, W_Q, W_K, options=sad.SadOptions(**options))
