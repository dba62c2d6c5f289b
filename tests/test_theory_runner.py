"""`toymodels theory` (theory/runner.py): the stored table, data and figures of a tiny end-to-end
run, verdicts that follow from its values, redrawn figures, and bad input."""

import json

import numpy as np
import pandas as pd
import pytest

from helpers import one_line_exit_2, verdict
from toymodels.cli import main
from toymodels.theory import checks
from toymodels.theory.runner import draw_figures, run_theory

PROFILE = checks.Profile("tiny", seeds=2, steps=100, eps=(0.0, 1.72), multi_seeds=1,
                         multi_steps=30, rank_h_steps=30, eps_steps=100, rank_h_dims=(4, 8),
                         rank_h_heads=(2,))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("theory") / "t"
    record = run_theory(PROFILE, out)
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
    one_line_exit_2(["theory", "--only", only, "--out", str(tmp_path / "t")], capsys, message)
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
