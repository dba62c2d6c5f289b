"""The theory checks' measurements (theory/checks/, rows.py, fates.py) on planted
answers: row verdicts, seed labels, observations, the closed-form comparison, R² through
the origin, pair fates and the rank-H optimum. The command's end-to-end run is in
test_theory_runner.py."""

import numpy as np
import pytest

from toymodels.tasks.toy import template_matrix
from toymodels.theory import checks, foils
from toymodels.theory import closed_form as theory


def _row(*args):
    return checks.row(*args, seeds="0", held_out=True, no_foil="test")


def test_row_status():
    assert _row("c", "p", "1", 0.99, ">=", 0.99, 1)["status"] == "PASS"
    assert _row("c", "p", "1", 0.98, ">=", 0.99, 1)["status"] == "FAIL"
    assert _row("c", "p", "0", 0.06, "<=", 0.05, 1)["status"] == "FAIL"
    assert _row("c", "p", "0", float("nan"), "<=", 0.05, 1)["status"] == "FAIL"


def _factor(Omega, H):
    """W_Q, W_K [H, D] with W_Qᵀ W_K = Omega (H >= rank)."""
    U, S, Vt = np.linalg.svd(Omega)
    return (np.sqrt(S[:H])[:, None] * U[:, :H].T), (np.sqrt(S[:H])[:, None] * Vt[:H])


def test_closed_form_comparison_on_a_planted_head():
    """A head planted at exactly Ω* (through W_Q, W_K) measures |cos| 1 and errors 0; a head
    planted at the naive x_0x_1ᵀ does not, at Theorem 1's ε."""
    cfg = checks.THEOREM_CFG
    X = theory.anisotropic_features(np.random.default_rng(0), cfg.N, cfg.D, checks.THEOREM1_EPS)
    star = checks._star(cfg, X)
    W_Q, W_K = _factor(star, cfg.H)
    om = checks._omega({"W_Q": W_Q[None], "W_K": W_K[None]}, 0)
    assert checks.top_pair_cos(om, star) == pytest.approx(1, abs=1e-9)
    assert checks.matrix_error(om, star) == pytest.approx(0, abs=1e-6)
    assert checks.spectrum_error(om, star) == pytest.approx(0, abs=1e-6)
    naive = checks._naive(cfg, X)
    assert checks.top_pair_cos(naive, star) < 0.99
    assert checks.matrix_error(foils.best_scale(naive, star) * naive, star) > 0.05
    assert min(checks.feature_cos(naive, X)) == pytest.approx(1, abs=1e-9)


def test_worst_seed_fails_on_a_missing_value_wherever_it_is():
    assert checks.worst([0.9, 0.97]) == 0.9
    for values in ([None, 0.99, 0.98], [0.99, None], [0.99, float("nan")], []):
        assert np.isnan(checks.worst(values))
        assert _row("c", "p", "1", checks.worst(values), ">=", 0.5, 1)["status"] == "FAIL"
        assert _row("c", "p", "0", checks.largest(values), "<=", 0.5, 1)["status"] == "FAIL"


def test_seed_labels():
    assert checks.seed_label([6, 4, 5, 9]) == "4–6, 9"
    assert checks.seed_label([100]) == "100"
    assert checks.Seeds(500, True, "").label(4) == "500–503"


def test_observations_are_not_predictions():
    r = checks.observation("c", "what", 0.3, 2, seeds="0–1", held_out=True)
    assert r["status"] == "INFO" and r["tolerance"] == "-" and not r["foils"]


def test_r2_through_the_origin():
    t = np.array([0.5, 1.0, 2.0, 4.0])
    assert checks.r2_through_origin(t, 3 * t) == pytest.approx(1)
    # an intercept is not proportionality: y = 1 + t
    y = 1 + t
    c = (t @ y) / (t @ t)
    assert checks.r2_through_origin(t, y) == pytest.approx(1 - np.sum((y - c * t) ** 2) /
                                                           np.sum(y ** 2))
    assert checks.r2_through_origin(t, y) < 0.97


