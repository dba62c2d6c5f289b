"""Appendix A analogue: single-pair alignment across λ, N, m and H, over seeds.

Draws one heatmap per λ from a stored sweep: rows (N, m), columns H, colour and
number the mean over seeds of min(|cos(w₀, u)|, |cos(w₁, v)|) of the matched pair,
with the worst seed in brackets.

usage: toymodels sweep experiments/sweeps/robustness.toml --out runs/sweeps/robustness
       python experiments/appendix_a_robustness.py [--sweep runs/sweeps/robustness] [--out figures]
"""

import argparse
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pyarrow.parquet as pq

from toymodels.plots import STYLE

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--sweep", default="runs/sweeps/robustness", type=Path)
parser.add_argument("--out", default="figures", type=Path)
args = parser.parse_args()

rows = pq.read_table(args.sweep / "results.parquet").to_pylist()
lams = sorted({r["lam"] for r in rows})
Hs = sorted({r["H"] for r in rows})
Nm = sorted({(r["N"], r["m"]) for r in rows})


def cell(lam, N, m, H):
    vals = [r["min_matched_cos"] for r in rows
            if (r["lam"], r["N"], r["m"], r["H"]) == (lam, N, m, H)
            and r["min_matched_cos"] is not None]
    return (np.mean(vals), np.min(vals), len(vals)) if vals else (np.nan, np.nan, 0)


stats = {lam: np.array([[cell(lam, N, m, H) for H in Hs] for N, m in Nm]) for lam in lams}
low = min(0.9, np.nanmin([st[..., 1] for st in stats.values()]))  # colour range shows spread

with plt.rc_context(STYLE):
    fig, axes = plt.subplots(1, len(lams), figsize=(3.2 * len(lams) + 1, 0.45 * len(Nm) + 1.6),
                             layout="constrained", squeeze=False)
    for ax, lam in zip(axes[0], lams):
        st = stats[lam]  # [rows, cols, (mean, worst, seeds)]
        im = ax.imshow(st[..., 0], vmin=low, vmax=1, cmap="viridis", aspect="auto")
        for (i, j), mean in np.ndenumerate(st[..., 0]):
            ax.text(j, i, f"{mean:.4f}\n({st[i, j, 1]:.4f})", ha="center", va="center",
                    fontsize=6.5, color="black" if mean > low + 0.6 * (1 - low) else "white")
        ax.set_xticks(range(len(Hs)), [f"H={H}" for H in Hs])
        ax.set_yticks(range(len(Nm)), [f"N={N}, m={m}" for N, m in Nm])
        ax.set_title(f"λ = {lam:g}, {int(st[0, 0, 2])} seeds")
    fig.colorbar(im, ax=axes[0, -1], label="matched min |cos| (mean; worst seed)")
    args.out.mkdir(exist_ok=True)
    fig.savefig(args.out / "appendix_a_robustness.png")
print(f"wrote {args.out / 'appendix_a_robustness.png'}")
