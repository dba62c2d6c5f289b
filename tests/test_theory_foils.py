"""Every theory row rejects its foil (issue 19): the planted answer passes a row's
measurement, the wrong model the row names as its foil fails the same measurement with
the same tolerance. No training: heads are planted from the closed forms."""

import numpy as np
import pytest

from toymodels import analyze
from toymodels.configs import preset
from toymodels.tasks.toy import second_moment, template_matrix
from toymodels.theory import checks, foils, perturbation
from toymodels.theory import closed_form as theory


def status(measured, criterion, threshold):
    return checks.row("c", "p", "-", measured, criterion, threshold, 1, seeds="0",
                      held_out=True, no_foil="test")["status"]


# ---- the row itself ----------------------------------------------------------------

def test_a_prediction_row_needs_a_foil_or_a_reason():
    with pytest.raises(ValueError, match="foil"):
        checks.row("c", "p", "1", 1.0, ">=", 0.5, 1, seeds="0", held_out=True)
    r = checks.row("c", "p", "1", 1.0, ">=", 0.5, 1, seeds="0", held_out=True,
                   no_foil="why not")
    assert r["no_foil"] == "why not" and r["defect"] == ""


def test_a_foil_that_passes_is_a_defect_and_one_that_fails_is_not():
    r = checks.row("c", "p", "1", 0.99, ">=", 0.9, 3, seeds="100–102", held_out=True,
                   foils=[("good foil", 0.2), ("bad foil", 0.95)])
    assert r["status"] == "PASS" and [f["status"] for f in r["foils"]] == ["FAIL", "PASS"]
    assert r["defect"] == "foil passes: bad foil"
    assert r["foil_status"] == "FAIL | PASS" and r["seeds"] == "100–102" and r["held_out"]
    # a foil without a value is rejected (nothing measured is nothing confirmed)
    r = checks.row("c", "p", "0", 0.01, "<=", 0.05, 1, seeds="0", held_out=False,
                   foils=[("nan foil", float("nan"))])
    assert r["foils"][0]["status"] == "FAIL" and not r["defect"]


def test_every_check_row_names_its_seeds_and_foils(monkeypatch):
    """The table renders every row's seeds and each foil's verdict."""
    from toymodels.theory.runner import csv_rows, theory_table
    rows = [checks.row("c", "p", "1", 0.99, ">=", 0.9, 2, seeds="5–6", held_out=True,
                       foils=[("f", 0.1)]),
            checks.observation("c", "o", 0.3, 2, seeds="5–6", held_out=False)]
    text = theory_table(rows)
    assert "5–6 (held out)" in text and "foil: f" in text and "FAIL (rejected)" in text
    assert "5–6 (design)" in text and "0 rows with a foil that passes" in text
    assert all("foils" not in r for r in csv_rows(rows))


# ---- theorem1: Ω* against the naive x_0x_1ᵀ -----------------------------------------

@pytest.mark.parametrize("seed", range(3))
def test_theorem1_rows_reject_the_naive_answer(seed):
    cfg = checks.THEOREM_CFG
    X = theory.anisotropic_features(np.random.default_rng(seed), cfg.N, cfg.D,
                                    checks.THEOREM1_EPS)
    star = checks._star(cfg, X)
    naive = checks._naive(cfg, X)
    naive = foils.best_scale(naive, star) * naive
    assert status(checks.top_pair_cos(star, star), ">=", 0.99) == "PASS"
    assert status(checks.matrix_error(star, star), "<=", 0.05) == "PASS"
    assert status(checks.top_pair_cos(naive, star), ">=", 0.99) == "FAIL"
    assert status(checks.matrix_error(naive, star), "<=", 0.05) == "FAIL"


# ---- isotropy: aligned head against a random one -----------------------------------

