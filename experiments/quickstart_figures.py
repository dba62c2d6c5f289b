"""Figures for the quickstart, drawn from stored runs: figures/<preset>_alignment.png.

usage: python experiments/quickstart_figures.py RUN_DIR [RUN_DIR ...]
"""

import sys
from pathlib import Path

from toymodels import load_run
from toymodels.plots import plot_alignment

figures = Path(__file__).resolve().parents[1] / "figures"
figures.mkdir(exist_ok=True)
for run_dir in sys.argv[1:]:
    preset = load_run(run_dir).summary["preset"]
    out = figures / f"{preset}_alignment.png"
    plot_alignment(run_dir, out)
    print(f"wrote {out}")
