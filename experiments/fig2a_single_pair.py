"""Figure 2a: single pair, |cos| of features with singular vectors, and the spectrum.

usage: python experiments/fig2a_single_pair.py [--runs runs] [--out figures]
"""

import argparse
from pathlib import Path

from toymodels.plots import plot_alignment

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--runs", default="runs", type=Path)
parser.add_argument("--out", default="figures", type=Path)
args = parser.parse_args()
args.out.mkdir(exist_ok=True)
plot_alignment(args.runs / "single-pair", args.out / "fig2a_single_pair.png")
print(f"wrote {args.out / 'fig2a_single_pair.png'}")
