"""Figures of runs, theory checks and sweeps, drawn from stored (or in-memory) results,
never by retraining."""

import json
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.ticker import MaxNLocator

from toymodels.plots.common import CELL_FONTSIZE, STYLE, finish, fmt, subplots


def _summary(run) -> dict:
    """summary.json of a Run or a run directory."""
    if hasattr(run, "summary"):
        return run.summary
    return json.loads((Path(run) / "summary.json").read_text())


def _arrays(run, name: str) -> dict | None:
    """analysis.npz ('analysis') or dynamics.npz ('dynamics') of a Run or a run directory;
    None where the run has none."""
    if hasattr(run, "summary"):
        return getattr(run, name)
    path = Path(run) / f"{name}.npz"
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as f:
        return dict(f)


def _rel_tol(run) -> float:
    """The significance cut-off of the run's stored analysis (analysis/analysis.json), else
    the package default: σ_k is significant when σ_k > rel_tol · σ_1."""
    run_dir = getattr(run, "run_dir", None) if hasattr(run, "summary") else run
    if run_dir is not None:
        meta = Path(run_dir) / "analysis" / "analysis.json"
        try:
            return float(json.loads(meta.read_text())["rel_tol"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    from toymodels.analysis.svd import DEFAULT_REL_TOL
    return DEFAULT_REL_TOL


def instance_label(summary: dict, inst: dict) -> str:
    """'seed 3', plus the batched values where they differ from the run's config."""
    base = summary.get("config", {})
    own = {k: v for k, v in (inst.get("overrides") or {}).items() if base.get(k) != v}
    return ", ".join([f"seed {inst['seed']}"] + [f"{k}={v:g}" if isinstance(v, float)
                                                  else f"{k}={v}" for k, v in own.items()])


def plot_alignment(run_dir, out_path=None, instance: int = 0, rel_tol: float | None = None):
    """(A Run or a run directory; saved to out_path when given; returns the Figure.) |cos|
    of features against left/right singular vectors (one instance) and every instance's
    spectrum, each with its significance cut-off rel_tol · σ_1 (default: the rel_tol of the
    run's stored analysis, else toymodels.analysis.svd.DEFAULT_REL_TOL)."""
    summary, f = _summary(run_dir), _arrays(run_dir, "analysis")
    cos_u, cos_v, S = f["cos_u"][instance], f["cos_v"][instance], f["singular_values"]
    template = summary["config"]["template"]
    seed = summary["instances"][instance]["seed"]
    rel_tol = _rel_tol(run_dir) if rel_tol is None else rel_tol
    N, K = cos_u.shape
    n_show = min(K, 12 if len(template) <= 4 else K)  # a few columns suffice for few pairs

    with matplotlib.rc_context(STYLE):
        fig, axes = subplots(1, 3, figsize=(11.5, 3.4), layout="constrained",
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
        for n, inst in enumerate(summary["instances"]):
            color = f"C{n % 10}"
            ax.semilogy(k, np.maximum(S[n], 1e-12), "o-", ms=2.5, lw=0.8, alpha=0.8,
                        color=color, label=instance_label(summary, inst))
            if np.isfinite(S[n, 0]) and S[n, 0] > 0:  # this instance's significance cut-off
                ax.hlines(rel_tol * S[n, 0], k[0] - 0.3, k[-1] + 0.3, color=color, lw=0.7,
                          ls="--", alpha=0.6)
        ax.plot([], [], "k--", lw=0.7, alpha=0.6,
                label=f"cut-off {rel_tol:g}·σ_1\n(below: not significant)")
        ax.set_xlabel("singular index k")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("σ_k of Ω = W_Qᵀ W_K")
        ax.set_title(f"{summary['preset']}: spectra of {S.shape[0]} instances")
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0),
                  ncol=1 + (S.shape[0] - 1) // 12)
        return finish(fig, out_path)


# ---- theory figures (from `toymodels theory`'s stored data/<check>.npz) ------------


def _cos_heatmap(ax, cos, title, side, n_show):
    im = ax.imshow(cos[:, :n_show], vmin=0, vmax=1, cmap="viridis", aspect="auto",
                   interpolation="nearest")
    ax.set_xlabel(f"singular index k ({'left' if side == 'u' else 'right'})")
    ax.set_ylabel("attended pair p (strongest first)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title)
    return im


def plot_multi_pair(data: dict, out_path=None, seed_index: int = 0):
    """Figure 2b: |cos| of each pair's features with the singular vectors (one seed), and
    matched σ against the target value (every seed)."""
    cos_u, cos_v = data["cos_u"][seed_index], data["cos_v"][seed_index]
    P = cos_u.shape[0]
    n_show = min(cos_u.shape[1], P + 10)
    with matplotlib.rc_context(STYLE):
        fig, axes = subplots(1, 3, figsize=(11, 3.5), layout="constrained")
        _cos_heatmap(axes[0], cos_u, "|cos(x_p, u_k)|, query features", "u", n_show)
        im = _cos_heatmap(axes[1], cos_v, "|cos(y_p, v_k)|, key features", "v", n_show)
        fig.colorbar(im, ax=axes[1], fraction=0.05, pad=0.02, label="|cos|")
        ax = axes[2]
        t, s, sig = data["targets"], data["sigma"], data["significant"].astype(bool)
        for n in range(s.shape[0]):
            ax.plot(t[sig[n]], s[n][sig[n]], "o", ms=3, alpha=0.7, color=f"C{n}",
                    label=f"seed {n}")
            ax.plot(t[~sig[n]], s[n][~sig[n]], "o", ms=3, mfc="none", color=f"C{n}")
        ok = sig & np.isfinite(s)
        slope, intercept = np.polyfit(np.broadcast_to(t, s.shape)[ok], s[ok], 1)
        grid = np.linspace(0, t.max(), 50)
        ax.plot(grid, slope * grid + intercept, "k--", lw=0.8, label="linear fit")
        ax.set_xlabel("target value (template × target scale)")
        ax.set_ylabel("matched σ")
        ax.set_title("σ of each pair's matched singular index\n(hollow: not significant)")
        ax.legend(fontsize=7, frameon=False)
        return finish(fig, out_path)


def plot_anisotropy(data: dict, out_path=None):
    """Figure 4: alignment of the top singular pair with the attended features against
    anisotropy ε = ‖E_X‖₂/α, beside Theorem 2's bound and the closed form."""
    eps = data["eps"]
    levels = np.unique(eps)

    def stat(values):  # mean and std per level, both sides pooled
        return (np.array([values[eps == e].mean() for e in levels]),
                np.array([values[eps == e].std() for e in levels]))

    with matplotlib.rc_context(STYLE):
        fig, ax = subplots(figsize=(5.2, 3.6), layout="constrained")
        lo, hi = data["gpt2_eps"]
        ax.axvspan(lo, hi, color="0.9", label="GPT-2 range (our scale)")
        ax.axhline(0.75, color="0.5", ls=":", lw=0.8, label="paper: above 0.75")
        closed = np.sqrt(1 - data["closed_form_sin"] ** 2)
        for values, label, style in ((closed, "closed form Ω* (Theorem 1)", "k-"),
                                     (data["align_mse"], "trained, squared error, one-hot",
                                      "o-"),
                                     (data["align_xent"], "trained, paper's loss, sparse", "s-")):
            mean, std = stat(values)
            ax.errorbar(levels, mean, yerr=std, fmt=style, ms=3.5, lw=1, capsize=2,
                        label=label)
        # Tight bound |cos| >= 2√κ/(κ+1) for our one-spike spectra, κ = (1+ε)/(1−ε/(D−1)),
        # and the Neumann bound, which says nothing from ε = 1/2 on.
        D = int(data["D"]) if "D" in data else 10
        grid = np.linspace(0, levels.max(), 200)
        kappa = (1 + grid) / (1 - grid / (D - 1))
        ax.plot(grid, 2 * np.sqrt(kappa) / (kappa + 1), "r--", lw=1,
                label="tight bound: |cos| ≥ 2√κ/(κ+1)")
        half = np.linspace(0, 0.5, 100)
        ax.plot(half, np.sqrt(1 - (half / (1 - half)) ** 2), ":", color="0.4", lw=1,
                label="Neumann bound (ε < 1/2)")
        ax.set_xlabel("anisotropy ε = ‖E_X‖₂ / α of the Σ_X each loss sees")
        ax.set_ylabel("|cos(u_1, x_0)|, |cos(v_1, x_1)|")
        ax.set_ylim(0, 1.02)
        ax.set_title("Alignment against feature anisotropy (N=20, D=H=10)")
        ax.legend(fontsize=7, frameon=False, loc="lower left")
        return finish(fig, out_path)


def plot_pairs_beyond_h(data: dict, out_path=None):
    """More pairs than H: the trained head's distance from the rank-H optimum (left) and
    each pair's fate, kept, shared or dropped, in the optimum and in the trained heads."""
    H, d = data["H"], data["d"]
    heads, dims = np.unique(H), np.unique(d)
    fates = ("kept", "shared", "dropped")
    colors = ("#3a7d44", "#e0a030", "#b0b0b0")
    with matplotlib.rc_context(STYLE):
        fig, axes = subplots(1, 2, figsize=(10, 3.6), layout="constrained",
                                 gridspec_kw={"width_ratios": [1, 1.4]})
        ax = axes[0]
        for n, h in enumerate(heads):
            at = H == h
            jitter = (n - (len(heads) - 1) / 2) * 0.25
            ax.plot(d[at] + jitter, data["error"][at], "o", ms=4, label=f"trained, H={h}")
            ax.plot(d[at] + jitter, np.maximum(data["strongest_h_error"][at], 1e-3), "x", ms=4,
                    color="0.5", label="the H strongest pairs kept whole" if n == 0 else None)
            if "truncation_error" in data:  # the plain (unweighted) truncation [Ω*]_H
                ax.plot(d[at] + jitter, np.maximum(data["truncation_error"][at], 1e-3), "+",
                        ms=5, color="0.2", label="plain truncation [Ω*]_H" if n == 0 else None)
        ax.axhline(0.05, color="r", ls="--", lw=0.8, label="tolerance")
        ax.set_yscale("log")
        ax.set_ylim(8e-4, 2)
        ax.set_xlabel("residual dimension D (12 attended features)")
        ax.set_ylabel("‖Σ^½(Ω − Ω_H)Σ^½‖ / ‖Σ^½Ω_HΣ^½‖")
        ax.set_title("distance from the rank-H optimum Ω_H (loss metric)")
        ax.legend(fontsize=7, frameon=False)
        ax = axes[1]
        labels, x = [], 0
        for h in heads:
            for dim in dims:
                at = (H == h) & (d == dim)
                if not at.any():  # a cell the study leaves out (H >= D)
                    continue
                opt, trained = data["fate_optimum"][at], data["fate_trained"][at]
                bottom = 0.0
                for f, (name, color) in enumerate(zip(fates, colors)):
                    frac = float((opt == f).mean())
                    ax.bar(x, frac, bottom=bottom, color=color, width=0.7,
                           label=name if x == 0 else None)
                    bottom += frac
                ax.plot(x, float((trained == fates.index("kept")).mean()), "k_", ms=14,
                        mew=2, label="trained: kept fraction" if x == 0 else None)
                labels.append(f"H={h}\nD={dim}")
                x += 1
        ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_ylabel(f"fraction of the {data['fate_optimum'].shape[1]} pairs")
        ax.set_title("each pair's fate in the rank-H optimum (bars)")
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1, 1))
        return finish(fig, out_path)


# ---- toy transformers (from a run directory's summary.json and dynamics.npz) --------


def plot_transformer_run(run_dir, out_path=None):
    """(A Run or a run directory; saved to out_path when given; returns the Figure.) Left: every head of every instance, its attention accuracy beside its QK and OV
    alignment (Hungarian-matched, min of both sides) and the QK random-rotation baseline.
    Right: through training, the best head's attention accuracy against its QK and OV
    alignment (the transformer's Figure 3)."""
    summary = _summary(run_dir)
    columns = ("accuracy", "qk_matched", "qk_baseline", "ov_matched")
    labels, grid = [], []
    for inst in summary["instances"]:
        for h in inst["heads"] or []:  # a diverged instance has none
            labels.append(f"seed {inst['seed']} · L{h['layer']}H{h['head']}")
            grid.append([np.nan if h[c] is None else h[c] for c in columns])
    grid = np.array(grid)
    dynamics = _arrays(run_dir, "dynamics")
    with matplotlib.rc_context(STYLE):
        fig, axes = subplots(1, 2, figsize=(10, max(3.2, 0.27 * len(labels) + 1.2)),
                             layout="constrained", gridspec_kw={"width_ratios": [1, 1.3]})
        ax = axes[0]
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto",
                       interpolation="nearest")
        ax.set_xticks(range(len(columns)), ["attention\naccuracy", "QK |cos|\nmatched",
                                            "QK rotated\nbaseline", "OV |cos|\nmatched"])
        ax.set_yticks(range(len(labels)), labels, fontsize=7.5)
        for (r, c), v in np.ndenumerate(grid):
            ax.text(c, r, fmt(v), ha="center", va="center", fontsize=CELL_FONTSIZE,
                    color="white" if v < 0.6 else "black")
        fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02, label="accuracy or |cos|")
        ax.set_title(f"{summary['preset']}: every head after training")
        ax = axes[1]
        best = [inst.get("best_head", inst.get("solving_head"))  # older runs: solving_head
                for inst in summary["instances"]]
        if dynamics is not None and any(b is not None for b in best):
            d = dynamics
            steps, acc, qk, ov = d["steps"], d["accuracy"], d["qk_cos"], d["ov_cos"]
            first = next(n for n, b in enumerate(best) if b is not None)  # labelled once
            for n, b in enumerate(best):
                if b is None:  # diverged, or a task that never asks (control)
                    continue
                at = (n, slice(None), b["layer"], b["head"])
                kw = {"lw": 0.9, "alpha": 0.8}
                ax.semilogx(steps, acc[at], color="tab:blue", **kw,
                            label="attention accuracy" if n == first else None)
                ax.semilogx(steps, qk[at], color="tab:orange", ls="--", **kw,
                            label="QK alignment (best k)" if n == first else None)
                ax.semilogx(steps, ov[at], color="tab:green", ls=":", **kw,
                            label="OV alignment (best k)" if n == first else None)
            ax.set_xlabel("training step")
            ax.set_ylim(0, 1.02)
            ax.set_title("best head of each instance, through training")
            ax.legend(loc="lower right", frameon=False)
        else:
            ax.axis("off")
            ax.text(0.5, 0.5, "no dynamics recorded" if dynamics is None else
                    "no best head to follow:\nthe task never asks a head to attend",
                    ha="center", va="center", transform=ax.transAxes, color="0.4")
        return finish(fig, out_path)


