"""`multi_pair` (Figure 2b): the `multi-pair` preset (20 pairs, cross-entropy, learned
features) on held-out seeds. Predicts Hungarian-matched |cos| mean >= 0.95 on both sides
(foils: a random head of the same rank and norm, a rotated twin); every pair owns a
significant singular pair (|cos| >= 1/√2 both sides; same foils); matched σ against the
target has R² and Spearman >= 0.95 in the worst seed (foil: pairs kept whole at shuffled
strengths); every pair is within Wedin's sin θ bound and every mixing cluster within its
span bound (foil: the rotated twin against the trained heads' bounds). The worst pair and
the clusters are reported as observations.

Shapes: I instances, D residual dim, N features, P attended pairs.
"""

import numpy as np

from toymodels.analysis.alignment import analyze
from toymodels.configs import make_instances, preset
from toymodels.families.toy import analyze as analyze_params
from toymodels.theory import foils, perturbation
from toymodels.theory.checks.common import _foil_rng, _omega
from toymodels.theory.perturbation import OWN_LEVEL
from toymodels.theory.rows import Profile, Seeds, largest, observation, row, worst
from toymodels.training.loop import train

HELD_OUT_SEED = 100
"""First seed of the multi-pair check: the preset was tuned on seeds 0–3 (README, multi-pair
search), so the check trains seeds it never saw (100, 101, ...)."""
MULTI_PAIR_SEEDS = Seeds(HELD_OUT_SEED, True, "preset tuned on seeds 0–3; ownership level "
                                              "1/√2 and the Wedin rows set on 0–3")


def owned_pairs(pairs, n_instances: int, P: int, level: float = OWN_LEVEL) -> np.ndarray:
    """[n_instances]: pairs that own a significant singular pair, i.e. whose Hungarian-matched
    significant index has |cos| >= level on both sides (query feature against u, key
    feature against v). An unmatched pair owns nothing. From `analyze`'s pairs table."""
    owned = np.zeros(n_instances, int)
    for r in pairs:
        cq, ck = r["cos_query_u"], r["cos_key_v"]
        if cq is not None and ck is not None and r["significant"] and min(cq, ck) >= level:
            owned[r["instance"]] += 1
    return owned


def analyze_heads(W, omegas, template):
    """`analyze` of heads given as Ω [I, D, D] on features W [I, D, N] (foils go through
    the same analysis as the trained heads)."""
    WQ, WK = zip(*(foils.factor(o) for o in omegas))
    return analyze(np.asarray(W, np.float32), W_Q=np.stack(WQ), W_K=np.stack(WK),
                   template=template, axes=("instance",), layout="toymodels")


def _heads_metrics(analysis, P: int, n: int) -> dict:
    heads = analysis.heads
    return {"mean_q": np.mean([h["mean_cos_query_u"] for h in heads]),
            "mean_k": np.mean([h["mean_cos_key_v"] for h in heads]),
            "worst_mean_q": worst(h["mean_cos_query_u"] for h in heads),
            "r2": worst(h["sigma_target_r2"] for h in heads),
            "spearman": worst(h["sigma_target_spearman"] for h in heads),
            "owned": int(owned_pairs(analysis.pairs, n, P).min())}


def wedin_rows_data(omegas, W, template):
    """Per instance, Wedin's bounds for every pair and for each cluster of pairs the
    per-pair bound cannot keep apart (perturbation.py)."""
    q = [i for i, _, _ in template]
    k = [j for _, j, _ in template]
    out = []
    for om, w in zip(omegas, W):
        w = np.asarray(w, np.float64)
        b = perturbation.pair_bounds(om, w[:, q], w[:, k])
        cl = perturbation.clusters(b["c"], b["rho"])
        b["clusters"] = [(c, perturbation.cluster_bound(om, w[:, q], w[:, k], c, S=b["S"],
                                                        U=b["U"], V=b["V"])) for c in cl]
        out.append(b)
    return out


def wedin_slack(bounds, omegas, W, template):
    """min over instances, pairs and sides of |cos| − Wedin's lower bound (>= 0 where the
    bound holds), measuring `omegas` (the trained heads, or foils) at the singular index
    and against the bounds of `bounds` (the trained heads')."""
    q = [i for i, _, _ in template]
    k = [j for _, j, _ in template]
    slack = []
    for b, om, w in zip(bounds, omegas, W):
        U, _, Vt = np.linalg.svd(np.asarray(om, np.float64))
        Xq, Yk = np.asarray(w, np.float64)[:, q], np.asarray(w, np.float64)[:, k]
        cu = np.abs(np.einsum("dp,dp->p", U[:, b["k"]], Xq)) / np.linalg.norm(Xq, axis=0)
        cv = np.abs(np.einsum("dp,dp->p", Vt[b["k"]].T, Yk)) / np.linalg.norm(Yk, axis=0)
        slack.append(min((cu - b["cos_lower_u"]).min(), (cv - b["cos_lower_v"]).min()))
    return worst(slack)


