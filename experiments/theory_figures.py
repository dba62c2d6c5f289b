"""Figures 2b and 4 and the pairs-beyond-H study, drawn from a stored `toymodels theory` run.

usage: toymodels theory --quick --out runs/theory-quick     (trains; about 8 minutes on 2 cores)
       python experiments/theory_figures.py [--theory runs/theory-quick] [--out figures]
"""

import argparse
from pathlib import Path

from toymodels.theory.runner import draw_figures

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--theory", default="runs/theory-quick", type=Path)
parser.add_argument("--out", default="figures", type=Path)
args = parser.parse_args()
for path in draw_figures(args.theory, args.out):
    print(f"wrote {path}")