def plot_rope_offsets(run_dir, out_path=None):
    """QK alignment of every head's per-offset matrix Ω_δ = W_Qᵀ R_{−δ} W_K with the planted
    pair, and the signed planted logit E_iᵀ Ω_δ E_j / √H, against the offset δ; the task's
    offset marked."""
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    with np.load(run_dir / "analysis.npz", allow_pickle=False) as f:
        offsets, cos, logit = f["rope_offsets"], f["rope_qk_cos"], f["rope_planted_logit"]
    task_offset = summary["config"]["offset"]
    I, L, n = cos.shape[:3]
    with matplotlib.rc_context(STYLE):
        fig, axes = subplots(1, 2, figsize=(9, 3.2), layout="constrained")
        for a, (values, label) in zip(axes, ((cos, "matched |cos| with (E_i, E_j)"),
                                             (logit, "planted logit E_iᵀ Ω_δ E_j / √H"))):
            for i in range(I):
                for layer in range(L):
                    for h in range(n):
                        a.plot(offsets, values[i, layer, h], "o-", ms=2.5, lw=0.8, alpha=0.7)
            a.axvline(task_offset, color="crimson", lw=0.8, ls="--")
            a.set_xlabel("query–key offset δ (red: the task's offset)")
            a.set_ylabel(label)
        axes[0].set_ylim(0, 1.02)
        axes[1].axhline(0, color="black", lw=0.5)
        axes[0].set_title(f"{summary['preset']}: every head of {I} instances")
        return finish(fig, out_path)


