"""Controls of the sparse attention decomposition (analysis/sad.py) that a wrong model must
fail: the rotated control's spread over Haar draws, and the planted-firing validation with
its rank-one and rotated foils.

Shapes (as analysis/sad.py): L layers, n heads, K singular triples, F firings, N Haar draws;
per-draw arrays [F, N]; planted arrays [P] (one planted firing per prompt).

  spread        5%, 50%, 95% over draws (numpy's linear interpolation) of a per-draw
                statistic: per head the median N_recon, the share N_recon ≤ 4 and the median
                sparseness of its firings; overall the same over all firings, and the heads
                whose median N_recon ≤ 4
  recovered     a planted firing that fires and whose top contribution (argmax_k c_k) is
                its own pair's matched singular index; a pair is recovered when at least
                RECOVERED_SHARE of its planted sequences are
  verdict       PASS when at least MIN_RECOVERED_PAIRS pairs are recovered: a head of rank
                r recovers at most r pairs (matched indices are one-to-one), so a rank-one
                head fails whatever its matching, and a rotated basis recovers a pair only
                by chance (about one in K per pair)
"""

import numpy as np

QUANTILES = (5, 50, 95)
RECOVERED_SHARE = 0.5
"""A pair is recovered when at least this share of its planted sequences are."""
MIN_RECOVERED_PAIRS = 3
"""The validation needs a head of rank ≥ 3: at least this many pairs recovered."""
DRAW_STATS = ("median_n_recon_rot", "share_n_recon_le4_rot", "median_sparseness_rot")


def quantiles(values, axis=-1) -> np.ndarray:
    """5%, 50%, 95% of values along axis (NaN where all are NaN), last axis [3]."""
    v = np.moveaxis(np.asarray(values, np.float64), axis, -1)
    out = np.full(v.shape[:-1] + (len(QUANTILES),), np.nan)
    ok = ~np.all(np.isnan(v), axis=-1)
    if ok.any():
        out[ok] = np.nanpercentile(v[ok], QUANTILES, axis=-1).T
    return out


def _groups(firings: dict, L: int, n: int) -> list[np.ndarray]:
    index = firings["layer"].astype(np.int64) * n + firings["head"]
    order = np.argsort(index, kind="stable")
    bounds = np.searchsorted(index[order], np.arange(L * n + 1))
    return [order[bounds[g]:bounds[g + 1]] for g in range(L * n)]


def _draw_stats(draws: dict, sel, recon_fracs) -> dict[str, np.ndarray]:
    """Per-draw statistics [N] of the firings sel (NaN without firings)."""
    from toymodels.analysis.sad import at
    N = draws["n_recon_rot"].shape[1]
    if not len(sel):
        return {k: np.full(N, np.nan) for k in DRAW_STATS + tuple(
            at("median_n_recon_rot", f) for f in recon_fracs)}
    n_recon = draws["n_recon_rot"][sel]
    out = {"median_n_recon_rot": np.median(n_recon, axis=0),
           "share_n_recon_le4_rot": np.mean(n_recon <= 4, axis=0),
           "median_sparseness_rot": np.median(draws["sparseness_rot"][sel], axis=0)}
    for f in recon_fracs:
        out[at("median_n_recon_rot", f)] = np.median(draws[at("n_recon_rot", f)][sel], axis=0)
    return out


def draw_table(firings: dict, draws: dict, S: np.ndarray, recon_fracs=()) -> dict:
    """One row per head and draw (tidy; rotations.parquet): layer, head, draw, firings and
    the head's per-draw statistics (DRAW_STATS, then median N_recon at each extra fraction)."""
    L, n, _ = S.shape
    N = draws["n_recon_rot"].shape[1]
    rows: dict[str, list] = {}
    for g, sel in enumerate(_groups(firings, L, n)):
        stats = _draw_stats(draws, sel, recon_fracs)
        cols = {"layer": np.full(N, g // n), "head": np.full(N, g % n), "draw": np.arange(N),
                "firings": np.full(N, len(sel))} | stats
        for k, v in cols.items():
            rows.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in rows.items()}


