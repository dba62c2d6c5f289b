"""Every experiment script draws its figure from stored (tiny) runs."""

import subprocess
import sys

import pytest

from helpers import REPO, copy_run
from toymodels.cli import main


@pytest.fixture(scope="module")
def runs(tmp_path_factory, toy_run, no_head_run):
    """The session's tiny `single-pair` and `no-head` runs (seeds 0-1), where the scripts
    look for them."""
    runs = tmp_path_factory.mktemp("runs")
    for preset, run in (("single-pair", toy_run), ("no-head", no_head_run)):
        copy_run(run, runs / preset)
    return runs


@pytest.mark.parametrize("script", ["fig1_feature_geometry", "fig2a_single_pair",
                                    "fig3_dynamics"])
def test_experiment_draws_from_stored_runs(runs, tmp_path, script):
    proc = subprocess.run([sys.executable, str(REPO / "experiments" / f"{script}.py"),
                           "--runs", str(runs), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (png,) = tmp_path.glob("*.png")
    assert png.stat().st_size > 10_000


def test_robustness_figure_draws_from_a_stored_sweep(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text('preset = "single-pair"\nseeds = "0-1"\n[set]\nsteps = 20\n'
                    'chunk_steps = 20\nbatch_size = 32\nrecord_points = 0\n'
                    '[grid]\nlam = [1, 10]\nm = [4, 8]\nH = [4]\n')
    assert main(["sweep", str(spec), "--out", str(tmp_path / "sweep"), "--no-progress"]) == 0
    proc = subprocess.run([sys.executable, str(REPO / "experiments" / "appendix_a_robustness.py"),
                           "--sweep", str(tmp_path / "sweep"), "--out", str(tmp_path / "fig")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "fig" / "appendix_a_robustness.png").stat().st_size > 10_000


def test_optimizer_frame_study_reads_stored_runs(transformer_run, tmp_path):
    """The study's table from stored runs (one tiny run stands in for each combination),
    and its two Ω measurements on a head set by hand: Ω_f = e_q (a e_k + b e_q)ᵀ has
    off-template share |b| / √(a² + b²) and self score b / √H."""
    import csv
    import shutil

    import numpy as np

    one = copy_run(transformer_run, tmp_path / "one")  # seed 0, 20 steps
    params = dict(np.load(one / "params.npz"))
    (q, k, _), = ((0, 1, 1.0),)
    a, b, H = 3.0, -1.5, params["W_Q"].shape[-2]
    E = params["E"][0]
    W_Q, W_K = np.zeros_like(params["W_Q"]), np.zeros_like(params["W_K"])
    W_Q[0, :, :, 0] = E[:, q]
    W_K[0, :, :, 0] = a * E[:, k] + b * E[:, q]
    np.savez(one / "params.npz", **{**params, "W_Q": W_Q, "W_K": W_K})
    runs = tmp_path / "runs"
    for optimizer in ("adamw", "adamw_rotated", "sgd"):
        for frame in ("random", "axis"):
            shutil.copytree(one, runs / f"{optimizer}-{frame}")
    proc = subprocess.run([sys.executable, str(REPO / "experiments" / "optimizer_frame.py"),
                           "--runs", str(runs), "--out", str(tmp_path / "fig")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(open(runs / "optimizer_frame.csv")))
    assert len(rows) == 6
    for row in rows:
        assert float(row["off_template"]) == pytest.approx(abs(b) / np.hypot(a, b), rel=1e-4)
        assert float(row["self"]) == pytest.approx(b / np.sqrt(H), rel=1e-4)
    assert (tmp_path / "fig" / "optimizer_frame.png").stat().st_size > 10_000
    assert "| AdamW | random |" in proc.stdout
