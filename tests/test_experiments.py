"""Every experiment script draws its figure from stored (tiny) runs."""

import subprocess
import sys
from pathlib import Path

import pytest

from toymodels.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--set", "batch_size=32", "--set", "chunk_steps=20", "--steps", "40", "--no-progress"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    for preset in ("single-pair", "no-head"):
        assert main(["run", preset, "--seeds", "0-1", "--out", str(runs / preset), *TINY]) == 0
    return runs


@pytest.mark.parametrize("script", ["fig1_feature_geometry", "fig2a_single_pair",
                                    "fig3_dynamics"])
def test_experiment_draws_from_stored_runs(runs, tmp_path, script):
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / f"{script}.py"),
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
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "appendix_a_robustness.py"),
                           "--sweep", str(tmp_path / "sweep"), "--out", str(tmp_path / "fig")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "fig" / "appendix_a_robustness.png").stat().st_size > 10_000