def spread_columns(table: dict, L: int, n: int) -> dict[str, np.ndarray]:
    """Per head (layer-major, as head_table): each statistic of draw_table at 5/50/95%,
    columns STAT_q05, STAT_q50, STAT_q95."""
    g = table["layer"].astype(np.int64) * n + table["head"]
    N = int(table["draw"].max()) + 1
    out = {}
    for k in table:
        if k in ("layer", "head", "draw", "firings"):
            continue
        grid = np.full((L * n, N), np.nan)
        grid[g, table["draw"]] = table[k]
        q = quantiles(grid)
        for i, pct in enumerate(QUANTILES):
            out[f"{k}_q{pct:02d}"] = q[:, i]
    return out


def overall_spread(firings: dict, draws: dict, table: dict, recon_fracs=()) -> dict:
    """sad.json's 'rotations': per draw, the overall statistics of the control over all
    firings and the heads (with firings) whose median N_recon ≤ 4; each as its per-draw
    values and their 5/50/95%."""
    N = draws["n_recon_rot"].shape[1]
    per_draw = {k: v.tolist() for k, v in
                _draw_stats(draws, np.arange(len(firings["rel"])), recon_fracs).items()}
    fired = table["firings"] > 0
    counts = np.zeros(N, np.int64)
    np.add.at(counts, table["draw"][fired], table["median_n_recon_rot"][fired] <= 4)
    per_draw["heads_median_n_recon_rot_le4"] = counts.tolist()
    out = {"draws": N, "quantiles": list(QUANTILES),
           "seeds": "draw 0: key(seed); draw r of layer l: fold_in(fold_in(key(seed), r), l)"}
    for k, v in per_draw.items():
        out[k] = {"per_draw": v, "q": quantiles(v).tolist()}
    return out


# ---- the planted-firing validation --------------------------------------------------


def rank_one(W_Q, W_K):
    """The rank-one foil: each head [..., H, D] truncated to its top singular triple, as
    factors (row 0 of each; the others zero) with W_Qᵀ W_K = σ₁ u₁ v₁ᵀ. No biases."""
    W_Q, W_K = np.asarray(W_Q, np.float64), np.asarray(W_K, np.float64)
    U, S, Vt = np.linalg.svd(np.swapaxes(W_Q, -1, -2) @ W_K)
    Q1, K1 = np.zeros_like(W_Q), np.zeros_like(W_K)
    Q1[..., 0, :] = np.sqrt(S[..., :1]) * U[..., :, 0]
    K1[..., 0, :] = np.sqrt(S[..., :1]) * Vt[..., 0, :]
    return Q1.astype(np.float32), K1.astype(np.float32)


def recovered(top, fired, matched) -> np.ndarray:
    """[P] bool: the planted firing fires and its top index is its pair's matched index
    (matched < 0: the pair has no significant matched index, never recovered)."""
    top, matched = np.asarray(top), np.asarray(matched)
    return np.asarray(fired, bool) & (matched >= 0) & (top == matched)


def planted_verdict(pair, ok, n_pairs: int) -> dict:
    """Per pair, the share of its planted sequences recovered (ok [P] bool; pair [P] its
    template pair), the pairs recovered and PASS/FAIL (module docstring)."""
    pair, ok = np.asarray(pair), np.asarray(ok, bool)
    share = np.array([ok[pair == i].mean() if np.any(pair == i) else np.nan
                      for i in range(n_pairs)])
    n_rec = int(np.sum(share >= RECOVERED_SHARE))
    return {"share_recovered": float(ok.mean()) if len(ok) else np.nan,
            "pairs_recovered": n_rec, "pair_share": share,
            "verdict": "PASS" if n_rec >= MIN_RECOVERED_PAIRS else "FAIL"}