def plot_realism(sweep_dir, out_path=None):
    """Per model variant of a transformer sweep: the best head's QK and OV alignment and the
    other heads' QK alignment, one dot per seed."""
    import pyarrow.parquet as pq

    rows = pq.read_table(Path(sweep_dir) / "results.parquet").to_pylist()
    switches = ("layernorm", "mlp", "embedding", "anisotropy", "n_layers")

    def name(r):
        parts = [k for k in ("layernorm", "mlp") if r[k]]
        parts += ["learned E"] if r["embedding"] == "learned" else []
        parts += [f"ε={r['anisotropy']:g}"] if r["anisotropy"] else []
        parts += [f"{r['n_layers']} layers"] if r["n_layers"] > 1 else []
        return " + ".join(parts) or "attention only"

    variants = list(dict.fromkeys(tuple(r[k] for k in switches) for r in rows))
    series = (("best_qk_matched", "QK (best head)", "tab:orange"),
              ("best_ov_matched", "OV (best head)", "tab:green"),
              ("other_heads_max_qk_matched", "QK (other heads, max)", "tab:gray"))
    with matplotlib.rc_context(STYLE):
        fig, ax = subplots(figsize=(8.5, 3.4), layout="constrained")
        for x, v in enumerate(variants):
            sub = [r for r in rows if tuple(r[k] for k in switches) == v]
            for dx, (key, label, color) in zip((-0.22, 0, 0.22), series):
                vals = [r[key] for r in sub if r[key] is not None]
                ax.scatter([x + dx] * len(vals), vals, s=10, color=color,
                           label=label if x == 0 else None)
                if vals:
                    ax.hlines(np.mean(vals), x + dx - 0.09, x + dx + 0.09, color=color)
        ax.set_xticks(range(len(variants)),
                      [name(next(r for r in rows if tuple(r[k] for k in switches) == v))
                       for v in variants], rotation=20, ha="right")
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("Hungarian-matched |cos|\n(min of both sides, mean over pairs)")
        ax.set_title("retrieval task: alignment as realism is switched on (one dot per seed)")
        ax.legend(frameon=False, fontsize=7, loc="lower left")
        return finish(fig, out_path)
