"""`toymodels theory`: the checks' measurements on planted answers, the stored table and
figures from a tiny end-to-end run, and bad input."""

import json

import numpy as np
import pandas as pd
import pytest

from toymodels.theory import checks
from toymodels.theory import closed_form as theory
from toymodels.cli import main
from toymodels.tasks.toy import second_moment, template_matrix
from toymodels.theory.runner import draw_figures, run_theory

TINY = checks.Profile("tiny", seeds=2, steps=100, eps=(0.0, 1.72), multi_seeds=1,
                      multi_steps=30, rank_h_steps=30, eps_steps=100, rank_h_dims=(4,),
                      rank_h_heads=(2,))


def test_row_status():
    assert checks.row("c", "p", "1", 0.99, ">=", 0.99, 1)["status"] == "PASS"
    assert checks.row("c", "p", "1", 0.98, ">=", 0.99, 1)["status"] == "FAIL"
    assert checks.row("c", "p", "0", 0.06, "<=", 0.05, 1)["status"] == "FAIL"
    assert checks.row("c", "p", "0", float("nan"), "<=", 0.05, 1)["status"] == "FAIL"


def _factor(Omega, H):
    """W_Q, W_K [H, D] with W_Qᵀ W_K = Omega (H >= rank)."""
    U, S, Vt = np.linalg.svd(Omega)
    return (np.sqrt(S[:H])[:, None] * U[:, :H].T), (np.sqrt(S[:H])[:, None] * Vt[:H])


def test_closed_form_comparison_on_a_planted_head():
    """A head planted at exactly Ω* measures |cos| 1 and errors 0; a head planted at the
    naive x_0x_1ᵀ does not, at Theorem 1's ε."""
    cfg = checks.THEOREM_CFG
    X = theory.anisotropic_features(np.random.default_rng(0), cfg.N, cfg.D, checks.THEOREM1_EPS)
    M = second_moment(cfg)
    star = theory.closed_form_omega(X, X, template_matrix(cfg.template, cfg.N), 1.0, M, M)
    W_Q, W_K = _factor(star, cfg.H)
    m = checks._compare_closed_form(cfg, {"W": X[None], "W_Q": W_Q[None], "W_K": W_K[None]}, 0)
    assert m["cos_u"] == pytest.approx(1, abs=1e-9) and m["cos_v"] == pytest.approx(1, abs=1e-9)
    assert m["sigma_err"] == pytest.approx(0, abs=1e-9)
    assert m["matrix_err"] == pytest.approx(0, abs=1e-6)
    assert m["naive_star_cos"] < 0.99 and m["naive_err"] > 0.1
    # the naive guess Ω ∝ x_0 x_1ᵀ (ignoring Σ_X⁻¹) fails both rows
    W_Q, W_K = _factor(np.outer(X[:, 0], X[:, 1]), cfg.H)
    m = checks._compare_closed_form(cfg, {"W": X[None], "W_Q": W_Q[None], "W_K": W_K[None]}, 0)
    assert min(m["cos_u"], m["cos_v"]) < 0.99 and m["matrix_err"] > 0.05
    assert m["naive_cos"] == pytest.approx(1, abs=1e-9)


def test_worst_seed_fails_on_a_missing_value_wherever_it_is():
    assert checks.worst([0.9, 0.97]) == 0.9
    for values in ([None, 0.99, 0.98], [0.99, None], [0.99, float("nan")], []):
        assert np.isnan(checks.worst(values))
        assert checks.row("c", "p", "1", checks.worst(values), ">=", 0.5, 1)["status"] == "FAIL"


def test_observations_are_not_predictions():
    r = checks.observation("c", "what", 0.3, 2)
    assert r["status"] == "INFO" and r["tolerance"] == "-"


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


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("theory") / "t"
    record = run_theory(TINY, out)
    return out, record


def test_tiny_run_stores_table_data_and_figures(tiny_run):
    out, record = tiny_run
    table = pd.read_csv(out / "theory.csv")
    assert list(table.check.unique()) == list(checks.CHECKS)
    assert set(table.status) <= {"PASS", "FAIL", "INFO"}
    assert {"prediction", "predicted", "measured", "tolerance", "status"} <= set(table.columns)
    stored = json.loads((out / "theory.json").read_text())
    assert stored["profile"]["name"] == "tiny" and stored["rows"] == record["rows"]
    assert stored["versions"]["jax"] and "git_commit" in stored
    for name in ("fig2b_multi_pair.png", "fig4_anisotropy.png", "pairs_beyond_h.png"):
        assert (out / "figures" / name).stat().st_size > 10_000
    # the multi-pair check trains seeds the preset was not tuned on
    with np.load(out / "data" / "multi_pair.npz") as f:
        assert f["seeds"][0] == checks.HELD_OUT_SEED
    assert (table.status == "INFO").sum() == 2  # the observations


def test_figures_redraw_from_stored_data(tiny_run, tmp_path):
    out, _ = tiny_run
    drawn = draw_figures(out, tmp_path)
    assert len(drawn) == 3 and all(p.exists() for p in drawn)


@pytest.mark.parametrize("only, message", [
    ("theorem9", "unknown check 'theorem9'"),
    (",", "unknown check"),
])
def test_bad_theory_arguments(only, message, tmp_path, capsys):
    assert main(["theory", "--only", only, "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "t").exists()


def test_quick_and_full_exclude_each_other(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["theory", "--quick", "--full", "--out", str(tmp_path / "t")])
    assert exit_info.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


def test_theory_refuses_a_foreign_directory(tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert main(["theory", "--only", "isotropy", "--out", str(foreign), "--overwrite"]) == 2
    assert "not a toymodels run" in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "keep me"
