"""The heads and pairs tables of many heads at once: head_rows.py's metrics, batched.

Every metric is an array operation over the heads. Only the one-to-one assignments
that need the Hungarian algorithm go to SciPy, head by head, and few do: when every
row's best column is strictly best and no two rows share one, that choice is the
assignment's unique optimum (any other loses in some row and gains in none), which is
what SciPy returns too. The same holds column by column when rows outnumber columns.
tests/test_batched_rows.py checks every value against head_rows.py, the definition.

Shapes:
  B heads (the leading head axes, flattened), N features, K singular triples
  F rows of one assignment (the features of a set, or the live pairs), P pairs
A head's significant columns are its first n_sig (σ is descending).
"""

import numpy as np
from scipy.stats import rankdata

from toymodels.analysis.head_rows import DEFAULT_BLOCK_GAP, feature_sets, match


def sv_blocks(S, sig, block_gap: float = DEFAULT_BLOCK_GAP):
    """Block id [B, K] of each singular index of every head, as head_rows.sv_blocks (the
    same float64 arithmetic): S [B, K] descending, sig [B, K] significant."""
    S = np.asarray(S, np.float64)
    sig = np.asarray(sig, bool)
    near = S[:, :-1] - S[:, 1:] < block_gap * S[:, :-1]
    null = ~sig[:, :-1] & ~sig[:, 1:]
    starts = ~(near | null)  # index k + 1 opens a new block
    return np.concatenate([np.zeros((S.shape[0], 1), np.int64),
                           np.cumsum(starts, axis=1, dtype=np.int64)], axis=1)


def block_sizes(blocks):
    """[B, K]: the size of the block each index sits in."""
    same = blocks[:, :, None] == blocks[:, None, :]
    return same.sum(axis=2)


def _strict_best(values, axis):
    """argmax along axis, and whether it is strictly larger than every other entry."""
    best = values.argmax(axis)
    n = values.shape[axis]
    if n < 2:
        return best, np.ones(best.shape, bool)
    top2 = np.partition(values, n - 2, axis=axis)
    second, first = np.take(top2, n - 2, axis=axis), np.take(top2, n - 1, axis=axis)
    return best, first > second


def _all_different(index):
    """[B, M] -> [B]: no value repeats within a row."""
    if index.shape[1] < 2:
        return np.ones(index.shape[0], bool)
    return (np.diff(np.sort(index, axis=1), axis=1) != 0).all(axis=1)


def assign(score, n_cols):
    """Column of each row [B, F] (-1: unassigned) maximizing each head's summed score over
    its first n_cols[b] columns: head_rows.match(score[b][:, :n_cols[b]]) for every b.
    score [B, F, K] >= 0."""
    B, F, K = score.shape
    out = np.full((B, F), -1)
    if B == 0 or F == 0:
        return out
    usable = np.arange(K) < n_cols[:, None]  # [B, K]
    masked = np.where(usable[:, None, :], score, -np.inf)
    # No more rows than columns: each row takes its own strictly best column.
    best_col, strict = _strict_best(masked, axis=2)  # [B, F]
    by_row = (n_cols >= F) & strict.all(1) & _all_different(best_col)
    out[by_row] = best_col[by_row]
    # More rows than columns: each usable column takes its strictly best row.
    best_row, strict = _strict_best(score, axis=1)  # [B, K]
    labelled = np.where(usable, best_row, -1 - np.arange(K))  # unusable columns never clash
    by_col = ((n_cols < F) & (n_cols > 0) & (strict | ~usable).all(1)
              & _all_different(labelled))
    b, k = np.nonzero(by_col[:, None] & usable)
    out[b, best_row[b, k]] = k
    for b in np.flatnonzero(~by_row & ~by_col & (n_cols > 0)):  # ties, shared best: Hungarian
        out[b] = match(score[b, :, :n_cols[b]])
    return out


def _pick(values, cols):
    """values [B, F, K] at each row's column cols [B, F] (0 where cols is -1)."""
    picked = np.take_along_axis(values, np.maximum(cols, 0)[..., None], axis=2)[..., 0]
    return np.where(cols >= 0, picked, 0)


def set_metrics(cos, feats, n_sig):
    """MMCS and Hungarian mean [B] of features feats against each head's significant
    columns, as head_rows.set_metrics; NaN where it reports None."""
    B, _, K = cos.shape
    if not feats:
        return np.full(B, np.nan), np.full(B, np.nan)
    sub = cos[:, np.asarray(feats, dtype=int)]  # [B, F, K]
    usable = np.arange(K) < n_sig[:, None]
    mmcs = np.where(usable[:, None, :], sub, -np.inf).max(axis=2).mean(axis=1, dtype=np.float64)
    hungarian = _pick(sub, assign(sub, n_sig)).mean(axis=1, dtype=np.float64)
    none = n_sig == 0
    return np.where(none, np.nan, mmcs), np.where(none, np.nan, hungarian)


