"""Figures of the sparse attention decomposition, drawn from stored tables only.

  plot_nrecon(dir)          N_recon distribution against the rotated control, overall and
                            per head (paper Figure 9 analogue)
  plot_head_map(dir)        layer × head map of median N_recon, heads and rotated control
  plot_sparseness_over_training(table)  median sparseness against training step beside the
                            rotated control (paper Figure 7 analogue, for toy runs)
  plot_planted_over_training(dir)  the same for every head of the toy-transformer runs in
                            experiments/sad_toy_validation.py's over_training.parquet
  plot_planted_multi_pair(dir)  the rank-≥3 validation: each pair's planted firings carried
                            by its own matched index, beside the rotated and rank-one foils
"""

from pathlib import Path

import matplotlib
import numpy as np
import pyarrow.parquet as pq

from toymodels.plots.common import CELL_FONTSIZE, STYLE, finish, subplots

HEADS_COLOR, ROT_COLOR = "tab:blue", "tab:gray"


def _read(path, columns=None) -> dict:
    return {k: np.asarray(v) for k, v in pq.read_table(path, columns=columns).to_pydict().items()}


def plot_nrecon(sad_dir, out_path=None):
    sad_dir = Path(sad_dir)
    f = _read(sad_dir / "firings.parquet", ["layer", "head", "n_recon", "n_recon_rot"])
    h = _read(sad_dir / "heads.parquet")
    with matplotlib.rc_context(STYLE):
        fig, (ax0, ax1) = subplots(1, 2, figsize=(10.5, 3.2), layout="constrained",
                                       gridspec_kw={"width_ratios": [1, 2.4]})
        K = int(h["K"][0]) if len(h["K"]) else 1
        bins = np.arange(1, K + 2) - 0.5
        for col, color, label in (("n_recon", HEADS_COLOR, "heads"),
                                  ("n_recon_rot", ROT_COLOR, "rotated control")):
            ax0.hist(f[col], bins=bins, color=color, alpha=0.6, label=label,
                     weights=np.full(len(f[col]), 1 / max(len(f[col]), 1)))
        ax0.set_xlabel("N_recon")
        ax0.set_ylabel("share of firings")
        ax0.set_title(f"{len(f['n_recon'])} firings")
        ax0.legend(frameon=False)
        n = int(h["head"].max()) + 1 if len(h["head"]) else 1
        g = f["layer"].astype(int) * n + f["head"].astype(int)
        groups = [np.flatnonzero(g == i) for i in range(len(h["head"]))]
        pos = np.arange(len(groups))
        for offset, col, color in ((-0.2, "n_recon", HEADS_COLOR), (0.2, "n_recon_rot", ROT_COLOR)):
            # a head without firings has no quartiles (NaN: not drawn, and no warning)
            q = np.array([np.percentile(f[col][idx], [25, 50, 75]) if len(idx)
                          else [np.nan] * 3 for idx in groups]).reshape(-1, 3)
            ax1.vlines(pos + offset, q[:, 0], q[:, 2], color=color, lw=1.2, alpha=0.7)
            ax1.plot(pos + offset, q[:, 1], "o", ms=2.5, color=color)
        if "median_n_recon_rot_q05" in h:  # --rotations N: the control's median over draws
            ax1.vlines(pos + 0.2, h["median_n_recon_rot_q05"], h["median_n_recon_rot_q95"],
                       color="black", lw=2.5, alpha=0.25)
        for layer in range(1, len(groups) // n):
            ax1.axvline(layer * n - 0.5, color="0.85", lw=0.6)
        ax1.set_xticks(np.arange(0, len(groups), n), [f"L{i}" for i in range(len(groups) // n)])
        ax1.set_xlabel("head (grouped by layer)")
        ax1.set_ylabel("N_recon (median, IQR)")
        ax1.set_title("per head: heads (blue) vs rotated control (gray)"
                      + ("; its median's 5–95% over draws (shaded)"
                         if "median_n_recon_rot_q05" in h else ""))
        return finish(fig, out_path)


def plot_head_map(sad_dir, out_path=None):
    h = _read(Path(sad_dir) / "heads.parquet")
    L, n = int(h["layer"].max()) + 1, int(h["head"].max()) + 1
    with matplotlib.rc_context(STYLE):
        fig, axes = subplots(1, 2, figsize=(9, 0.45 * L + 1.6), layout="constrained")
        medians = np.concatenate([h["median_n_recon"], h["median_n_recon_rot"]])
        medians = medians[np.isfinite(medians)]  # heads without firings have none
        vmax = float(medians.max()) if medians.size else 1.0
        for ax, col, title in ((axes[0], "median_n_recon", "median N_recon"),
                               (axes[1], "median_n_recon_rot", "rotated control")):
            grid = np.full((L, n), np.nan)
            grid[h["layer"].astype(int), h["head"].astype(int)] = h[col]
            im = ax.imshow(grid, cmap="viridis_r", vmin=1, vmax=vmax, aspect="auto",
                           interpolation="nearest")
            for (i, j), v in np.ndenumerate(grid):
                if np.isfinite(v):
                    ax.text(j, i, f"{v:g}", ha="center", va="center", fontsize=CELL_FONTSIZE,
                            color="white" if v > (1 + vmax) / 2 else "black")
            ax.set_xlabel("head")
            ax.set_ylabel("layer")
            ax.set_title(title)
        fig.colorbar(im, ax=axes[1], fraction=0.05, pad=0.02, label="N_recon")
        return finish(fig, out_path)


def plot_sparseness_over_training(table: dict, out_path=None, title: str = ""):
    """table: columns 'step', 'median_sparseness', 'median_sparseness_rot' (one row per
    recorded checkpoint; e.g. one head's heads.parquet rows stacked over training)."""
    step = np.asarray(table["step"])
    order = np.argsort(step)
    with matplotlib.rc_context(STYLE):
        fig, ax = subplots(figsize=(4.5, 3.2), layout="constrained")
        ax.plot(step[order], np.asarray(table["median_sparseness"])[order], "o-", ms=3,
                color=HEADS_COLOR, label="head")
        ax.plot(step[order], np.asarray(table["median_sparseness_rot"])[order], "o-", ms=3,
                color=ROT_COLOR, label="rotated control")
        ax.set_xlabel("training step")
        ax.set_ylabel("median sparseness (low = sparse)")
        ax.set_title(title or "sparseness over training")
        ax.legend(frameon=False)
        return finish(fig, out_path)


def _panel_row(n: int):
    """A figure with one 4.4 x 3.2 inch panel per run or seed (at least one)."""
    fig, axes = subplots(1, max(n, 1), figsize=(4.4 * max(n, 1), 3.2), layout="constrained",
                         squeeze=False)
    return fig, axes[0]


def plot_planted_over_training(sad_toy_dir, out_path=None):
    """Median sparseness of the planted firings against training step, every head of every
    decomposed seed beside its rotated control, one panel per run (the tables
    experiments/sad_toy_validation.py stores in DIR/over_training.parquet)."""
    over = pq.read_table(Path(sad_toy_dir) / "over_training.parquet").to_pylist()
    presets = list(dict.fromkeys(r["run"] for r in over))
    with matplotlib.rc_context(STYLE):
        fig, axes = _panel_row(len(presets))
        for ax, preset in zip(axes, presets):
            sub = [r for r in over if r["run"] == preset and r["median_sparseness"] is not None]
            heads = sorted({(r["seed"], r["layer"], r["head"]) for r in sub})
            for key, color, label in (("median_sparseness", HEADS_COLOR, "head"),
                                      ("median_sparseness_rot", ROT_COLOR, "rotated control")):
                for i, where in enumerate(heads):
                    line = sorted((r["step"], r[key]) for r in sub
                                  if (r["seed"], r["layer"], r["head"]) == where)
                    ax.semilogx(*zip(*line), color=color, lw=0.8, alpha=0.6,
                                label=label if i == 0 else None)
            ax.set_xlabel("training step")
            ax.set_ylabel("median sparseness of planted firings\n(low = sparse)")
            ax.set_ylim(0, 1.02)
            ax.set_title(f"{preset}: every head, {len({h[0] for h in heads})} seeds")
            ax.legend(frameon=False, loc="lower left")
        return finish(fig, out_path)


def plot_planted_multi_pair(sad_toy_dir, out_path=None):
    """The rank-≥3 validation (experiments/sad_toy_validation.py's
    multi_pair_pairs.parquet): per pair, ordered by target strength, the share of its
    planted sequences whose firing's top contribution is its own matched singular index,
    for the trained head, its rotated foil (5–95% over Haar draws) and its rank-one foil;
    one panel per seed."""
    rows = pq.read_table(Path(sad_toy_dir) / "multi_pair_pairs.parquet").to_pylist()
    seeds = list(dict.fromkeys(r["seed"] for r in rows))
    with matplotlib.rc_context(STYLE):
        fig, axes = _panel_row(len(seeds))
        for ax, seed in zip(axes, seeds):
            sub = [r for r in rows if r["seed"] == seed]
            pairs = sorted({r["pair"] for r in sub})

            def share(model):
                return np.array([[r["share_recovered"] for r in sub
                                  if r["model"] == model and r["pair"] == p] for p in pairs])

            rot = share("rotated")
            ax.fill_between(pairs, np.percentile(rot, 5, axis=1), np.percentile(rot, 95, axis=1),
                            color=ROT_COLOR, alpha=0.35, step="mid",
                            label=f"rotated foil, 5–95% of {rot.shape[1]} draws")
            ax.plot(pairs, share("rank_one")[:, 0], "x", color="tab:red", ms=5,
                    label="rank-one foil")
            ax.plot(pairs, share("head")[:, 0], "o", color=HEADS_COLOR, ms=4,
                    label="trained head")
            ax.axhline(0.5, color="0.6", lw=0.6, ls=":")
            ax.set_ylim(-0.03, 1.03)
            ax.set_xlabel("pair (targets fall geometrically 1 → 0.2)")
            ax.set_ylabel("planted sequences whose firing's top\ncontribution is the pair's "
                          "own index")
            ax.set_xticks(pairs[::2])
            ax.set_title(f"{sub[0]['run']}, seed {seed}")
            ax.legend(frameon=False, loc="center left", fontsize="small")
        return finish(fig, out_path)
