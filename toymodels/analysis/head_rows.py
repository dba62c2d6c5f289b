"""The metrics of one head, one head at a time: the definitions (alignment.py's docstring
says what each means) and the oracle that the batched rows (batched_rows.py) must equal.
benchmarks/bench_analysis.py's per-head loop also uses them, as a per-head tool would.

A head here is a dict of one head's arrays from svd.circuit_core: S [K], significant [K],
cos_u, cos_v, cos_u_rot, cos_v_rot [N, K], principal_cos_query / _key [P]."""

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import spearmanr

DEFAULT_BLOCK_GAP = 1e-2
"""Neighbouring singular values closer than this, relative to the larger, form a block:
TransformerLens' svd_circuits default (its relative gap 1 − σ_k/σ_{k−1} below 1e-2)."""


def sv_blocks(S, sig, block_gap: float = DEFAULT_BLOCK_GAP):
    """Block id [K] of each singular index of one head (σ descending, in float64): index
    k joins k−1's block when σ_{k−1} − σ_k < block_gap·σ_{k−1}, or when neither is
    significant (all null directions are one block); ids count blocks from 0."""
    S = np.asarray(S, np.float64)
    ids = np.zeros(len(S), dtype=np.int64)
    for k in range(1, len(S)):
        near = S[k - 1] - S[k] < block_gap * S[k - 1]
        null = not sig[k - 1] and not sig[k]
        ids[k] = ids[k - 1] + (0 if near or null else 1)
    return ids


def block_columns(blocks, sig):
    """(sv_blocks text, n_degenerate) of one head: the block ids as "0 1 1 2", and how many
    significant indices share their block with another index."""
    sizes = np.bincount(blocks)[blocks]
    return " ".join(str(b) for b in blocks), int(np.sum(sig & (sizes > 1)))


def match(score):
    """One-to-one assignment of rows to columns maximizing the summed score.
    Returns the column of each row, -1 where there are more rows than columns."""
    cols = np.full(score.shape[0], -1)
    if score.shape[1]:
        rows, assigned = linear_sum_assignment(score, maximize=True)
        cols[rows] = assigned
    return cols


def matched_alignment(cos_query_u, cos_key_v, matched) -> float:
    """A head's matched alignment: the mean over planted pairs of min(|cos| query side,
    |cos| key side) at each pair's assigned singular index; a pair left without one (matched
    False) counts 0. The one definition, for pair rows and for rotated baselines alike."""
    per_pair = np.where(matched, np.minimum(cos_query_u, cos_key_v), 0.0)
    return float(np.mean(per_pair, dtype=np.float64))


def set_metrics(cos, feats, sig):
    """(MMCS, Hungarian mean) of features `feats` against the significant columns;
    (None, None) for no features, or no significant direction (a zero head, e.g. a
    diverged instance's): nothing was measured, so no number is reported."""
    sub = cos[np.asarray(feats, dtype=int)][:, sig]
    if not len(feats) or sub.shape[1] == 0:
        return None, None
    cols = match(sub)
    matched = np.where(cols >= 0, sub[np.arange(len(feats)), cols], 0.0)
    return float(np.mean(sub.max(axis=1), dtype=np.float64)), \
        float(np.mean(matched, dtype=np.float64))  # means in float64, as every mean here


def _pair_rows(template, cos_u, cos_v, S, sig, dead, blocks):
    """One row per pair. Pairs take significant singular indices only: a pair left
    without one (more pairs than significant directions, or a dead feature) is
    unmatched, with no index and no cosine, never the |cos| of a null-space vector."""
    q = np.array([i for i, _, _ in template])
    k = np.array([j for _, j, _ in template])
    sig_k = np.flatnonzero(sig)
    score = cos_u[q][:, sig_k] * cos_v[k][:, sig_k]  # [P, K_sig]
    live = ~(dead[q] | dead[k])  # a pair with a dead feature takes no singular index
    matched = np.full(len(template), -1)
    if sig_k.size:
        cols = match(score[live])
        matched[live] = np.where(cols >= 0, sig_k[cols], -1)
    best = sig_k[np.argmax(score, axis=1)] if sig_k.size else np.full(len(template), -1)
    sizes = np.bincount(blocks)[blocks]
    rows = []
    for p, (i, j, value) in enumerate(template):
        m, b = matched[p], best[p] if live[p] else -1
        rows.append({
            "query_feature": int(i), "key_feature": int(j), "target": float(value),
            "sv_index": int(m) if m >= 0 else None,
            "cos_query_u": float(cos_u[i, m]) if m >= 0 else None,
            "cos_key_v": float(cos_v[j, m]) if m >= 0 else None,
            "sigma": float(S[m]) if m >= 0 else None,
            "significant": bool(m >= 0),
            "sv_block": int(blocks[m]) if m >= 0 else None,
            "block_size": int(sizes[m]) if m >= 0 else None,
            "in_block": bool(sizes[m] > 1) if m >= 0 else None,
            "max_k": int(b) if b >= 0 else None,
            "max_cos_query_u": float(cos_u[i, b]) if b >= 0 else None,
            "max_cos_key_v": float(cos_v[j, b]) if b >= 0 else None,
        })
    return rows


