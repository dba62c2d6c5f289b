"""Figure 2a: single pair, |cos| of features with singular vectors, and the spectrum of
every seed with its 1% significance cut-off (toymodels.plots.plot_alignment;
`toymodels figures --only fig2a_single_pair` draws the same).

usage: python experiments/fig2a_single_pair.py [--runs runs] [--out figures]
"""

import argparse
from pathlib import Path

from toymodels.figures import render_script

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--runs", default="runs", type=Path)
parser.add_argument("--out", default="figures", type=Path)
args = parser.parse_args()
for path in render_script("fig2a_single_pair", args.out, runs=args.runs):
    print(f"wrote {path}")
