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
                      multi_steps=30, appendix_e_steps=30, eps_steps=100)


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
    """A head planted at exactly Ω* measures |cos| 1 and σ error 0; a head planted at a
    different rank-one matrix does not."""
    cfg = checks.THEOREM_CFG
    X = theory.anisotropic_features(np.random.default_rng(0), cfg.N, cfg.D, 3.0)
    M = second_moment(cfg)
    star = theory.closed_form_omega(X, X, template_matrix(cfg.template, cfg.N), 1.0, M, M)
    W_Q, W_K = _factor(star, cfg.H)
    params = {"W": X[None], "W_Q": W_Q[None], "W_K": W_K[None]}
    cu, cv, ds = checks._compare_closed_form(cfg, params, 0)
    assert cu == pytest.approx(1, abs=1e-9) and cv == pytest.approx(1, abs=1e-9)
    assert ds == pytest.approx(0, abs=1e-9)
    # the naive guess Ω ∝ x_0 x_1ᵀ (ignoring Σ_X⁻¹) is measurably off at ε = 3
    W_Q, W_K = _factor(np.outer(X[:, 0], X[:, 1]), cfg.H)
    cu, cv, _ = checks._compare_closed_form(cfg, {"W": X[None], "W_Q": W_Q[None],
                                                  "W_K": W_K[None]}, 0)
    assert min(cu, cv) < 0.99


def test_feature_alignment_of_a_planted_head():
    X = theory.anisotropic_features(np.random.default_rng(1), 20, 10, 0.0)
    W_Q, W_K = _factor(3.0 * np.outer(X[:, 0], X[:, 1]) / (np.linalg.norm(X[:, 0]) *
                                                              np.linalg.norm(X[:, 1])), 10)
    params = {"W": X[None], "W_Q": W_Q[None], "W_K": W_K[None]}
    np.testing.assert_allclose(checks._feature_alignment(params, 0), (1, 1), atol=1e-9)


def test_principal_cos_pads_missing_dimensions():
    A = np.eye(5)[:, :1]
    B = np.eye(5)[:, :3]
    np.testing.assert_allclose(checks._principal_cos(A, B, 3), [1, 0, 0])
    np.testing.assert_allclose(checks._principal_cos(np.zeros((5, 0)), B, 2), [0, 0])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("theory") / "t"
    record = run_theory(TINY, out)
    return out, record


def test_tiny_run_stores_table_data_and_figures(tiny_run):
    out, record = tiny_run
    table = pd.read_csv(out / "theory.csv")
    assert list(table.check.unique()) == list(checks.CHECKS)
    assert set(table.status) <= {"PASS", "FAIL"}
    assert {"prediction", "predicted", "measured", "tolerance", "status"} <= set(table.columns)
    stored = json.loads((out / "theory.json").read_text())
    assert stored["profile"]["name"] == "tiny" and stored["rows"] == record["rows"]
    assert stored["versions"]["jax"] and "git_commit" in stored
    for name in ("fig2b_multi_pair.png", "fig4_anisotropy.png", "appendix_e_more_pairs.png"):
        assert (out / "figures" / name).stat().st_size > 10_000
    # the theorems' easy cases hold even at 100 steps
    passed = dict(zip(table.prediction, table.status))
    assert passed["construction hits the requested ‖E_X‖₂/α"] == "PASS"


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