def test_isotropy_row_rejects_a_random_head_of_the_same_rank_and_norm():
    X = theory.anisotropic_features(np.random.default_rng(1), 20, 10, 0.0)
    planted = 3.0 * np.outer(X[:, 0], X[:, 1])
    assert status(min(checks.feature_cos(planted, X)), ">=", 0.999) == "PASS"
    for seed in range(5):
        rand = foils.random_head(planted, np.random.default_rng(seed))
        assert np.linalg.matrix_rank(rand, tol=1e-9) == 1
        assert np.linalg.norm(rand) == pytest.approx(np.linalg.norm(planted))
        assert status(min(checks.feature_cos(rand, X)), ">=", 0.999) == "FAIL"


# ---- anisotropy: the angle of Ω*'s u_1, two-sided -----------------------------------

@pytest.mark.parametrize("seed", range(3))
def test_anisotropy_angle_row_rejects_the_naive_answer_where_it_differs(seed):
    cfg = checks.THEOREM_CFG
    X = theory.anisotropic_features(np.random.default_rng(seed), 20, 10, 3.0)
    star = checks._star(cfg, X)
    assert checks.angle_error(star, star, X) == pytest.approx(0, abs=1e-9)
    # the naive answer is at angle 0 with the features, Ω* is not (ε = 3)
    err = checks.angle_error(checks._naive(cfg, X), star, X)
    assert status(err, "<=", checks.TRAINED_ANGLE_TOL) == "FAIL"
    # two-sided: a head turned 10° further from x_0 than Ω* (in their plane) is rejected
    u, s, v = theory.top_pair(star)
    x = X[:, 0] / np.linalg.norm(X[:, 0])
    u = u * np.sign(u @ x)
    w = u - (u @ x) * x
    w /= np.linalg.norm(w)
    a = np.arctan2(u @ w, u @ x) + np.radians(10)
    far = s * np.outer(np.cos(a) * x + np.sin(a) * w, v)
    assert status(checks.angle_error(far, star, X), "<=", checks.TRAINED_ANGLE_TOL) == "FAIL"
    # and at ε = 0 the naive answer is the prediction (no foil can differ there)
    Xi = theory.anisotropic_features(np.random.default_rng(seed), 20, 10, 0.0)
    assert checks.angle_error(checks._naive(cfg, Xi), checks._star(cfg, Xi), Xi) < 1e-6


def test_anisotropy_mean_alignment_rows_reject_a_random_head():
    cfg = checks.THEOREM_CFG
    align, rand = [], []
    for seed in range(4):
        X = theory.anisotropic_features(np.random.default_rng(seed), 20, 10, 1.72)
        star = checks._star(cfg, X)
        align.append(np.mean(checks.feature_cos(star, X)))
        rand.append(np.mean(checks.feature_cos(
            foils.random_head(star, np.random.default_rng(10 + seed)), X)))
    assert status(np.mean(align), ">=", 0.75) == "PASS"
    assert status(np.mean(rand), ">=", 0.75) == "FAIL"


# ---- theorem3: orthogonal against superposed attended features -----------------------

def test_interference_rows_tell_orthogonal_from_superposed_features():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((10, 20)) / np.sqrt(10)
    orth = W.copy()
    Q, _ = np.linalg.qr(rng.standard_normal((10, 10)))
    orth[:, :2] = Q[:, :2]
    orth[:, 2:] -= Q[:, :2] @ (Q[:, :2].T @ orth[:, 2:])  # the rest ⊥ features 0 and 1
    with_head, without = checks.interference(orth, [0, 1]), checks.interference(W, [0, 1])
    assert with_head.max() < 1e-12
    assert status(with_head.max(), "<=", 0.05) == "PASS"
    assert status(without.max(), "<=", 0.05) == "FAIL"  # row 1's foil
    assert status(without.min(), ">=", 0.05) == "PASS"
    assert status(with_head.min(), ">=", 0.05) == "FAIL"  # row 2's foil
    # the analysis' definition
    ref = analyze(W.astype(np.float32), W_Q=np.eye(10, dtype=np.float32)[None],
                  W_K=np.eye(10, dtype=np.float32)[None], template=((0, 1, 1.0),),
                  layout="toymodels").features
    np.testing.assert_allclose(without, [ref[0]["interference"], ref[1]["interference"]],
                               rtol=1e-4)


