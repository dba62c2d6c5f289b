"""Figures 2b and 4 and the pairs-beyond-H study, drawn from a stored `toymodels theory` run
(each one whose data the run holds; `toymodels figures --only fig2b_multi_pair
fig4_anisotropy pairs_beyond_h` draws the same).

usage: toymodels theory --quick --out runs/theory-quick     (trains; about 8 minutes on 2 cores)
       python experiments/theory_figures.py [--theory runs/theory-quick] [--out figures]
"""

import argparse
from pathlib import Path

from toymodels.figures import render_script

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--theory", default="runs/theory-quick", type=Path)
parser.add_argument("--out", default="figures", type=Path)
args = parser.parse_args()
drawn = [path for name in ("fig2b_multi_pair", "fig4_anisotropy", "pairs_beyond_h")
         for path in render_script(name, args.out, paths={"theory": args.theory},
                                   optional=True)]
if not drawn:
    raise SystemExit(f"{args.theory} holds no theory figure data; make it with: "
                     "toymodels theory --quick --out runs/theory-quick")
for path in drawn:
    print(f"wrote {path}")