def cluster_excess(bounds, omegas, W, template):
    """max over instances and clusters of (largest principal-angle sine between the span
    of the cluster's features and that of its singular vectors) − Wedin's bound, both
    sides, for `omegas` at the trained heads' cluster indices; None when no cluster."""
    q = [i for i, _, _ in template]
    k = [j for _, j, _ in template]
    excess = []
    for b, om, w in zip(bounds, omegas, W):
        U, _, Vt = np.linalg.svd(np.asarray(om, np.float64))
        w = np.asarray(w, np.float64)
        for members, cb in b["clusters"]:
            su = perturbation.principal_sines(w[:, [q[m] for m in members]], U[:, cb["k"]])[-1]
            sv = perturbation.principal_sines(w[:, [k[m] for m in members]], Vt[cb["k"]].T)[-1]
            excess.append(max(su, sv) - cb["sin_bound"])
    return largest(excess) if excess else None


def check_multi_pair(p: Profile):
    cfg = preset("multi-pair")
    if p.multi_steps:
        cfg = cfg.replace(steps=p.multi_steps)
    n = p.multi_seeds
    sd = MULTI_PAIR_SEEDS
    seeds = sd.range(n)
    params = train(cfg, make_instances(cfg, seeds), desc="multi-pair").params
    analysis = analyze_params(cfg, params)
    pairs, heads, arrays = analysis.pairs, analysis.heads, analysis.arrays
    P = len(cfg.template)
    W = params["W"]
    om = [_omega(params, i) for i in range(n)]

    def per_pair(key):  # [n, P]; an unmatched pair is NaN here (no index, no cosine)
        return np.array([np.nan if r[key] is None else r[key] for r in pairs],
                        float).reshape(n, P)

    cq, ck, sigma = per_pair("cos_query_u"), per_pair("cos_key_v"), per_pair("sigma")
    sig = np.array([r["significant"] for r in pairs]).reshape(n, P)
    # Wedin's bounds, and the foils: a random head (same rank and norm), a rotated twin
    # (same σ and spans, random singular bases), every pair kept whole at another's strength.
    bounds = wedin_rows_data(om, W, cfg.template)
    q = [i for i, _, _ in cfg.template]
    k = [j for _, j, _ in cfg.template]
    rand = [foils.random_head(o, _foil_rng(0, s)) for o, s in zip(om, seeds)]
    twin = [foils.rotated_twin(o, _foil_rng(1, s)) for o, s in zip(om, seeds)]
    shuffled = [foils.shuffled_pairs(np.asarray(w)[:, q], np.asarray(w)[:, k], b["c"],
                                     _foil_rng(2, s))
                for w, b, s in zip(W, bounds, seeds)]
    m = _heads_metrics(analysis, P, n)
    fm = {name: _heads_metrics(analyze_heads(W, heads_, cfg.template), P, n)
          for name, heads_ in (("random", rand), ("twin", twin), ("shuffled", shuffled))}
    RAND, TWIN = "random head, same rank and norm", "rotated twin (same σ, random bases)"
    SHUF = "pairs kept whole at shuffled strengths"
    common = dict(seeds=sd.label(n), held_out=sd.held_out)
    held = f"held-out seeds {sd.label(n)}; {sd.design}"
    min_q = [min(0.0 if r["cos_query_u"] is None else r["cos_query_u"] for r in pairs
                 if r["instance"] == i) for i in range(n)]
    min_k = [min(0.0 if r["cos_key_v"] is None else r["cos_key_v"] for r in pairs
                 if r["instance"] == i) for i in range(n)]
    # which pairs the per-pair bound leaves unprotected, and which mix
    unprotected = [(s, p_) for s, b in zip(seeds, bounds) for p_ in range(P)
                   if b["sin_bound"][p_] > OWN_LEVEL]
    mixing = [(s, p_) for s, b in zip(seeds, bounds) for p_ in range(P)
              if min(b["cos_u"][p_], b["cos_v"][p_]) < OWN_LEVEL]
    cl_text = "; ".join(
        f"seed {s}: pairs {','.join(map(str, members))} (|cos| "
        + "/".join(f"{min(b['cos_u'][x], b['cos_v'][x]):.2f}" for x in members)
        + f", span sin {max(cb['sin_u'], cb['sin_v']):.3f} ≤ bound {cb['sin_bound']:.3f})"
        for s, b in zip(seeds, bounds) for members, cb in b["clusters"]) or "none"
    n_clusters = sum(len(b["clusters"]) for b in bounds)
    worst_span = largest([max(cb["sin_u"], cb["sin_v"]) for b in bounds
                          for _, cb in b["clusters"]]) if n_clusters else None
    slack = wedin_slack(bounds, om, W, cfg.template)
    slack_twin = wedin_slack(bounds, twin, W, cfg.template)
    rows = [row("multi_pair", "Hungarian-matched |cos| mean, query side", "1", m["mean_q"],
                ">=", 0.95, n, f"{held}; an unmatched pair counts 0; worst seed "
                f"{m['worst_mean_q']:.4f}",
                foils=[(RAND, fm["random"]["mean_q"]), (TWIN, fm["twin"]["mean_q"])], **common),
            row("multi_pair", "Hungarian-matched |cos| mean, key side", "1", m["mean_k"],
                ">=", 0.95, n, held,
                foils=[(RAND, fm["random"]["mean_k"]), (TWIN, fm["twin"]["mean_k"])], **common),
            row("multi_pair", "every pair owns a significant singular pair: its matched "
                "index has |cos| ≥ 1/√2 on both sides", str(P), m["owned"], ">=", P, n,
                f"{held}; fewest owning pairs in a seed (1/√2: a unit vector exceeds it with "
                f"at most one of a set of orthonormal features); pairs with a matched "
                f"significant index: {min(h['n_pairs_matched'] for h in heads)} or more",
                foils=[(RAND, fm["random"]["owned"]), (TWIN, fm["twin"]["owned"])], **common),
            row("multi_pair", "matched σ against target: R² (worst seed)", "1", m["r2"],
                ">=", 0.95, n, f"{held}; over pairs with a significant σ; a seed without a "
                "value FAILs", foils=[(SHUF, fm["shuffled"]["r2"])], **common),
            row("multi_pair", "matched σ against target: Spearman (worst seed)", "1",
                m["spearman"], ">=", 0.95, n, held,
                foils=[(SHUF, fm["shuffled"]["spearman"])], **common),
            row("multi_pair", "every pair's |cos| ≥ what Wedin allows: sin θ ≤ ρ_p/δ_p (both "
                "sides); measured − bound", ">= 0", slack, ">=", 0.0, n,
                f"{held}; ρ_p: the trained Ω's residual off pair p (its distance from Ω* = "
                f"Σ c_p q_p k_pᵀ seen from the pair), δ_p: the gap from c_p to Ω's other σ; "
                f"{len(unprotected)} of {n * P} pairs unprotected (bound > 1/√2), "
                f"{len(mixing)} measured below 1/√2; the foil is measured against the trained "
                "heads' bounds (its own would be vacuous: Wedin holds for every matrix)",
                foils=[(TWIN, slack_twin)], **common)]
    if n_clusters:
        rows.append(row("multi_pair", "mixing stays inside each cluster's span: largest "
                        "principal-angle sine − Wedin's cluster bound", "<= 0",
                        cluster_excess(bounds, om, W, cfg.template), "<=", 0.0, n,
                        f"{held}; clusters (pairs whose σ are closer than their residual "
                        f"allows to tell apart): {cl_text}",
                        foils=[(TWIN, cluster_excess(bounds, twin, W, cfg.template))],
                        **common))
    rows += [observation("multi_pair", "clusters of mixing pairs: largest principal-angle "
                         "sine of a cluster's span", worst_span, n,
                         f"{n_clusters} clusters; {cl_text}", **common),
             observation("multi_pair", "worst pair's matched |cos|, query side (was '≥ 0.85', "
                         "a tuned threshold; now predicted per pair by Wedin)", worst(min_q),
                         n, held, **common),
             observation("multi_pair", "worst pair's matched |cos|, key side", worst(min_k), n,
                         held, **common)]
    data = {"cos_u": arrays["qk_cos_u"][:, q], "cos_v": arrays["qk_cos_v"][:, k],
            "targets": np.array([v for _, _, v in cfg.template]) * cfg.target_scale,
            "sigma": sigma, "significant": sig, "cos_query": cq, "cos_key": ck,
            "seeds": np.array(list(seeds)),
            "wedin_sin_bound": np.stack([b["sin_bound"] for b in bounds]),
            "wedin_rho": np.stack([b["rho"] for b in bounds]),
            "wedin_delta": np.stack([b["delta"] for b in bounds]),
            "wedin_c": np.stack([b["c"] for b in bounds])}
    return rows, data