# ---- multi_pair -------------------------------------------------------------------

MULTI = preset("multi-pair")
P = len(MULTI.template)


def _multi_features(seed):
    """[D, N] with the attended features orthonormal (as training makes them) and the
    rest random."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((MULTI.D, MULTI.N)) / np.sqrt(MULTI.D)
    Q, _ = np.linalg.qr(rng.standard_normal((MULTI.D, 2 * P)))
    W[:, :2 * P] = Q
    return W


def _planted(W, strengths=None):
    q = [i for i, _, _ in MULTI.template]
    k = [j for _, j, _ in MULTI.template]
    s = np.array([v for _, _, v in MULTI.template]) * MULTI.target_scale \
        if strengths is None else strengths
    return (W[:, q] * s) @ W[:, k].T


def test_ownership_rejects_random_heads():
    """Issue 19, defect 1: four random 50×50 heads (W_Q, W_K standard normal) get a
    Hungarian assignment for all 20 pairs, but own none of them at |cos| >= 1/√2."""
    rng = np.random.default_rng(0)
    W = rng.standard_normal((MULTI.D, MULTI.N)).astype(np.float32)
    res = analyze(W, W_Q=rng.standard_normal((4, 50, 50)).astype(np.float32),
                  W_K=rng.standard_normal((4, 50, 50)).astype(np.float32),
                  template=MULTI.template, axes=("instance",), layout="toymodels")
    assert min(h["n_pairs_matched"] for h in res.heads) == P  # what the old row counted
    owned = checks.owned_pairs(res.pairs, 4, P)
    assert owned.max() <= 2
    assert status(int(owned.min()), ">=", P) == "FAIL"


def test_multi_pair_rows_pass_the_planted_head_and_reject_its_foils():
    Ws = [_multi_features(s) for s in range(2)]
    planted = [_planted(W) for W in Ws]
    m = checks._heads_metrics(checks.analyze_heads(np.stack(Ws), planted, MULTI.template), P, 2)
    assert m["mean_q"] > 0.999 and m["mean_k"] > 0.999 and m["owned"] == P
    assert m["r2"] > 0.999 and m["spearman"] == pytest.approx(1)
    rng = np.random.default_rng(5)
    rand = [foils.random_head(o, rng) for o in planted]
    twin = [foils.rotated_twin(o, rng) for o in planted]
    q = [i for i, _, _ in MULTI.template]
    k = [j for _, j, _ in MULTI.template]
    c = np.array([v for _, _, v in MULTI.template]) * MULTI.target_scale
    shuffled = [foils.shuffled_pairs(W[:, q], W[:, k], c, rng) for W in Ws]
    for heads in (rand, twin):
        f = checks._heads_metrics(checks.analyze_heads(np.stack(Ws), heads, MULTI.template), P, 2)
        assert status(f["mean_q"], ">=", 0.95) == "FAIL"
        assert status(f["mean_k"], ">=", 0.95) == "FAIL"
        assert status(f["owned"], ">=", P) == "FAIL"
    f = checks._heads_metrics(checks.analyze_heads(np.stack(Ws), shuffled, MULTI.template), P, 2)
    assert f["mean_q"] > 0.999  # aligned, only the order of strengths is wrong
    assert status(f["r2"], ">=", 0.95) == "FAIL"
    assert status(f["spearman"], ">=", 0.95) == "FAIL"


def test_wedin_rows_hold_for_a_perturbed_head_and_reject_its_rotated_twin():
    """A planted head whose two strongest pairs have nearly equal σ and a small coupling
    (x_0 y_1ᵀ, x_1 y_0ᵀ), plus noise: their singular vectors mix, yet every pair is within
    Wedin's bound and the mixed pairs' span within the cluster bound; the rotated twin,
    against the same bounds, is not."""
    W = _multi_features(3)
    q = [i for i, _, _ in MULTI.template]
    k = [j for _, j, _ in MULTI.template]
    c = np.linspace(10, 2, P)
    c[1] = 9.95  # pairs 0 and 1 nearly equal: free to mix
    head = _planted(W, c) + 0.1 * (np.outer(W[:, q[0]], W[:, k[1]]) +
                                   np.outer(W[:, q[1]], W[:, k[0]]))
    head += 0.005 * np.random.default_rng(0).standard_normal((MULTI.D, MULTI.D))
    bounds = checks.wedin_rows_data([head], [W], MULTI.template)
    b = bounds[0]
    assert [m for m, _ in b["clusters"]] == [[0, 1]]
    assert max(b["cos_u"][0], b["cos_u"][1]) < 0.9  # they do mix
    assert b["clusters"][0][1]["sin_u"] < 0.05  # inside their span (noise only)
    assert status(checks.wedin_slack(bounds, [head], [W], MULTI.template), ">=", 0) == "PASS"
    assert status(checks.cluster_excess(bounds, [head], [W], MULTI.template), "<=", 0) == "PASS"
    twin = foils.rotated_twin(head, np.random.default_rng(1))
    assert status(checks.wedin_slack(bounds, [twin], [W], MULTI.template), ">=", 0) == "FAIL"
    assert status(checks.cluster_excess(bounds, [twin], [W], MULTI.template), "<=", 0) == "FAIL"


@pytest.mark.parametrize("seed", range(200))
def test_wedin_pair_bound_holds_on_random_matrices(seed):
    """√(sin²θ_u + sin²θ_v) <= ρ/δ (checked before it is trusted), and the cluster bound."""
    rng = np.random.default_rng(seed)
    D = int(rng.integers(3, 12))
    n = int(rng.integers(1, min(D, 6) + 1))
    X, Y = rng.standard_normal((D, n)), rng.standard_normal((D, n))
    Q, K = perturbation.lowdin(X), perturbation.lowdin(Y)
    np.testing.assert_allclose(Q.T @ Q, np.eye(n), atol=1e-10)
    c = np.sort(rng.random(n) * 3)[::-1]
    Om = (Q * c) @ K.T + rng.choice([0.01, 0.1, 0.5]) * rng.standard_normal((D, D))
    b = perturbation.pair_bounds(Om, Q, K)
    sin = np.sqrt((1 - b["cos_u"] ** 2) + (1 - b["cos_v"] ** 2))
    informative = b["sin_bound"] < 1  # (capped at 1, where the bound says nothing)
    assert (sin[informative] <= b["sin_bound"][informative] + 1e-9).all()
    b = perturbation.pair_bounds(Om, X, Y)  # raw features: the Löwdin step's angle added
    assert (b["cos_u"] >= b["cos_lower_u"] - 1e-9).all()
    assert (b["cos_v"] >= b["cos_lower_v"] - 1e-9).all()
    if n >= 2:
        cb = perturbation.cluster_bound(Om, X, Y, [0, 1])
        assert max(cb["sin_u"], cb["sin_v"]) <= cb["sin_bound"] + 1e-9


def test_principal_sines_are_accurate_near_zero():
    A = np.eye(6)[:, :3]
    B = A + 1e-9 * np.eye(6)[:, 3:6]
    assert perturbation.principal_sines(A, B)[-1] == pytest.approx(1e-9, rel=1e-6)
    assert perturbation.principal_sines(A, np.eye(6)[:, 3:5])[-1] == pytest.approx(1)


# ---- sigma_targets: σ_k of Ω*, two-sided ---------------------------------------------

@pytest.mark.parametrize("target", [0.5, 4.0])
def test_spectrum_row_rejects_the_naive_answer_at_its_loss_optimal_scale(target):
    cfg = checks.THEOREM_CFG.replace(target_scale=target)
    M = second_moment(cfg)
    for seed in range(3):
        X = theory.anisotropic_features(np.random.default_rng(seed), 20, 10, checks.THEOREM1_EPS)
        star, naive = checks._star(cfg, X), checks._naive(cfg, X)
        root = theory.psd_sqrt(theory.frame_operator(X, M))
        naive = foils.best_scale(naive, star, root, root) * naive
        assert status(checks.spectrum_error(star, star), "<=", checks.SIGMA_TOL) == "PASS"
        assert status(checks.spectrum_error(naive, star), "<=", checks.SIGMA_TOL) == "FAIL"
        # σ ∝ target holds for the naive answer too: only the values tell them apart
        assert checks.spectrum_error(2 * star, star) == pytest.approx(1)


def test_loss_optimal_scale_minimises_the_loss_metric():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((4, 4))
    A = A @ A.T + np.eye(4)
    F, O = rng.standard_normal((4, 4)), rng.standard_normal((4, 4))
    c = foils.best_scale(F, O, A, A)
    loss = lambda x: np.linalg.norm(A @ (x * F - O) @ A)  # noqa: E731
    assert loss(c) <= min(loss(c + 1e-4), loss(c - 1e-4))


# ---- pairs_beyond_h: the weighted optimum against the plain truncation ---------------

@pytest.mark.parametrize("H, D", [(2, 8), (2, 16), (4, 16)])
def test_pairs_beyond_h_rows_reject_truncation_and_strongest_pairs(H, D):
    cfg = checks.RANK_H_CFG.replace(H=H, D=D)
    M = second_moment(cfg)
    T = template_matrix(cfg.template, cfg.N)
    rejected = {"truncation": 0, "strongest": 0}
    for seed in range(200, 204):  # the design seeds
        X = checks.rank_h_features(checks.features_for(checks.TAG_RANK_H, seed), cfg.N, D)
        Sigma = theory.frame_operator(X, M)
        star = theory.closed_form_omega(X, X, T, cfg.target_scale, M, M)
        best = theory.rank_h_optimum(star, Sigma, Sigma, H)
        trunc = checks.plain_truncation(star, H)
        strongest = theory.closed_form_omega(X, X, template_matrix(cfg.template[:H], cfg.N),
                                             cfg.target_scale, M, M)
        scale = theory.loss_metric(best, Sigma, Sigma)

        def dist(a, b):
            return theory.loss_metric(a - b, Sigma, Sigma) / scale

        assert status(dist(best, best), "<=", 0.05) == "PASS"
        assert dist(best, best) - dist(best, trunc) < 0  # the optimum is nearer itself
        margin = dist(trunc, best)
        # the truncation is never better than the optimum in the loss (Eckart–Young in
        # the loss metric)
        assert theory.loss_metric(trunc - star, Sigma, Sigma) >= \
            theory.loss_metric(best - star, Sigma, Sigma) - 1e-9
        rejected["truncation"] += status(margin, "<=", 0.05) == "FAIL"
        rejected["strongest"] += status(dist(strongest, best), "<=", 0.05) == "FAIL"
        fates_best = checks.pair_fates(best, X, X, cfg.template)
        assert fates_best == checks.pair_fates(best, X, X, cfg.template)
    # the check's aggregate (max over instances) rejects both foils
    assert rejected["truncation"] >= 1 and rejected["strongest"] >= 1


def test_plain_truncation_equals_the_weighted_optimum_only_when_isotropic():
    """Issue 19, defect 2: with a tight frame and one-hot tokens (Σ = I/D) the weighted
    optimum is the plain truncation; the check's own setting is not."""
    one_hot = checks.RANK_H_CFG.replace(tokens="onehot", p_active=0.1, D=8, H=2)
    X = theory.anisotropic_features(np.random.default_rng(0), 24, 8, 0.0)
    for cfg, X_, same in ((one_hot, X, True), (checks.RANK_H_CFG.replace(D=8, H=2),
                                                checks.rank_h_features(
                                                    np.random.default_rng(0), 24, 8), False)):
        M = second_moment(cfg)
        S = theory.frame_operator(X_, M)
        star = theory.closed_form_omega(X_, X_, template_matrix(cfg.template, 24),
                                        cfg.target_scale, M, M)
        best = theory.rank_h_optimum(star, S, S, 2)
        gap = theory.loss_metric(checks.plain_truncation(star, 2) - best, S, S) / \
            theory.loss_metric(best, S, S)
        assert (gap < 1e-9) == same