def validate_planted(x, mask, W_Q, W_K, pair, key_pos, matched, *, rotations: int = 20,
                     recon_fracs=(0.9, 0.99), seed: int = 0):
    """The planted-firing validation of one head and its foils.

    x [1, P, T, D], mask [P, T, T], W_Q, W_K [1, 1, H, D] (no biases); prompt p's planted
    firing is the query T-1 reading key key_pos[p], of template pair pair[p]; matched
    [n_pairs]: each pair's matched singular index of the head (-1: none significant).
    Models: 'head'; 'rank_one' (rank_one(W_Q, W_K), scored against the head's matching:
    at most one pair can be its top index); 'rotated' (the head's Haar-rotated bases, one
    row per draw). Returns (rows: one per model and draw: planted firings, the share of
    them whose top is their own index, the share of sequences recovered, pairs recovered,
    verdict, median N_recon at each of recon_fracs and at 1, median sparseness;
    pair_rows: one per model, draw and pair, its share of sequences recovered)."""
    from dataclasses import replace

    from toymodels.analysis.sad import SadOptions, at, decompose

    fracs = tuple(recon_fracs)
    options = SadOptions(rotations=rotations, recon_fracs=fracs, seed=seed)
    P, T = x.shape[1:3]
    pair, matched = np.asarray(pair), np.asarray(matched)
    where = (0, np.arange(P), 0, T - 1, np.asarray(key_pos))
    head = decompose(x, mask, W_Q, W_K, options=options)
    foil = decompose(x, mask, *rank_one(W_Q, W_K), options=replace(options, rotations=1))
    rows, pair_rows = [], []

    def score(model, draw, i, get):
        """i [P] firing rows (-1: the planted pair does not fire); get(name) [F] metric."""
        fired = i >= 0
        pick = (lambda name: get(name)[i[fired]])
        top = get("top_k")
        top = np.where(fired, top[np.maximum(i, 0)], -1) if len(top) else np.full(P, -1)
        ok = recovered(top, fired, matched[pair])
        v = planted_verdict(pair, ok, len(matched))
        row = {"model": model, "draw": draw, "planted": P, "planted_firings": int(fired.sum()),
               "top_is_own_index": float(ok.sum() / fired.sum()) if fired.any() else np.nan,
               "share_recovered": v["share_recovered"], "pairs_recovered": v["pairs_recovered"],
               "verdict": v["verdict"]}
        for f in fracs + (1.0,):
            name = "n_recon" if f == options.recon_frac else at("n_recon", f)
            row[at("median_n_recon", f)] = float(np.median(pick(name))) if fired.any() \
                else np.nan
        row["median_sparseness"] = float(np.median(pick("sparseness"))) if fired.any() \
            else np.nan
        rows.append(row)
        pair_rows.extend({"model": model, "draw": draw, "pair": k, "matched": int(matched[k]),
                          "share_recovered": float(s)} for k, s in enumerate(v["pair_share"]))

    i = head.firing_index(*where)
    score("head", 0, i, lambda name: head.firings[name])
    score("rank_one", 0, foil.firing_index(*where), lambda name: foil.firings[name])
    draws = head.draws or {k: head.firings[k][:, None] for k in  # rotations=1: draw 0
                           _draw_names(fracs)}
    for r in range(rotations):  # the rotated bases keep every score: the head's firings
        score("rotated", r, i, lambda name: draws[
            {"n_recon": "n_recon_rot", "sparseness": "sparseness_rot", "top_k": "top_k_rot"}
            .get(name, name.replace("n_recon_at", "n_recon_rot_at"))][:, r])
    return rows, pair_rows


def _draw_names(fracs) -> tuple[str, ...]:
    from toymodels.analysis.sad import DRAW_METRICS, at
    return DRAW_METRICS + tuple(at("n_recon_rot", f) for f in fracs)
