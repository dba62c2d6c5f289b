"""Appendix A analogue: single-pair alignment across λ, N, m and H, over seeds.

Draws one heatmap per λ from a stored sweep: rows (N, m), columns H; colour (log scale)
and number 1 − the mean over seeds of min(|cos(w₀, u)|, |cos(w₁, v)|) of the matched
pair, with the worst seed in brackets (toymodels.plots.plot_robustness;
`toymodels figures --only appendix_a_robustness` draws the same).

usage: toymodels sweep experiments/sweeps/robustness.toml --out runs/sweeps/robustness
       python experiments/appendix_a_robustness.py [--sweep runs/sweeps/robustness] [--out figures]
"""

import argparse
from pathlib import Path

from toymodels.figures import render_script

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--sweep", default="runs/sweeps/robustness", type=Path)
parser.add_argument("--out", default="figures", type=Path)
args = parser.parse_args()
for path in render_script("appendix_a_robustness", args.out, paths={"sweep": args.sweep}):
    print(f"wrote {path}")
