"""Figures of the studies in experiments/ and docs/, each drawn from stored runs or sweeps
(never by retraining); each returns a Figure and saves it only when given a path.

  plot_feature_geometry(no_head, single_pair)  Figure 1 analogue: WᵀW and feature norms
  plot_dynamics(run)          Figure 3 analogue: alignment before orthogonalization
  plot_robustness(sweep)      Appendix A analogue: 1 − matched |cos| over λ, N, m, H
  plot_optimizer_frame(rows)  a toy transformer's QK (sides or centred spans) and self
                              score, optimizer × frame, beside a foil (rows from
                              optimizer_frame_rows(runs, task): retrieval, rope or
                              multi-pair; the study's runs and their commands are
                              toymodels.figures.OPTIMIZER_FRAME_TASKS, OPTIMIZERS, FRAMES)
  plot_feature_structure(rows)  alignment under correlated, nested and Zipf firing (rows
                              from feature_structure_rows(runs); the runs and commands:
                              toymodels.figures.feature_structure_points)
"""

import json
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm, Normalize
from matplotlib.ticker import MaxNLocator, NullFormatter

from toymodels.plots.common import CELL_FONTSIZE, STYLE, finish, fmt, subplots


def _summary(run_dir) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())


# ---- the paper's toy model (run directories of `toymodels run single-pair / no-head`) ----


def plot_feature_geometry(no_head_dir, single_pair_dir, out_path=None):
    """WᵀW and the feature norms (coloured by interference) of the first instance of the
    no-head control beside the first of the single-pair model: the attended features leave
    superposition; without the head none do."""
    viridis = matplotlib.colormaps["viridis"]
    panels = [(no_head_dir, "λ = 0 (no head)"), (single_pair_dir, "one attended pair")]
    with matplotlib.rc_context(STYLE):
        fig, axes = subplots(2, 2, figsize=(8, 6), layout="constrained",
                             gridspec_kw={"height_ratios": [2.2, 1]})
        for col, (run_dir, title) in enumerate(panels):
            summary = _summary(run_dir)
            with np.load(Path(run_dir) / "analysis" / "arrays.npz") as geometry:
                gram, norms, interference = (geometry[k][0] for k in  # first instance
                                             ("gram", "norms", "interference"))
            attended = sorted({i for p in summary["config"]["template"] for i in p[:2]})
            im = axes[0, col].imshow(gram, cmap="RdBu_r", vmin=-1, vmax=1)
            axes[0, col].set_title(f"{title}: WᵀW (seed {summary['instances'][0]['seed']})")
            axes[0, col].xaxis.set_major_locator(MaxNLocator(integer=True))
            axes[0, col].yaxis.set_major_locator(MaxNLocator(integer=True))
            axes[0, col].set_xlabel("feature j")
            axes[0, col].set_ylabel("feature i")
            bars = axes[1, col].bar(np.arange(norms.size), norms,
                                    color=viridis(np.clip(interference, 0, 1)))
            for i in attended:
                bars[i].set_edgecolor("crimson")
                bars[i].set_linewidth(1.5)
            axes[1, col].set_xlabel("feature i (red outline: attended)")
            axes[1, col].set_ylabel("‖w_i‖")
        fig.colorbar(im, ax=axes[0, :], fraction=0.03, label="w_i · w_j")
        fig.colorbar(ScalarMappable(cmap=viridis, norm=Normalize(0, 1)), ax=axes[1, :],
                     fraction=0.03, label="interference Σ_j≠i (ŵ_i·w_j)²")
        return finish(fig, out_path)


