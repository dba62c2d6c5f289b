"""Rank the multi-pair search's settings (the sweeps behind the `multi-pair` preset).

Reads the stored sweep tables, one row per instance and one per (instance, pair), and
prints per setting the issue's criteria over its seeds: Hungarian-matched |cos| mean and
min (both sides), the worst seed's R² and Spearman of matched σ against target, and the
fewest significant σ in a seed (20 are needed for every pair to have one).

The |cos| columns are recomputed from the stored pairs under the current rule (issue 11):
a pair whose assigned singular index is not significant is unmatched and counts 0. The
tables were written before that fix, when such a pair reported its |cos| with an arbitrary
null-space vector; `old_rank` is the setting's rank under the stored (old) numbers, so
the effect of the fix on the ranking is read off without retraining. Matches of the
other pairs are unchanged by the fix (insignificant columns scored 0 in the old
assignment too).

usage: python experiments/multi_pair_search_report.py [SWEEP_DIR ...] [--top 10]
       (default: the three rounds in experiments/sweeps/results/)
"""

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

ROUNDS = sorted(Path("experiments/sweeps/results").glob("multi_pair_search*"))
SETTING = ["steps", "lr_schedule", "batch_size", "lam", "learning_rate", "p_active",
           "target_scale", "low"]


KEYS = ["group", "seed", "lam", "learning_rate", "target_scale"]


def refit_instances(rows: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """rows with, per instance, mean |cos| both sides and min matched |cos| under the fixed
    rule (an unmatched, i.e. insignificant, pair counts 0) and how many pairs that affects.
    The pairs table holds each instance's P pairs in the rows' order (checked: p_active,
    batched too, is not among its columns, so the keys alone cannot tell instances apart)."""
    P = len(pairs) // len(rows)
    if P * len(rows) != len(pairs) or not (
            pairs[KEYS].iloc[::P].reset_index(drop=True).equals(rows[KEYS].reset_index(drop=True))):
        raise SystemExit("pairs.parquet is not in results.parquet's instance order")
    ok = pairs.significant.to_numpy(bool).reshape(-1, P)
    q = np.where(ok, pairs.cos_query_u.to_numpy(float).reshape(-1, P), 0.0)
    k = np.where(ok, pairs.cos_key_v.to_numpy(float).reshape(-1, P), 0.0)
    return rows.assign(fixed_mean_q=q.mean(1), fixed_mean_k=k.mean(1),
                       fixed_min=np.minimum(q, k).min(1), unmatched=(~ok).sum(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweeps", nargs="*", type=Path, default=ROUNDS)
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    pd.set_option("display.width", 220)
    for sweep in args.sweeps:
        rows = pd.read_parquet(sweep / "results.parquet")
        rows = refit_instances(rows, pd.read_parquet(sweep / "pairs.parquet"))
        rows["low"] = rows.template.map(lambda t: json.loads(t)[-1][2])  # weakest target
        if "lr_schedule" not in rows:
            rows["lr_schedule"] = "constant"  # round 1 predates the option
        table = rows.groupby(SETTING).agg(
            seeds=("seed", "count"), mean_q=("fixed_mean_q", "mean"),
            mean_k=("fixed_mean_k", "mean"), min_cos=("fixed_min", "min"),
            old_mean_q=("mean_cos_query_u", "mean"), old_min_cos=("min_matched_cos", "min"),
            unmatched=("unmatched", "max"),
            r2=("sigma_target_r2", "min"), spearman=("sigma_target_spearman", "min"),
            fewest_significant_sigma=("n_significant", "min"))
        # Rank by min |cos|, ties by mean |cos|: the same key on the old and the new numbers.
        old_order = table.sort_values(["old_min_cos", "old_mean_q"], ascending=False).index
        table.loc[old_order, "old_rank"] = np.arange(1, len(table) + 1)
        table = table.sort_values(["min_cos", "mean_q"], ascending=False)
        table["rank"] = np.arange(1, len(table) + 1)
        table["old_rank"] = table.old_rank.astype(int)
        moved = int((table["rank"] != table.old_rank).sum())
        print(f"== {sweep} ({len(rows)} instances, {len(table)} settings; "
              f"{int((rows.unmatched > 0).sum())} instances have an unmatched pair; "
              f"{moved} settings change rank)")
        print(table.head(args.top).round(3).to_string())


if __name__ == "__main__":
    main()