def _sigma_fit(pair_rows):
    """R² of a linear fit of matched σ on target, and Spearman's ρ (>= 3 pairs)."""
    pts = [(p["target"], p["sigma"]) for p in pair_rows if p["significant"]]
    if len(pts) < 3 or len({t for t, _ in pts}) < 2:
        return None, None
    t, s = np.array(pts).T
    if np.std(s) == 0:
        return 0.0, 0.0
    return float(np.corrcoef(t, s)[0, 1] ** 2), float(spearmanr(t, s).statistic)


def _pair_mean(pair_rows, key, dead_pair):
    """Mean of `key` over the live pairs (no dead feature), an unmatched pair counting
    0 (it has no direction of its own: as in the Hungarian mean); None if no pair is
    live or the head has no significant direction (nothing was measured)."""
    vals = [0.0 if p[key] is None else p[key] for p, d in zip(pair_rows, dead_pair) if not d]
    return float(np.mean(vals)) if vals else None


def _pair_min(pair_rows, dead_pair):
    """min over live pairs of min(|cos| query, |cos| key), an unmatched pair counting 0."""
    vals = [0.0 if p["sv_index"] is None else min(p["cos_query_u"], p["cos_key_v"])
            for p, d in zip(pair_rows, dead_pair) if not d]
    return min(vals) if vals else None


def feature_sets(template, query_set, key_set, dead):
    """(side, live features, singular side) of the set metrics: the attended query features
    against u and key features against v, or every live feature against both without a
    template."""
    alive = lambda feats: tuple(i for i in feats if not dead[i])  # noqa: E731
    if template:
        return (("query", alive(query_set), "u"), ("key", alive(key_set), "v"))
    everything = alive(range(len(dead)))
    return (("all", everything, "u"), ("all", everything, "v"))


def head_rows(head, template, query_set, key_set, dead, block_gap: float = DEFAULT_BLOCK_GAP):
    """(heads-table row, pairs-table rows) of one head; dead [N] marks all-zero features."""
    S, sig = head["S"], head["significant"]
    blocks = sv_blocks(S, sig, block_gap)
    row = {"sigma_1": float(S[0]), "n_significant": int(sig.sum())}
    row["sv_blocks"], row["n_degenerate"] = block_columns(blocks, sig)
    for variant, suffix in (("", ""), ("_rot", "baseline_")):
        for side, feats, vec in feature_sets(template, query_set, key_set, dead):
            mmcs, hung = set_metrics(head[f"cos_{vec}{variant}"], feats, sig)
            row[f"{suffix}mmcs_{side}_{vec}"] = mmcs
            row[f"{suffix}hungarian_{side}_{vec}"] = hung
    pair_rows = []
    if template:
        pair_rows = _pair_rows(template, head["cos_u"], head["cos_v"], S, sig, dead, blocks)
        baseline = _pair_rows(template, head["cos_u_rot"], head["cos_v_rot"], S, sig, dead,
                              blocks)
        for p, b in zip(pair_rows, baseline):
            p["baseline_cos_query_u"], p["baseline_cos_key_v"] = b["cos_query_u"], b["cos_key_v"]
        dead_pair = [bool(dead[i] or dead[j]) for i, j, _ in template]
        if not sig.any():  # a zero head (e.g. diverged): nothing to report
            dead_pair = [True] * len(template)
        for key in ("cos_query_u", "cos_key_v", "max_cos_query_u", "max_cos_key_v",
                    "baseline_cos_query_u", "baseline_cos_key_v"):
            row[f"mean_{key}"] = _pair_mean(pair_rows, key, dead_pair)
        row["n_pairs_matched"] = sum(p["sv_index"] is not None for p in pair_rows)
        row["min_matched_cos"] = _pair_min(pair_rows, dead_pair)
        row["sigma_target_r2"], row["sigma_target_spearman"] = _sigma_fit(pair_rows)
        for side, feats in (("query", query_set), ("key", key_set)):
            cos = head[f"principal_cos_{side}"]
            # A zero column makes the span's basis arbitrary; a zero head has no span.
            ok = not dead[list(feats)].any() and bool(sig.any())
            row[f"principal_cos_{side}_min"] = float(cos.min()) if ok else None
            row[f"principal_cos_{side}_mean"] = float(cos.mean()) if ok else None
    return row, pair_rows
