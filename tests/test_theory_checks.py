"""`toymodels theory`: the checks' measurements on planted answers, the stored table and
figures from a tiny end-to-end run, and bad input."""

import json

import numpy as np
import pandas as pd
import pytest

from toymodels.theory import checks, foils
from toymodels.theory import closed_form as theory
from toymodels.cli import main
from toymodels.tasks.toy import second_moment, template_matrix
from toymodels.theory.runner import draw_figures, run_theory
from theory_verdict import verdict

TINY = checks.Profile("tiny", seeds=2, steps=100, eps=(0.0, 1.72), multi_seeds=1,
                      multi_steps=30, rank_h_steps=30, eps_steps=100, rank_h_dims=(4, 8),
                      rank_h_heads=(2,))


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


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("theory") / "t"
    record = run_theory(TINY, out)
    return out, record


def test_tiny_run_stores_table_data_and_figures(tiny_run):
    out, record = tiny_run
    table = pd.read_csv(out / "theory.csv", keep_default_na=False)
    assert list(table.check.unique()) == list(checks.CHECKS)
    assert set(table.status) <= {"PASS", "FAIL", "INFO"}
    assert {"prediction", "predicted", "measured", "tolerance", "status", "seeds", "held_out",
            "foil", "foil_measured", "foil_status", "no_foil", "defect"} <= set(table.columns)
    stored = json.loads((out / "theory.json").read_text())
    assert stored["profile"]["name"] == "tiny" and stored["rows"] == record["rows"]
    assert stored["versions"]["jax"] and "git_commit" in stored
    for name in ("fig2b_multi_pair.png", "fig4_anisotropy.png", "pairs_beyond_h.png"):
        assert (out / "figures" / name).stat().st_size > 10_000
    # the multi-pair check trains seeds the preset was not tuned on
    with np.load(out / "data" / "multi_pair.npz") as f:
        assert f["seeds"][0] == checks.HELD_OUT_SEED


def test_tiny_run_verdicts_follow_from_values(tiny_run):
    """Every verdict, the row's and each foil's, is its value against the tolerance;
    every prediction row has a foil or says why not; a defect is exactly a foil that
    passes; every row names its seeds, all held out."""
    _, record = tiny_run
    for r in record["rows"]:
        assert r["seeds"] and r["held_out"] is True, r["prediction"]
        if r["status"] == "INFO":
            assert not r["foils"] and r["tolerance"] == "-"
            continue
        measured = np.nan if r["measured"] is None else r["measured"]
        assert r["status"] == verdict(measured, r["tolerance"]), r["prediction"]
        assert r["foils"] or r["no_foil"], r["prediction"]
        for f in r["foils"]:
            value = np.nan if f["measured"] is None else f["measured"]
            assert f["status"] == verdict(value, r["tolerance"]), (r["prediction"], f)
        assert bool(r["defect"]) == any(f["status"] == "PASS" for f in r["foils"])


def test_tiny_run_values(tiny_run):
    """What even 100 steps decide, and the table's numbers against the stored data."""
    out, record = tiny_run
    rows = {}
    for r in record["rows"]:
        rows.setdefault(r["check"], []).append(r)
    # Foils built from the closed forms are rejected however short the training.
    for check, index in (("theorem1", 0), ("theorem1", 1), ("theorem1", 2), ("theorem1", 3),
                         ("isotropy", 0), ("anisotropy", 0), ("multi_pair", 0),
                         ("multi_pair", 2), ("multi_pair", 3), ("sigma_targets", 0),
                         ("pairs_beyond_h", 0), ("pairs_beyond_h", 2)):
        r = rows[check][index]
        assert r["foils"] and all(f["status"] == "FAIL" for f in r["foils"]), r["prediction"]
    # Theorem 1's top pair is found within 100 steps at ε = 3
    assert rows["theorem1"][0]["status"] == "PASS" and rows["theorem1"][0]["measured"] > 0.99
    with np.load(out / "data" / "anisotropy.npz") as f:
        assert rows["anisotropy"][0]["measured"] == pytest.approx(f["angle_error"].max())
        assert rows["anisotropy"][0]["foils"][0]["measured"] == pytest.approx(
            f["angle_error_naive"].max())
        assert f["angle_error_naive"].max() > 10  # Ω* at ε = 1.72 is that far from x_0
    with np.load(out / "data" / "sigma_targets.npz") as f:
        assert rows["sigma_targets"][0]["measured"] == pytest.approx(f["spectrum_error"].max())
        one = f["seed"] == f["seed"][0]
        t, s = f["targets"][one], f["sigma_star"][one]
        np.testing.assert_allclose(s / s[t == 1.0], t, rtol=1e-9)  # Ω* linear in the target
    with np.load(out / "data" / "pairs_beyond_h.npz") as f:
        assert rows["pairs_beyond_h"][0]["measured"] == pytest.approx(f["error"].max())
        assert rows["pairs_beyond_h"][0]["foils"][0]["measured"] == pytest.approx(
            f["truncation_error"].max())
    with np.load(out / "data" / "multi_pair.npz") as f:
        assert (f["wedin_sin_bound"] >= 0).all() and (f["wedin_sin_bound"] <= 1).all()
    assert sum(r["status"] == "INFO" for r in record["rows"]) == 7  # the observations


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


def test_theory_output_records_its_figures_so_overwrite_replaces_it(tiny_run):
    from toymodels.store import foreign_files
    out, _ = tiny_run
    assert list((out / "figures").glob("*.png"))  # drawn into the staged result
    assert foreign_files(out) == []
