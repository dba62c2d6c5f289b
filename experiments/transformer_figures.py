"""Toy transformers: do singular vectors find features when attention is learned from a task?

Draws, from stored runs and a stored sweep (never by retraining):
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

from toymodels.plots import plot_realism, plot_rope_offsets, plot_transformer_run

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--runs", default="runs", type=Path)
parser.add_argument("--out", default="figures", type=Path)
args = parser.parse_args()
args.out.mkdir(parents=True, exist_ok=True)

for preset in ("retrieval", "multi-pair", "rope", "control", "full"):
    run_dir = args.runs / f"transformer-{preset}"
    if (run_dir / "summary.json").exists():
        plot_transformer_run(run_dir, args.out / f"transformer_{preset}.png")
        print(f"figure: {args.out / f'transformer_{preset}.png'}")
if (args.runs / "transformer-rope" / "analysis.npz").exists():
    plot_rope_offsets(args.runs / "transformer-rope", args.out / "transformer_rope_offsets.png")
    print(f"figure: {args.out / 'transformer_rope_offsets.png'}")
sweep = args.runs / "sweeps" / "transformer_realism"
if (sweep / "results.parquet").exists():
    plot_realism(sweep, args.out / "transformer_realism.png")
    print(f"figure: {args.out / 'transformer_realism.png'}")
