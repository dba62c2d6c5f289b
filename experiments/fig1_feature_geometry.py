"""Figure 1 analogue: the attended features leave superposition; without the head none do.

Draws WᵀW and the feature norms (coloured by interference) of one instance of the
no-head control beside one of the single-pair model, from stored runs
(toymodels.plots.plot_feature_geometry; `toymodels figures --only fig1_feature_geometry`
draws the same).

usage: python experiments/fig1_feature_geometry.py [--runs runs] [--out figures]
"""

import argparse
from pathlib import Path

from toymodels.figures import render_script

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--runs", default="runs", type=Path)
parser.add_argument("--out", default="figures", type=Path)
args = parser.parse_args()
for path in render_script("fig1_feature_geometry", args.out, runs=args.runs):
    print(f"wrote {path}")
