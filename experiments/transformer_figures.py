"""Toy transformers: do singular vectors find features when attention is learned from a task?

Draws, from stored runs and a stored sweep (never by retraining), each figure whose input
is stored (`toymodels figures --only 'transformer_*'` draws the same):
  figures/transformer_<preset>.png   every head's accuracy and alignment; the best head
                                     through training (the transformer's Figure 3)
  figures/transformer_rope_offsets.png  QK alignment of Ω_δ at every offset δ (Appendix D)
  figures/transformer_realism.png    alignment as LayerNorm, MLP, learned embeddings,
                                     anisotropy and depth are switched on (the sweep)

usage: toymodels run transformer-retrieval --seeds 0-7 --out runs/transformer-retrieval
       (the same for transformer-multi-pair, -rope, -control, -full)
       toymodels sweep experiments/sweeps/transformer_realism.toml --out runs/sweeps/transformer_realism
       python experiments/transformer_figures.py [--runs runs] [--out figures]
"""

import argparse
from pathlib import Path

from toymodels.figures import FIGURES, render_script

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--runs", default="runs", type=Path)
parser.add_argument("--out", default="figures", type=Path)
args = parser.parse_args()
for name in (n for n in FIGURES if n.startswith("transformer_")):
    for path in render_script(name, args.out, runs=args.runs, optional=True):
        print(f"figure: {path}")
