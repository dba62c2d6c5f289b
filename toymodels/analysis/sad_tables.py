"""Tidy tables of a sparse attention decomposition (analysis/sad.py): one row per firing,
one row per head, the run's overall numbers, each beside its rotated control; columns of
NumPy arrays, written as Parquet by pyarrow."""

import numpy as np

from toymodels.analysis.sad import FIRING_METRICS, SadResult, at

FIRING_COLUMNS = ("layer", "head", "prompt", "d", "s", "token_d", "token_s", "n_keys", "attn",
                  "rel", "n_recon", "sparseness", "top_k", "n_recon_rot", "sparseness_rot",
                  "top_k_rot")
HEAD_COLUMNS = ("layer", "head", "firings", "median_n_recon", "share_n_recon_le4",
                "median_sparseness", "median_n_recon_rot", "share_n_recon_le4_rot",
                "median_sparseness_rot", "sigma_1", "K")


def firing_table(result: SadResult, mask, tokens=None) -> dict[str, np.ndarray]:
    """One row per firing: FIRING_COLUMNS. tokens: per prompt its token strings (optional)."""
    f = result.firings
    l, p, h, d, s = (f[k] for k in ("layer", "prompt", "head", "d", "s"))
    cols = {"layer": l, "head": h, "prompt": p, "d": d, "s": s}
    cols["token_d"] = np.array([tokens[i][j] for i, j in zip(p, d)] if tokens else
                               [""] * len(p), dtype=object)
    cols["token_s"] = np.array([tokens[i][j] for i, j in zip(p, s)] if tokens else
                               [""] * len(p), dtype=object)
    cols["n_keys"] = np.asarray(mask).sum(-1)[p, d].astype(np.int32)
    cols["attn"] = result.pairs["attn"][l, p, h, d, s]
    for k in ("rel",) + FIRING_METRICS:
        cols[k] = f[k]
    for frac in result.options.recon_fracs:  # only when asked: default columns unchanged
        for k in ("n_recon", "n_recon_rot"):
            cols[at(k, frac)] = f[at(k, frac)]
    return cols


def head_table(firings: dict, S: np.ndarray, recon_fracs=()) -> dict[str, np.ndarray]:
    """One row per head (all heads, also those without firings): HEAD_COLUMNS, then the
    median N_recon at each of recon_fracs (head and rotated twin)."""
    L, n, K = S.shape
    extra = tuple(at(f"median_{k}", f) for f in recon_fracs for k in ("n_recon", "n_recon_rot"))
    rows = {k: [] for k in HEAD_COLUMNS + extra}
    index = firings["layer"].astype(np.int64) * n + firings["head"]
    order = np.argsort(index, kind="stable")
    bounds = np.searchsorted(index[order], np.arange(L * n + 1))
    for g in range(L * n):
        sel = order[bounds[g]:bounds[g + 1]]

        def med(col):
            return float(np.median(firings[col][sel])) if len(sel) else np.nan

        def share(col):
            return float(np.mean(firings[col][sel] <= 4)) if len(sel) else np.nan

        rows["layer"].append(g // n), rows["head"].append(g % n)
        rows["firings"].append(len(sel))
        rows["median_n_recon"].append(med("n_recon"))
        rows["share_n_recon_le4"].append(share("n_recon"))
        rows["median_sparseness"].append(med("sparseness"))
        rows["median_n_recon_rot"].append(med("n_recon_rot"))
        rows["share_n_recon_le4_rot"].append(share("n_recon_rot"))
        rows["median_sparseness_rot"].append(med("sparseness_rot"))
        rows["sigma_1"].append(float(S[g // n, g % n, 0]))
        rows["K"].append(K)
        for f in recon_fracs:
            for k in ("n_recon", "n_recon_rot"):
                rows[at(f"median_{k}", f)].append(med(at(k, f)))
    return {k: np.asarray(v) for k, v in rows.items()}


def overall(firings: dict, heads: dict, recon_fracs=()) -> dict:
    """Summary numbers of a run, with the rotated control beside each (and, per extra
    reconstruction fraction, the share ≤ 4 and median N_recon of both)."""
    f = firings
    has = heads["firings"] > 0
    fire = len(f["rel"]) > 0
    extra = {at(f"{stat}_{k}", frac): (float(fn(f[at(k, frac)])) if fire else None)
             for frac in recon_fracs for k in ("n_recon", "n_recon_rot")
             for stat, fn in (("median", np.median), ("share_le4", lambda v: np.mean(v <= 4)))}
    return {"firings": int(len(f["rel"])), "heads": int(len(heads["head"])),
            "heads_with_firings": int(has.sum()),
            "share_n_recon_le4": float(np.mean(f["n_recon"] <= 4)) if len(f["rel"]) else None,
            "share_n_recon_le4_rot": float(np.mean(f["n_recon_rot"] <= 4))
            if len(f["rel"]) else None,
            "median_n_recon": float(np.median(f["n_recon"])) if len(f["rel"]) else None,
            "median_n_recon_rot": float(np.median(f["n_recon_rot"])) if len(f["rel"]) else None,
            "median_sparseness": float(np.median(f["sparseness"])) if len(f["rel"]) else None,
            "median_sparseness_rot": float(np.median(f["sparseness_rot"]))
            if len(f["rel"]) else None,
            "heads_median_n_recon_le4": int(np.sum(heads["median_n_recon"][has] <= 4)),
            "heads_median_n_recon_rot_le4": int(np.sum(heads["median_n_recon_rot"][has] <= 4))
            } | extra


def write_parquet(path, columns: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pa.table({k: (pa.array(list(v), pa.string()) if np.asarray(v).dtype == object
                          else pa.array(np.asarray(v))) for k, v in columns.items()})
    pq.write_table(table, path)