def _pearson(x, Y):
    """Pearson r of x [M] with each row of Y [B, M], float64."""
    xc, Yc = x - x.mean(), Y - Y.mean(axis=1, keepdims=True)
    return np.clip(Yc @ xc / np.sqrt((xc @ xc) * (Yc * Yc).sum(axis=1)), -1, 1)


def sigma_fit(target, sigma, matched):
    """R² and Spearman ρ [B] of matched σ [B, P] on target [P] over each head's matched
    pairs (matched [B, P]), as head_rows._sigma_fit; NaN where it reports None."""
    B = sigma.shape[0]
    r2, rho = np.full(B, np.nan), np.full(B, np.nan)
    patterns, inverse = np.unique(matched, axis=0, return_inverse=True)
    for g, pattern in enumerate(patterns):
        t = target[pattern]
        if pattern.sum() < 3 or len(set(t.tolist())) < 2:
            continue
        heads = np.flatnonzero(inverse.reshape(-1) == g)
        s = sigma[heads][:, pattern].astype(np.float64)
        flat = np.std(s, axis=1) == 0
        r2[heads] = np.where(flat, 0.0, _pearson(t, s) ** 2)
        rho[heads] = np.where(flat, 0.0, _pearson(rankdata(t), rankdata(s, axis=1)))
    return r2, rho


def _column(values, measured=None):
    """A table column: Python numbers, None where not measured (NaN, or measured False)."""
    values = np.asarray(values)
    if measured is None:
        measured = ~np.isnan(values) if values.dtype.kind == "f" else np.ones(values.shape, bool)
    return [v if m else None for v, m in zip(values.tolist(), measured.tolist())]


def _pair_columns(template, cos_u, cos_v, S, n_sig, live):
    """Assignment and max-over-k columns of every pair, as head_rows._pair_rows."""
    q = np.array([i for i, _, _ in template])
    k = np.array([j for _, j, _ in template])
    cos_q, cos_k = cos_u[:, q], cos_v[:, k]  # [B, P, K]
    score = cos_q * cos_k
    B, P, K = score.shape
    matched = np.full((B, P), -1)
    matched[:, live] = assign(score[:, live], n_sig)
    usable = np.arange(K) < n_sig[:, None]
    best = np.where(usable[:, None, :], score, -np.inf).argmax(axis=2)
    best = np.where((n_sig > 0)[:, None] & live[None, :], best, -1)
    return {"matched": matched, "best": best,
            "cos_query_u": _pick(cos_q, matched), "cos_key_v": _pick(cos_k, matched),
            "sigma": _pick(np.broadcast_to(S[:, None, :], score.shape), matched),
            "max_cos_query_u": _pick(cos_q, best), "max_cos_key_v": _pick(cos_k, best)}


