"""Figure 1 analogue: the attended features leave superposition; without the head none do.

Draws WᵀW and the feature norms (coloured by interference) of one instance of the
no-head control beside one of the single-pair model, from stored runs.

usage: python experiments/fig1_feature_geometry.py [--runs runs] [--out figures]
"""

import argparse
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from toymodels import load_run
from toymodels.plots import STYLE

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--runs", default="runs", type=Path)
parser.add_argument("--out", default="figures", type=Path)
args = parser.parse_args()

panels = [("no-head", "λ = 0 (no head)"), ("single-pair", "one attended pair")]
with plt.rc_context(STYLE):
    fig, axes = plt.subplots(2, 2, figsize=(8, 6), layout="constrained",
                             gridspec_kw={"height_ratios": [2.2, 1]})
    for col, (name, title) in enumerate(panels):
        run = load_run(args.runs / name)
        with np.load(args.runs / name / "analysis" / "arrays.npz") as geometry:  # stored
            gram, norms, interference = (geometry[k][0] for k in  # first instance
                                         ("gram", "norms", "interference"))
        attended = sorted({i for p in run.config.template for i in p[:2]})
        im = axes[0, col].imshow(gram, cmap="RdBu_r", vmin=-1, vmax=1)
        axes[0, col].set_title(f"{title}: WᵀW (seed {run.summary['instances'][0]['seed']})")
        axes[0, col].xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[0, col].yaxis.set_major_locator(MaxNLocator(integer=True))
        axes[0, col].set_xlabel("feature j")
        axes[0, col].set_ylabel("feature i")
        bars = axes[1, col].bar(np.arange(norms.size), norms,
                                color=plt.cm.viridis(np.clip(interference, 0, 1)))
        for i in attended:
            bars[i].set_edgecolor("crimson")
            bars[i].set_linewidth(1.5)
        axes[1, col].set_xlabel("feature i (red outline: attended)")
        axes[1, col].set_ylabel("‖w_i‖")
    fig.colorbar(im, ax=axes[0, :], fraction=0.03, label="w_i · w_j")
    fig.colorbar(plt.cm.ScalarMappable(cmap="viridis", norm=plt.Normalize(0, 1)),
                 ax=axes[1, :], fraction=0.03, label="interference Σ_j≠i (ŵ_i·w_j)²")
    args.out.mkdir(exist_ok=True)
    fig.savefig(args.out / "fig1_feature_geometry.png")
print(f"wrote {args.out / 'fig1_feature_geometry.png'}")
