"""Rank the multi-pair search's settings (the sweeps behind the `multi-pair` preset).

Reads the stored sweep tables, one row per instance, and prints per setting the issue's
criteria over its seeds: Hungarian-matched |cos| mean and min (both sides), the worst
seed's R² and Spearman of matched σ against target, and the fewest significant σ in a seed
(20 are needed for every pair to have one).

usage: python experiments/multi_pair_search_report.py [SWEEP_DIR ...] [--top 10]
       (default: the three rounds in experiments/sweeps/results/)
"""

import argparse
import json
from pathlib import Path

import pandas as pd

ROUNDS = sorted(Path("experiments/sweeps/results").glob("multi_pair_search*"))
SETTING = ["steps", "lr_schedule", "batch_size", "lam", "learning_rate", "p_active",
           "target_scale", "low"]

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("sweeps", nargs="*", type=Path, default=ROUNDS)
parser.add_argument("--top", type=int, default=8)
args = parser.parse_args()
pd.set_option("display.width", 200)
for sweep in args.sweeps:
    rows = pd.read_parquet(sweep / "results.parquet")
    rows["low"] = rows.template.map(lambda t: json.loads(t)[-1][2])  # weakest target value
    if "lr_schedule" not in rows:
        rows["lr_schedule"] = "constant"  # round 1 predates the option
    table = rows.groupby(SETTING).agg(
        seeds=("seed", "count"), mean_q=("mean_cos_query_u", "mean"),
        mean_k=("mean_cos_key_v", "mean"), min_cos=("min_matched_cos", "min"),
        r2=("sigma_target_r2", "min"), spearman=("sigma_target_spearman", "min"),
        fewest_significant_sigma=("n_significant", "min"))
    print(f"== {sweep} ({len(rows)} instances)")
    print(table.sort_values("min_cos", ascending=False).head(args.top).round(3).to_string())
