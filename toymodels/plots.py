"""Figures drawn from a stored run (never by retraining)."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

STYLE = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "figure.dpi": 150,
         "savefig.bbox": "tight", "axes.spines.top": False, "axes.spines.right": False}


def plot_alignment(run_dir, out_path, instance: int = 0):
    """|cos| of features against left/right singular vectors (one instance) and every
    instance's spectrum."""
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    with np.load(run_dir / "analysis.npz", allow_pickle=False) as f:
        cos_u, cos_v, S = f["cos_u"][instance], f["cos_v"][instance], f["singular_values"]
    template = summary["config"]["template"]
    seed = summary["instances"][instance]["seed"]
    N, K = cos_u.shape
    n_show = min(K, 12 if len(template) <= 4 else K)  # a few columns suffice for few pairs

    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.4), layout="constrained",
                                 gridspec_kw={"width_ratios": [1, 1, 1.2]})
        for ax, cos, side, feats in ((axes[0], cos_u, "u", [p[0] for p in template]),
                                     (axes[1], cos_v, "v", [p[1] for p in template])):
            im = ax.imshow(cos[:, :n_show], vmin=0, vmax=1, cmap="viridis", aspect="auto",
                           interpolation="nearest")
            ax.set_xlabel(f"singular index k ({'left' if side == 'u' else 'right'})")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_title(f"|cos(w_i, {side}_k)|, seed {seed}")
            for i in feats:  # mark the attended features
                ax.annotate("◀", (n_show - 0.5, i), xytext=(6, 0), textcoords="offset points",
                            va="center", ha="center", color="crimson", fontsize=7,
                            annotation_clip=False)
        axes[0].set_ylabel("feature i  (◀ attended)")
        fig.colorbar(im, ax=axes[1], fraction=0.05, pad=0.02, label="|cos|")

        ax = axes[2]
        k = np.arange(S.shape[1])  # 0-based, as sv_index in summary.json
        for n in range(S.shape[0]):
            ax.semilogy(k, np.maximum(S[n], 1e-12), "o-", ms=2.5, lw=0.8, alpha=0.8)
        ax.set_xlabel("singular index k")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("σ_k of Ω = W_Qᵀ W_K")
        ax.set_title(f"{summary['preset']}: spectra of {S.shape[0]} instances")
        fig.savefig(out_path)
        plt.close(fig)