def _group_rows(core, template, query_set, key_set, dead, block_gap):
    """Columns of the heads and pairs tables for heads sharing one dead-feature mask
    dead [N]: (heads columns, pairs columns), each a dict of name -> list."""
    S, n_sig = core["S"], core["significant"].sum(axis=1)
    B = S.shape[0]
    blocks = sv_blocks(S, core["significant"], block_gap)
    sizes = block_sizes(blocks)
    heads = {"sigma_1": _column(S[:, 0]), "n_significant": _column(n_sig),
             "sv_blocks": [" ".join(map(str, row)) for row in blocks.tolist()],
             "n_degenerate": _column((core["significant"] & (sizes > 1)).sum(axis=1))}
    for variant, suffix in (("", ""), ("_rot", "baseline_")):
        for side, feats, vec in feature_sets(template, query_set, key_set, dead):
            mmcs, hungarian = set_metrics(core[f"cos_{vec}{variant}"], feats, n_sig)
            heads[f"{suffix}mmcs_{side}_{vec}"] = _column(mmcs)
            heads[f"{suffix}hungarian_{side}_{vec}"] = _column(hungarian)
    if not template:
        return heads, {}

    q = np.array([i for i, _, _ in template])
    k = np.array([j for _, j, _ in template])
    live = ~(dead[q] | dead[k])
    pairs = _pair_columns(template, core["cos_u"], core["cos_v"], S, n_sig, live)
    base = _pair_columns(template, core["cos_u_rot"], core["cos_v_rot"], S, n_sig, live)
    measured_head = (n_sig > 0) & live.any()  # some live pair, some significant direction
    for key, values, cols in (("cos_query_u", pairs["cos_query_u"], pairs["matched"]),
                              ("cos_key_v", pairs["cos_key_v"], pairs["matched"]),
                              ("max_cos_query_u", pairs["max_cos_query_u"], pairs["best"]),
                              ("max_cos_key_v", pairs["max_cos_key_v"], pairs["best"]),
                              ("baseline_cos_query_u", base["cos_query_u"], base["matched"]),
                              ("baseline_cos_key_v", base["cos_key_v"], base["matched"])):
        # An unmatched live pair counts 0 (values are 0 where cols is -1).
        mean = values[:, live].astype(np.float64).mean(axis=1) if live.any() else np.zeros(B)
        heads[f"mean_{key}"] = _column(mean, measured_head)
    heads["n_pairs_matched"] = _column((pairs["matched"] >= 0).sum(axis=1))
    worst = np.minimum(pairs["cos_query_u"], pairs["cos_key_v"])[:, live]
    heads["min_matched_cos"] = _column(worst.min(axis=1) if live.any() else np.zeros(B),
                                       measured_head)
    targets = np.array([v for _, _, v in template])
    r2, rho = sigma_fit(targets, pairs["sigma"], pairs["matched"] >= 0)
    heads["sigma_target_r2"], heads["sigma_target_spearman"] = _column(r2), _column(rho)
    for side, feats in (("query", query_set), ("key", key_set)):
        cos = core[f"principal_cos_{side}"]
        spanned = (n_sig > 0) & (not dead[list(feats)].any())
        heads[f"principal_cos_{side}_min"] = _column(cos.min(axis=1), spanned)
        heads[f"principal_cos_{side}_mean"] = _column(cos.mean(axis=1), spanned)

    pair_block = _pick(np.broadcast_to(blocks[:, None, :], pairs["cos_query_u"].shape[:2]
                                       + blocks.shape[1:]), pairs["matched"])
    pair_size = _pick(np.broadcast_to(sizes[:, None, :], pair_block.shape + sizes.shape[1:]),
                      pairs["matched"])
    m, b = pairs["matched"].reshape(-1), pairs["best"].reshape(-1)
    matched_col = lambda values: _column(values.reshape(-1), m >= 0)  # noqa: E731
    best_col = lambda values: _column(values.reshape(-1), b >= 0)  # noqa: E731
    base_m = base["matched"].reshape(-1)
    pair_columns = {
        "query_feature": q.tolist() * B, "key_feature": k.tolist() * B,
        "target": targets.tolist() * B,
        "sv_index": matched_col(pairs["matched"]),
        "cos_query_u": matched_col(pairs["cos_query_u"]),
        "cos_key_v": matched_col(pairs["cos_key_v"]),
        "sigma": matched_col(pairs["sigma"]),
        "significant": (m >= 0).tolist(),
        "sv_block": matched_col(pair_block),
        "block_size": matched_col(pair_size),
        "in_block": matched_col(pair_size > 1),
        "max_k": best_col(pairs["best"]),
        "max_cos_query_u": best_col(pairs["max_cos_query_u"]),
        "max_cos_key_v": best_col(pairs["max_cos_key_v"]),
        "baseline_cos_query_u": _column(base["cos_query_u"].reshape(-1), base_m >= 0),
        "baseline_cos_key_v": _column(base["cos_key_v"].reshape(-1), base_m >= 0),
    }
    return heads, pair_columns


def _rows(columns: dict) -> list[dict]:
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def table_rows(core, template, query_set, key_set, dead, where: dict,
               block_gap: float = DEFAULT_BLOCK_GAP):
    """Rows of the heads and pairs tables of B heads, as head_rows.head_rows gives them
    head by head, in head order.

    core: svd.circuit_core's arrays with the heads flattened to one leading axis [B, ...];
    dead [B, N]: each head's dictionary's all-zero features; where: columns that lead
    every head's row (e.g. {"instance": [...], "circuit": [...]}), each of length B;
    block_gap: the relative gap of sv_blocks.
    Returns (head rows [B], pair rows [B·P])."""
    B = core["S"].shape[0]
    P = len(template)
    dead = np.asarray(dead, bool).reshape(B, -1)
    masks, group = ((dead[:1], np.zeros(B, int)) if (dead == dead[:1]).all() else
                    np.unique(dead, axis=0, return_inverse=True))
    group = np.asarray(group).reshape(-1)
    head_cols, pair_cols = {}, {}
    for g, mask in enumerate(masks):  # heads grouped by mask; put back in order below
        members = np.flatnonzero(group == g)
        group_core = core if len(masks) == 1 else {name: a[members] for name, a in core.items()}
        h, p = _group_rows(group_core, template, query_set, key_set, mask, block_gap)
        for cols, new in ((head_cols, h), (pair_cols, p)):
            for name, values in new.items():
                cols.setdefault(name, []).extend(values)
    if len(masks) > 1:
        back = np.argsort(np.argsort(group, kind="stable"))  # head b's place in the groups
        head_cols = {name: [col[t] for t in back] for name, col in head_cols.items()}
        pair_cols = {name: [col[t * P + j] for t in back for j in range(P)]
                     for name, col in pair_cols.items()}
    head_columns = {**where, **head_cols}
    pair_columns = {**{name: [v for v in values for _ in range(P)]
                       for name, values in where.items()}, **pair_cols}
    return _rows(head_columns), (_rows(pair_columns) if P else [])
