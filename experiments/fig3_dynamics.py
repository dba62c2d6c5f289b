"""Figure 3 analogue: over training, the singular vectors align first (attention loss
falls), then the attended features leave superposition (reconstruction loss falls).

Reads the metrics the single-pair run recorded inside its training loop.

usage: python experiments/fig3_dynamics.py [--runs runs] [--out figures]
"""

import argparse
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from toymodels import load_run
from toymodels.plots import STYLE

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--runs", default="runs", type=Path)
parser.add_argument("--out", default="figures", type=Path)
args = parser.parse_args()

run = load_run(args.runs / "single-pair")
dyn = run.dynamics
if dyn is None:
    raise SystemExit("the single-pair run recorded no dynamics: rerun it with "
                     "--set record_points=100")
steps = dyn["steps"]
alignment = np.minimum(dyn["cos_query_u"], dyn["cos_key_v"]).min(axis=2)  # [I, R]
interference = dyn["interference"].max(axis=2)  # [I, R], worst attended feature
crossings = [inst["dynamics"] for inst in run.summary["instances"]]

with plt.rc_context(STYLE):
    fig, (ax, ax_loss) = plt.subplots(1, 2, figsize=(9.5, 3.3), layout="constrained")
    for series, color, label in ((alignment, "C0", "alignment min(|cos(w₀,u)|, |cos(w₁,v)|)"),
                                 (interference, "C3", "interference of w₀, w₁ (max)")):
        ax.semilogx(steps, series.T, color=color, lw=0.6, alpha=0.35)
        ax.semilogx(steps, series.mean(0), color=color, lw=2, label=label)
    for key, color in (("step_alignment_above", "C0"), ("step_interference_below", "C3")):
        found = [c[key] for c in crossings if c[key] is not None]
        if found:
            ax.axvline(np.median(found), color=color, ls=":", lw=1.2)
    ax.axhline(0.9, color="C0", lw=0.5, ls="--")
    ax.axhline(0.1, color="C3", lw=0.5, ls="--")
    ax.set_xlabel("training step")
    ax.set_title(f"single pair, {alignment.shape[0]} seeds (dotted: median first crossing)")
    ax.legend(loc="center left", fontsize=7)

    t = np.arange(1, run.curves["recon"].shape[1] + 1)
    for name, color in (("recon", "C2"), ("attn", "C1")):
        smooth = np.convolve(run.curves[name].mean(0), np.ones(25) / 25, mode="valid")
        ax_loss.loglog(t[12:12 + smooth.size], np.maximum(smooth, 1e-6), color=color,
                       label=f"{name} loss")
    ax_loss.set_xlabel("training step")
    ax_loss.set_title("losses (mean over seeds, 25-step average, floor 1e-6)")
    ax_loss.legend(fontsize=7)
    args.out.mkdir(exist_ok=True)
    fig.savefig(args.out / "fig3_dynamics.png")
print(f"wrote {args.out / 'fig3_dynamics.png'}")