def _moving_average(values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """(steps, averages): a centred moving average of a per-step series (steps from 1)."""
    window = max(1, min(window, values.size))
    smooth = np.convolve(values, np.ones(window) / window, mode="valid")
    return np.arange(1, smooth.size + 1) + (window - 1) // 2, smooth


def plot_dynamics(run_dir, out_path=None, window: int = 25):
    """Over training, the singular vectors align first (attention loss falls), then the
    attended features leave superposition (reconstruction loss falls): the metrics a toy
    run recorded inside its training loop (dynamics.npz) and its losses (curves.npz)."""
    run_dir = Path(run_dir)
    summary = _summary(run_dir)
    if not (run_dir / "dynamics.npz").is_file():
        raise FileNotFoundError(f"{run_dir} recorded no dynamics (dynamics.npz): rerun it "
                                "with --set record_points=100")
    with np.load(run_dir / "dynamics.npz") as f:
        dyn = dict(f)
    with np.load(run_dir / "curves.npz") as f:
        curves = dict(f)
    steps = dyn["steps"]
    alignment = np.minimum(dyn["cos_query_u"], dyn["cos_key_v"]).min(axis=2)  # [I, R]
    interference = dyn["interference"].max(axis=2)  # [I, R], worst attended feature
    crossings = [inst["dynamics"] or {} for inst in summary["instances"]]

    with matplotlib.rc_context(STYLE):
        fig, (ax, ax_loss) = subplots(1, 2, figsize=(9.5, 3.3), layout="constrained")
        for series, color, label in (
                (alignment, "C0", "alignment min(|cos(w₀,u)|, |cos(w₁,v)|)"),
                (interference, "C3", "interference of w₀, w₁ (max)")):
            ax.semilogx(steps, series.T, color=color, lw=0.6, alpha=0.35)
            ax.semilogx(steps, series.mean(0), color=color, lw=2, label=label)
        for key, color in (("step_alignment_above", "C0"), ("step_interference_below", "C3")):
            found = [c[key] for c in crossings if c.get(key) is not None]
            if found:
                ax.axvline(np.median(found), color=color, ls=":", lw=1.2)
        ax.axhline(0.9, color="C0", lw=0.5, ls="--")
        ax.axhline(0.1, color="C3", lw=0.5, ls="--")
        ax.set_xlabel("training step")
        ax.set_ylabel("|cos| (blue), interference (red)")
        ax.set_title(f"single pair, {alignment.shape[0]} seeds (dotted: median first crossing)")
        ax.legend(loc="center left", fontsize=7)

        hidden = []
        for name, color in (("recon", "C2"), ("attn", "C1")):
            t, smooth = _moving_average(curves[name].mean(0), window)
            positive = smooth > 0  # a log axis cannot show 0; no floor is drawn instead
            if not positive.all():
                hidden.append(name)
            ax_loss.loglog(t[positive], smooth[positive], color=color, label=f"{name} loss")
        ax_loss.xaxis.set_minor_formatter(NullFormatter())  # crowded on short runs
        ax_loss.set_xlabel("training step")
        ax_loss.set_ylabel("loss (log scale)")
        ax_loss.set_title(f"losses (mean over seeds, {window}-step moving average)"
                          + (f"\n{', '.join(hidden)}: steps at exactly 0 not drawn"
                             if hidden else ""))
        ax_loss.legend(fontsize=7)
        return finish(fig, out_path)


# ---- Appendix A (a sweep of the single-pair preset over λ, N, m, H) -------------------


def plot_robustness(sweep_dir, out_path=None, floor: float = 1e-7):
    """One heatmap per λ from a stored sweep: rows (N, m), columns H. Colour and number:
    1 − mean over seeds of min(|cos(w₀, u)|, |cos(w₁, v)|) of the matched pair (0 is
    perfect alignment), on a log scale set from the data; the worst seed in brackets."""
    import pyarrow.parquet as pq

    rows = pq.read_table(Path(sweep_dir) / "results.parquet").to_pylist()
    lams = sorted({r["lam"] for r in rows})
    Hs = sorted({r["H"] for r in rows})
    Nm = sorted({(r["N"], r["m"]) for r in rows})

    def cell(lam, N, m, H):  # (mean gap, worst gap, seeds); gap = 1 − |cos|
        vals = [1.0 - r["min_matched_cos"] for r in rows
                if (r["lam"], r["N"], r["m"], r["H"]) == (lam, N, m, H)
                and r["min_matched_cos"] is not None]
        return (float(np.mean(vals)), float(np.max(vals)), len(vals)) if vals \
            else (np.nan, np.nan, 0)

    stats = {lam: np.array([[cell(lam, N, m, H) for H in Hs] for N, m in Nm]) for lam in lams}
    gaps = np.concatenate([st[..., :2].ravel() for st in stats.values()])
    gaps = np.maximum(gaps[np.isfinite(gaps)], floor)
    lo, hi = (float(gaps.min()), float(gaps.max())) if gaps.size else (floor, 1.0)
    if hi <= lo * 1.5:  # one value (or nearly): a decade around it
        lo, hi = lo / 3, hi * 3
    norm = LogNorm(vmin=lo, vmax=hi)
    cmap = matplotlib.colormaps["viridis_r"]
    with matplotlib.rc_context(STYLE):
        fig, axes = subplots(1, len(lams), figsize=(3.2 * len(lams) + 1.2, 0.5 * len(Nm) + 1.8),
                             layout="constrained", squeeze=False)
        for ax, lam in zip(axes[0], lams):
            st = stats[lam]  # [rows, cols, (mean, worst, seeds)]
            im = ax.imshow(np.maximum(st[..., 0], floor), norm=norm, cmap=cmap, aspect="auto",
                           interpolation="nearest")
            for (i, j), mean in np.ndenumerate(st[..., 0]):
                dark = np.isfinite(mean) and norm(max(mean, floor)) > 0.55
                ax.text(j, i, f"{fmt(mean)}\n({fmt(st[i, j, 1])})", ha="center",
                        va="center", fontsize=CELL_FONTSIZE, color="white" if dark else "black")
            ax.set_xticks(range(len(Hs)), [f"H={H}" for H in Hs])
            ax.set_yticks(range(len(Nm)), [f"N={N}, m={m}" for N, m in Nm])
            ax.set_title(f"λ = {lam:g}, {int(st[..., 2].max())} seeds")
        fig.colorbar(im, ax=axes[0, -1], label="1 − matched min |cos|\n(log; mean, worst seed)")
        fig.suptitle("Distance from perfect alignment, 1 − min(|cos(w₀,u)|, |cos(w₁,v)|): "
                     "mean over seeds (worst seed)", fontsize=9)
        return finish(fig, out_path)


# ---- the optimizer's frame (retrieval, RoPE, multi-pair; optimizer × frame) -------------

ALIGNED = 0.9
"""A cell's verdict: the head's QK aligns when min(query side, key side) of its matched
|cos| (retrieval, RoPE at the task's offset) or of its centred-span cosines (multi-pair)
is at least this."""
FOIL_SEED = 19
"""Seed of the foils: per instance, a random head of the trained head's singular values."""


def feature_omega(E, Omega) -> np.ndarray:
    """Ω in feature coordinates, Ω_f = Eᵀ Ω E [N, N]: Ω_f[i, j] is the logit a token holding
    only feature i (on the query) gives a token holding only feature j."""
    E = np.asarray(E, np.float64)
    return E.T @ np.asarray(Omega, np.float64) @ E


def self_score(Omega_f, queries, H: int) -> float:
    """E_qᵀ Ω E_q / √H, mean over the query features: how the head scores a token holding
    the query feature from a query holding it, a part of the solution no QK template names."""
    return float(np.mean([Omega_f[q, q] for q in queries]) / np.sqrt(H))


def off_template_share(Omega_f, pairs, centred: bool = False) -> float:
    """The share of ‖Ω_f‖_F outside the template, each pair at its own free strength a_p.

    Plain: the template is the entries (q_p, k_p); share = ‖Ω_f, those entries zeroed‖_F /
    ‖Ω_f‖_F. centred (the multi-pair task: every earlier token carries exactly one key
    feature, so raising all key features alike for a query changes nothing the task sees):
    each row's mean over the P key columns is removed first (Ω_c), and pair p's template is
    row q_p's key block a_p (e_p − 1/P); share = ‖Ω_c − Σ_p a_p e_{q_p} (e_{k_p} − 1_K/P)ᵀ‖_F
    / ‖Ω_c‖_F at the least-squares a_p. Needs P >= 2 (with one pair nothing is left)."""
    Om = np.array(Omega_f, np.float64)
    queries, keys = [p[0] for p in pairs], [p[1] for p in pairs]
    if not centred:
        total = float(np.sum(Om ** 2))
        Om[queries, keys] = 0.0
        return float(np.sqrt(np.sum(Om ** 2) / total)) if total > 0 else float("nan")
    P = len(pairs)
    if P < 2:
        raise ValueError("the centred template needs at least two pairs")
    Om[:, keys] -= Om[:, keys].mean(axis=1, keepdims=True)
    total = float(np.sum(Om ** 2))
    for p, q in enumerate(queries):
        t = np.full(P, -1.0 / P)
        t[p] += 1.0
        row = Om[q, keys]
        Om[q, keys] = row - (row @ t) / (t @ t) * t
    return float(np.sqrt(np.sum(Om ** 2) / total)) if total > 0 else float("nan")


def pair_strengths(Omega_f, pairs) -> np.ndarray:
    """a_p [P]: each pair's least-squares strength on the centred template (off_template_share,
    centred): row q_p's key block of Ω_f, its mean removed, projected on e_p − 1/P."""
    keys, P = [p[1] for p in pairs], len(pairs)
    out = []
    for p, (q, _, _) in enumerate(pairs):
        row = np.asarray(Omega_f, np.float64)[q, keys]
        t = np.full(P, -1.0 / P)
        t[p] += 1.0
        out.append(float((row - row.mean()) @ t / (t @ t)))
    return np.array(out)


def predicted_query_span(strengths) -> float | None:
    """What the centred template with per-pair strengths a_p leaves the query side: its rows
    a_p (e_p − 1/P) sum to zero with weights 1/a_p, so Ω's top P − 1 left singular vectors
    are orthogonal to Σ_p E_{q_p}/a_p rather than to the mean query feature, and their
    smallest principal cosine with the centred query features is cos∠(1/a, 1) (None unless
    every a_p > 0). The key side stays the centred span whatever the strengths."""
    a = np.asarray(strengths, np.float64)
    if not np.all(a > 0):
        return None
    return float(np.sum(1 / a) / (np.sqrt(a.size) * np.linalg.norm(1 / a)))


def side_weights(E, Omega, cfg, r: int = 1) -> dict:
    """Where Ω's top r singular pairs put their squared weight, by kind of feature (E an
    orthonormal frame, N = D), averaged over the r: u on the query, key, value and
    background features, and v likewise (each side sums to 1), so a side's shortfall from
    the template is located (r = 1 for one pair; P − 1 for the multi-pair span)."""
    E = np.asarray(E, np.float64)
    U, _, Vt = np.linalg.svd(np.asarray(Omega, np.float64))
    kinds = {"query": list(cfg.queries), "key": list(cfg.keys),
             "values": list(cfg.value_features), "background": list(cfg.background)}
    out = {}
    for side, vecs in (("u", U[:, :r]), ("v", Vt[:r].T)):
        c2 = np.mean((E.T @ vecs) ** 2, axis=1)
        out |= {f"{side}_{kind}": float(c2[idx].sum()) for kind, idx in kinds.items()}
    return out


def ov_gain(E, W_V, W_O, cfg) -> float:
    """How much of each value feature a head writes back, relative to what the task asks:
    the mean over value features v of E_vᵀ OV E_v / g_v (1 for a head that carries the
    planted map alone; heads that share the output split it, with either sign)."""
    E = np.asarray(E, np.float64)
    OV = np.asarray(W_O, np.float64) @ np.asarray(W_V, np.float64)
    v = list(cfg.value_features)
    return float(np.mean(np.diag(E[:, v].T @ OV @ E[:, v]) / np.asarray(cfg.value_gains)))


def smallest_principal_cos(F, B) -> float:
    """The smallest principal cosine between span(F) and the orthonormal columns B."""
    Q, _ = np.linalg.qr(F)
    return float(np.linalg.svd(Q.T @ B, compute_uv=False).min())


def span_cosines(E, Omega, pairs) -> tuple[float, float]:
    """(query, key): the smallest principal cosine between Ω's top P − 1 left (right)
    singular vectors and the centred query (key) features E_i − mean_p E_{i_p}, the span the
    multi-pair task identifies (experiments/multi_pair_span.py); 1 when Ω's leading
    subspace is exactly it, whatever basis it picks inside."""
    E = np.asarray(E, np.float64)
    U, _, Vt = np.linalg.svd(np.asarray(Omega, np.float64))
    r = len(pairs) - 1
    out = []
    for side, B in ((0, U[:, :r]), (1, Vt[:r].T)):
        F = E[:, [p[side] for p in pairs]]
        out.append(smallest_principal_cos((F - F.mean(1, keepdims=True))[:, :r], B))
    return out[0], out[1]


def matched_cosines(E, Omega, pairs, K: int,
                    rel_tol: float | None = None) -> tuple[float, float, float]:
    """(query, key, matched): Ω's matched |cos| against the planted pairs, the analysis'
    own definition (analysis/head_rows.py; equal to a stored run's qk_cos_query_u,
    qk_cos_key_v, qk_matched): pairs take singular indices among the first K whose σ >
    rel_tol·σ_1 (Hungarian on |cos(E_i, u)|·|cos(E_j, v)|); the means over pairs of each
    side's |cos| at the assigned index and of their minimum, a pair without one counting 0."""
    from toymodels.analysis.head_rows import match
    from toymodels.analysis.svd import DEFAULT_REL_TOL

    rel_tol = DEFAULT_REL_TOL if rel_tol is None else rel_tol
    E = np.asarray(E, np.float64)
    E = E / np.linalg.norm(E, axis=0, keepdims=True)
    U, S, Vt = np.linalg.svd(np.asarray(Omega, np.float64))
    U, S, V = U[:, :K], S[:K], Vt[:K].T
    sig = np.flatnonzero(S > rel_tol * S[0])
    if not S[0] > 0 or not sig.size:
        return 0.0, 0.0, 0.0
    q, k = [p[0] for p in pairs], [p[1] for p in pairs]
    cu, cv = np.abs(E[:, q].T @ U[:, sig]), np.abs(E[:, k].T @ V[:, sig])
    cols = match(cu * cv)
    rows, at, ok = np.arange(len(pairs)), np.maximum(cols, 0), cols >= 0
    cu, cv = np.where(ok, cu[rows, at], 0.0), np.where(ok, cv[rows, at], 0.0)
    return float(np.mean(cu)), float(np.mean(cv)), float(np.mean(np.minimum(cu, cv)))


def random_head_like(Omega, K: int, rng) -> np.ndarray:
    """The foil: a random head of Ω's rank and norm. Its K = min(H, D) singular values are
    Ω's own (so its significant rank and ‖·‖_F are Ω's); its singular bases are Haar-random
    in R^D, with no relation to the features."""
    Omega = np.asarray(Omega, np.float64)
    S = np.linalg.svd(Omega, compute_uv=False)[:K]
    D = Omega.shape[0]

    def haar_columns():
        Q, R = np.linalg.qr(rng.standard_normal((D, D)))
        return (Q * np.sign(np.diag(R)))[:, :K]

    return haar_columns() @ np.diag(S) @ haar_columns().T


def optimizer_frame_task(cfg) -> str:
    """The study's name of a config's task: 'rope', 'multi-pair' (several pairs) or
    'retrieval'."""
    if cfg.task == "rope":
        return "rope"
    return "multi-pair" if len(cfg.pairs) > 1 else "retrieval"


def optimizer_frame_measure(run, i: int) -> dict:
    """Instance i of a stored toy-transformer run, as the study reads it: the solving head's
    (else the best head's) accuracy, QK sides (at the task's offset with RoPE), OV, self
    score and off-template share of Ω_f = EᵀΩE (centred with several pairs), the centred
    span (several pairs), and the same numbers of its foil, a random head of the same rank
    and norm (random_head_like), with each verdict (ALIGNED). The QK numbers are measured
    from the stored parameters (matched_cosines: the analysis' definition); accuracy, OV
    and the rotated twin's range are the run's own records."""
    from toymodels.families.transformer.training import features_of, head_factors

    cfg, inst = run.config, run.summary["instances"][i]
    task = optimizer_frame_task(cfg)
    row = {"seed": inst["seed"], "solved": inst["solved"], "task_loss": inst["eval_task_loss"]}
    if inst["heads"] is None:  # diverged: nothing measured
        return row | {"diverged_step": inst["diverged_step"]}
    where = inst["solving_head"] or inst["best_head"]
    layer, head = where["layer"], where["head"]
    h = next(h for h in inst["heads"] if (h["layer"], h["head"]) == (layer, head))
    E = features_of(cfg, run.params)[i, layer].astype(np.float64)  # [D, N]
    W_Q = np.asarray(head_factors(cfg, run.params["W_Q"]))[i, layer, head].astype(np.float64)
    W_K = run.params["W_K"][i, layer, head].astype(np.float64)
    Omega = W_Q.T @ W_K  # Ω_δ at the task's offset with RoPE
    K, pairs = min(cfg.H, cfg.D), cfg.pairs
    foil = random_head_like(Omega, K, np.random.default_rng([FOIL_SEED, inst["seed"], i]))
    centred = task == "multi-pair"
    query, key, matched = matched_cosines(E, Omega, pairs, K)
    row |= {"layer": layer, "head": head, "accuracy": h["accuracy"],
            "query": query, "key": key, "qk": matched, "ov": h["ov_matched"],
            "self": self_score(feature_omega(E, Omega), cfg.queries, cfg.H),
            "off_template": off_template_share(feature_omega(E, Omega), pairs, centred)}
    fq, fk, fm = matched_cosines(E, foil, pairs, K)
    row |= {"foil_query": fq, "foil_key": fk, "foil_qk": fm,
            "foil_off_template": off_template_share(feature_omega(E, foil), pairs, centred)}
    row |= side_weights(E, Omega, cfg, r=len(pairs) - 1 if centred else 1)
    gains = [ov_gain(E, run.params["W_V"][i, layer, g], run.params["W_O"][i, layer, g], cfg)
             for g in range(cfg.n_heads)]
    row["ov_gain"] = gains[head]
    row["ov_gain_others"] = float(sum(gains) - gains[head]) if cfg.n_heads > 1 else None
    if task == "rope":  # the query token's score of itself: offset 0, Ω_0 = W_Qᵀ W_K
        W_Q0 = run.params["W_Q"][i, layer, head].astype(np.float64)
        row["self_0"] = self_score(feature_omega(E, W_Q0.T @ W_K), cfg.queries, cfg.H)
    if task == "multi-pair":
        sq, sk = span_cosines(E, Omega, pairs)
        fsq, fsk = span_cosines(E, foil, pairs)
        a = pair_strengths(feature_omega(E, Omega), pairs)
        row |= {"span_query": sq, "span_key": sk, "foil_span_query": fsq, "foil_span_key": fsk,
                "strength_ratio": float(a.min() / a.max()) if a.max() > 0 else None,
                "span_query_predicted": predicted_query_span(a),
                "rotated_low": h["qk_baseline_low"], "rotated_high": h["qk_baseline_high"],
                "above_rotated": bool(matched > h["qk_baseline_high"])}
        row["score"], row["foil_score"] = min(sq, sk), min(fsq, fsk)
    else:
        row["score"], row["foil_score"] = min(row["query"], row["key"]), min(fq, fk)
    row["aligned"] = bool(row["score"] >= ALIGNED)
    row["foil_aligned"] = bool(row["foil_score"] >= ALIGNED)
    return row


def optimizer_frame_rows(runs, task: str = "retrieval") -> list[dict]:
    """One row per instance of every stored run of the study for one task (runs:
    the study's folder, toymodels.figures.optimizer_frame_dir): optimizer_frame_measure."""
    from toymodels.figures import FRAMES, OPTIMIZERS, optimizer_frame_dir
    from toymodels.rundir import load_run

    rows = []
    for optimizer in OPTIMIZERS:
        for frame in FRAMES:
            run = load_run(optimizer_frame_dir(runs, optimizer, frame, task))
            for i in range(len(run.summary["instances"])):
                rows.append({"task": task, "optimizer": optimizer, "frame": frame,
                             **optimizer_frame_measure(run, i)})
    return rows


OPTIMIZER_LABELS = {"adamw": "AdamW", "adamw_rotated": "AdamW,\nrotated basis", "sgd": "SGD"}
FRAME_COLORS = {"random": "C0", "axis": "C3"}
_PANELS = {  # task: (row key, its foil's key or None, axis label)
    "retrieval": (("query", "foil_query", "QK query side |cos(u₁, E_q)|"),
                  ("key", "foil_key", "QK key side |cos(v₁, E_k)|"),
                  ("self", None, "self score E_qᵀΩE_q/√H")),
    "rope": (("query", "foil_query", "Ω₃ query side |cos(u₁, E_q)|"),
             ("key", "foil_key", "Ω₃ key side |cos(v₁, E_k)|"),
             ("self_0", None, "the query's score of itself\nE_qᵀΩ₀E_q/√H (δ = 0)")),
    "multi-pair": (("span_query", "foil_span_query", "centred span, query side\n"
                    "(smallest principal cos)"),
                   ("span_key", "foil_span_key", "centred span, key side\n"
                    "(smallest principal cos)"),
                   ("qk", None, "per-pair matched |cos|")),
}
_TITLES = {"retrieval": "transformer-retrieval", "rope": "transformer-rope (Ω_δ at δ = 3)",
           "multi-pair": "transformer-multi-pair (6 pairs)"}


def plot_optimizer_frame(rows: list[dict], out_path=None, task: str | None = None):
    """Per optimizer and frame, each instance's solving head (rows: optimizer_frame_rows of
    one task): the QK query and key sides (the centred spans with several pairs) with its
    foil's beside them (grey ×: a random head of the same rank and norm), and the self
    score (RoPE: at δ = 0; with several pairs the per-pair matched |cos| instead)."""
    from toymodels.figures import FRAMES, OPTIMIZERS

    task = task or (rows[0].get("task", "retrieval") if rows else "retrieval")
    seeds = sorted({r["seed"] for r in rows})
    span = f"{seeds[0]}-{seeds[-1]}" if seeds else "none"
    with matplotlib.rc_context(STYLE):
        fig, axes = subplots(1, 3, figsize=(10, 3.3), layout="constrained")
        for ax, (key, foil, label) in zip(axes, _PANELS[task]):
            for x, optimizer in enumerate(OPTIMIZERS):
                for offset, frame in zip((-0.18, 0.18), FRAMES):
                    mine = [r for r in rows if (r["optimizer"], r["frame"]) == (optimizer, frame)
                            and r.get(key) is not None]
                    xs = x + offset + np.linspace(-0.08, 0.08, len(mine))
                    ax.plot(xs, [r[key] for r in mine], "o", ms=3, color=FRAME_COLORS[frame],
                            label=f"{frame} frame" if x == 0 else None)
                    if foil:
                        ax.plot(xs, [r[foil] for r in mine], "x", ms=3, color="0.6",
                                label="foil: random head,\nsame rank and norm"
                                if x == 0 and frame == FRAMES[0] else None)
            ax.set_xticks(range(len(OPTIMIZERS)), [OPTIMIZER_LABELS[o] for o in OPTIMIZERS],
                          fontsize=8)
            ax.set_ylabel(label)
            if foil:
                ax.axhline(ALIGNED, color="0.7", lw=0.8, ls="--")
            if key in ("self", "self_0"):
                ax.axhline(0, color="0.7", lw=0.8)
        axes[0].legend(frameon=False, fontsize=7)
        fig.suptitle(f"{_TITLES[task]}, held-out seeds {span}: optimizer × frame "
                     f"(dashed: the verdict's bar {ALIGNED})", fontsize=9)
        return finish(fig, out_path)


# ---- feature structure (the toy and the retrieval transformer, issue 23) ----------------


def _toy_structure_metrics(run) -> dict:
    """Per instance: the plain reading (u₁, v₁ against the planted w₀, w₁), the trained top
    pair against Ω* of the structure's own second moment M (Theorem 1, squared loss), and
    Ω*'s u₁ against w₀."""
    from toymodels.tasks.toy import second_moment, template_matrix
    from toymodels.theory import closed_form
    from toymodels.theory.rows import top_pair_cos

    cfg, M = run.config, second_moment(run.config)
    planted, to_star, star_planted = [], [], []
    for rec in run.summary["instances"]:
        pairs = [p for p in rec["pairs"] if p["sv_index"] is not None]
        planted.append(min(min(p["cos_query_u"], p["cos_key_v"]) for p in pairs) if pairs
                       else 0.0)
    for n in range(len(run.summary["instances"])):
        W = run.params["W"][n].astype(np.float64)
        omega = (run.params["W_Q"][n].T.astype(np.float64)
                 @ run.params["W_K"][n].astype(np.float64))
        star = closed_form.closed_form_omega(W, W, template_matrix(cfg.template, cfg.N),
                                             cfg.target_scale, M, M)
        to_star.append(top_pair_cos(omega, star))
        u1 = np.linalg.svd(star)[0][:, 0]
        star_planted.append(abs(u1 @ W[:, 0]) / np.linalg.norm(W[:, 0]))
    return {"planted": planted, "omega_star": to_star, "star_vs_planted": star_planted}


def _transformer_structure_metrics(run) -> dict:
    """Per instance: the best head's QK query and key sides and OV, matched |cos|."""
    query, key, ov = [], [], []
    for rec in run.summary["instances"]:
        b = rec["best_head"]
        head = next(h for h in rec["heads"] if (h["layer"], h["head"]) == (b["layer"], b["head"]))
        query.append(head["qk_cos_query_u"])
        key.append(head["qk_cos_key_v"])
        ov.append(head["ov_matched"])
    return {"qk_query": query, "qk_key": key, "ov": ov}


def feature_structure_rows(runs) -> list[dict]:
    """One row per stored run of the study (runs missing from RUNS are left out): family,
    axis, value, and each metric's mean over seeds and worst seed."""
    from toymodels.figures import (FEATURE_STRUCTURE_PRESETS, FEATURE_STRUCTURE_SEEDS,
                                   feature_structure_dir, feature_structure_points)
    from toymodels.rundir import load_run

    runs, rows = Path(runs), []
    for family in FEATURE_STRUCTURE_PRESETS:
        for axis, value, _ in feature_structure_points(family):
            path = feature_structure_dir(runs, family, axis, value)
            if not (path / "summary.json").is_file():
                continue
            run = load_run(path)
            metrics = (_toy_structure_metrics if family == "toy"
                       else _transformer_structure_metrics)(run)
            row = {"family": family, "axis": axis, "value": value,
                   "seeds": FEATURE_STRUCTURE_SEEDS, "run": str(path.relative_to(runs.parent))}
            for name, values in metrics.items():
                row[f"{name}_mean"] = float(np.mean(values))
                row[f"{name}_min"] = float(np.min(values))
            rows.append(row)
    return rows


def plot_feature_structure(rows: list[dict], out_path=None, floor: float = 1e-9):
    """Alignment along each structure axis (copula correlation, hierarchy depth, Zipf
    exponent), mean over seeds with a band down to the worst seed (rows:
    feature_structure_rows). Toy above, as 1 − |cos| on a log scale (every toy value is
    within 1e-3 of 1, which a linear |cos| axis shows as one line); transformer below,
    as |cos|."""
    series = {"toy": (("planted", "u₁,v₁ vs planted w₀,w₁"),
                      ("omega_star", "top pair vs Ω*(M)"),
                      ("star_vs_planted", "Ω*(M)'s u₁ vs w₀")),
              "transformer": (("qk_query", "QK query side"), ("qk_key", "QK key side"),
                              ("ov", "OV"))}
    axes_order = ("correlation", "depth", "zipf")
    xlabel = {"correlation": "copula correlation ρ", "depth": "hierarchy depth",
              "zipf": "Zipf exponent a"}
    gap = {"toy": lambda v: max(1.0 - v, floor), "transformer": lambda v: v}
    seeds = sorted({r["seeds"] for r in rows})
    with matplotlib.rc_context(STYLE):
        fig, axes = subplots(2, 3, figsize=(10.5, 5.8), layout="constrained", sharey="row")
        for r, family in enumerate(("toy", "transformer")):
            f = gap[family]
            for c, axis in enumerate(axes_order):
                ax = axes[r, c]
                pts = sorted((x for x in rows if x["family"] == family and
                              (x["axis"] == axis
                               or (x["value"] == 0 and x["axis"] == "correlation"))),
                             key=lambda x: x["value"])
                xs = [x["value"] for x in pts]
                for name, label in series[family]:
                    ax.plot(xs, [f(x[f"{name}_mean"]) for x in pts], "o-", ms=3, label=label)
                    ax.fill_between(xs, [f(x[f"{name}_min"]) for x in pts],
                                    [f(x[f"{name}_mean"]) for x in pts], alpha=0.15)
                ax.set_xlabel(xlabel[axis])
            if family == "toy":
                axes[r, 0].set_yscale("log")
                axes[r, 0].set_ylabel("toy: 1 − |cos| (log)\nmean; band to worst seed")
            else:
                axes[r, 0].set_ylim(0, 1.02)
                axes[r, 0].set_ylabel("transformer: |cos|\nmean; band to worst seed")
            axes[r, 0].legend(loc="upper left" if family == "toy" else "lower left", frameon=False,
                              fontsize=7)
        fig.suptitle(f"alignment under feature structure, seeds {', '.join(seeds)} (held out)")
        return finish(fig, out_path)