def test_pair_fates_on_a_planted_head():
    """Orthonormal features; one singular pair mixes pair 0's and pair 1's features (pair 1
    shares it), one is pair 3's own, and pair 2 is not represented."""
    X = np.eye(10)
    template = ((0, 1, 1.0), (2, 3, 0.5), (4, 5, 0.3), (6, 7, 0.2))
    u1, v1 = X[:, 0] + 0.8 * X[:, 2], X[:, 1] + 0.8 * X[:, 3]
    Omega = 2.0 * np.outer(u1 / np.linalg.norm(u1), v1 / np.linalg.norm(v1)) + \
        0.5 * np.outer(X[:, 6], X[:, 7])
    assert checks.pair_fates(Omega, X, X, template) == ["kept", "shared", "dropped", "kept"]
    # below SHARE_LEVEL on one side: dropped, not shared
    u1 = X[:, 0] + 0.3 * X[:, 2]
    Omega = np.outer(u1 / np.linalg.norm(u1), v1 / np.linalg.norm(v1))
    assert checks.pair_fates(Omega, X, X, template)[1] == "dropped"
    assert checks.pair_fates(np.zeros((10, 10)), X, X, template) == ["dropped"] * 4


def test_rank_h_optimum_of_orthonormal_pairs_keeps_the_strongest():
    """Isotropic orthonormal features: the loss metric is a multiple of Frobenius, and the
    optimum keeps the H strongest pairs exactly (Eckart–Young) and drops the rest."""
    X = np.eye(12)
    template = ((0, 6, 1.0), (1, 7, 0.8), (2, 8, 0.6), (3, 9, 0.4))
    T = template_matrix(template, 12)
    M = np.eye(12) / 12
    star = theory.closed_form_omega(X, X, T, 1.0, M, M)
    Sigma = theory.frame_operator(X, M)
    best = theory.rank_h_optimum(star, Sigma, Sigma, 2)
    expected = 1.0 * np.outer(X[:, 0], X[:, 6]) + 0.8 * np.outer(X[:, 1], X[:, 7])  # Ω* = T
    np.testing.assert_allclose(best, expected, atol=1e-9)
    assert checks.pair_fates(best, X, X, template) == ["kept", "kept", "dropped", "dropped"]


def test_feature_alignment_of_a_planted_head():
    X = theory.anisotropic_features(np.random.default_rng(1), 20, 10, 0.0)
    W_Q, W_K = _factor(3.0 * np.outer(X[:, 0], X[:, 1]) / (np.linalg.norm(X[:, 0]) *
                                                              np.linalg.norm(X[:, 1])), 10)
    params = {"W": X[None], "W_Q": W_Q[None], "W_K": W_K[None]}
    np.testing.assert_allclose(checks._feature_alignment(params, 0), (1, 1), atol=1e-9)


def test_training_in_blocks_is_one_run():
    """The fixed-feature checks train BLOCK instances at a time so that they share one
    compiled program (checks/common.py): the values must be those of one run. They are
    bit for bit on the machine the quick table was measured on; the test allows float32
    round-off (as test_determinism_by_seed_across_instance_counts does), since XLA may
    tile a vmapped program differently on another CPU."""
    from toymodels.configs import make_instances
    from toymodels.training.loop import train
    cfg = checks.THEOREM_CFG.replace(steps=20, chunk_steps=10, batch_size=16)
    # two blocks, instances differing in seed and target scale (a batched value)
    instances = make_instances(cfg, range(checks.common.BLOCK), vary={"target_scale": [1.0, 2.0]})
    X = np.stack([theory.anisotropic_features(np.random.default_rng(i.seed), 20, 10, 1.0)
                  for i in instances]).astype(np.float32)
    one = train(cfg, instances, init={"W": X}, progress=False).params
    blocks = checks.common.train_blocks(cfg, instances, init={"W": X})
    for name in one:
        np.testing.assert_allclose(blocks[name], one[name], rtol=1e-6, atol=1e-7, err_msg=name)


def test_run_checks_keeps_order_and_runs_multi_pair_beside(monkeypatch):
    import threading
    ran_in = {}

    def fake(name):
        def check(p):
            ran_in[name] = threading.current_thread() is threading.main_thread()
            return [checks.observation(name, "o", 1.0, 1, seeds="0", held_out=True)], {}
        return check

    monkeypatch.setattr(checks, "CHECKS", {n: fake(n) for n in checks.CHECKS})
    for jobs in (1, 2):
        rows, data, seconds = checks.run_checks(checks.QUICK, jobs=jobs)
        assert [r["check"] for r in rows] == list(checks.CHECKS) == list(data) == list(seconds)
        assert ran_in["multi_pair"] is (jobs == 1) and ran_in["theorem1"]
    rows, _, _ = checks.run_checks(checks.QUICK, only=["isotropy", "multi_pair"], jobs=2)
    assert [r["check"] for r in rows] == ["isotropy", "multi_pair"]
