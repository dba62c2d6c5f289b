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
