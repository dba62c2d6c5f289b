"""Figure 3 analogue: over training, the singular vectors align first (attention loss
falls), then the attended features leave superposition (reconstruction loss falls).

Reads the metrics the single-pair run recorded inside its training loop
(toymodels.plots.plot_dynamics; `toymodels figures --only fig3_dynamics` draws the same).

usage: python experiments/fig3_dynamics.py [--runs runs] [--out figures]
"""

import argparse
from pathlib import Path

from toymodels.figures import render_script

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--runs", default="runs", type=Path)
parser.add_argument("--out", default="figures", type=Path)
args = parser.parse_args()
for path in render_script("fig3_dynamics", args.out, runs=args.runs):
    print(f"wrote {path}")
