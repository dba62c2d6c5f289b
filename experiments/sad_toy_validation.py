"""Sparse attention decomposition where the features are known (issue 10, item 2).

For every instance of stored toy-transformer runs, decompose each head's firings on
sequences of the run's own task and look at the *planted* firings: the query (last token)
reading the token that carries its pair's key feature. Does the top contribution come
from the singular index that the alignment analysis matched to the planted pair, and is
N_recon small? The control run (no pairing needed) shows what the decomposition reports
where alignment is known to fail. Over training (parameters recorded in dynamics.npz),
the planted firings' sparseness beside its rotated twin is the paper's Figure 7 analogue.

Tables go to OUT (Parquet, written atomically); the figure is drawn from those tables
(toymodels.plots.plot_planted_over_training; `toymodels figures --only
sad_toy_over_training` draws the same).

usage: toymodels run transformer-retrieval --seeds 0-7 --out runs/transformer-retrieval
       toymodels run transformer-control --seeds 0-7 --out runs/transformer-control
       python experiments/sad_toy_validation.py [--runs runs] [--out runs/sad-toy]
              [--figures figures] [--no-figure] [--overwrite]
"""

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from toymodels import load_run
from toymodels.analysis import sad
from toymodels.families.transformer import attention_inputs, task_sequences
from toymodels.store import claim, staged

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--runs", default="runs", type=Path)
parser.add_argument("--presets", default="transformer-retrieval,transformer-control")
parser.add_argument("--out", default="runs/sad-toy", type=Path)
parser.add_argument("--figures", default="figures", type=Path)
parser.add_argument("--prompts", default=256, type=int, help="task sequences per instance")
parser.add_argument("--training-instances", default=4, type=int,
                    help="instances decomposed at every recorded step")
parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
parser.add_argument("--no-figure", action="store_true",
                    help="store the tables only (toymodels figures draws the figure)")
args = parser.parse_args()


def planted(result, cfg, batch, layer, head):
    """Firing metrics at the planted pairs (query -> key token) of one head."""
    P, T = batch["f"].shape[:2]
    prompts = np.arange(P)
    where = (layer, prompts, head, T - 1, np.asarray(batch["key_pos"]))
    return {k: result.lookup(k, *where) for k in
            ("n_recon", "n_recon_rot", "sparseness", "sparseness_rot", "top_k")}


def matched_index(pairs, n, layer, head, batch, cfg):
    """The singular index the alignment analysis matched to each sequence's planted pair."""
    index = {(r["query_feature"], r["key_feature"]): r["sv_index"] for r in pairs
             if r["instance"] == n and r["layer"] == layer and r["head"] == head
             and r["circuit"] == "qk"}
    pair = np.asarray(batch["pair"])
    return np.array([-2 if index.get(cfg.pairs[p][:2]) is None else index[cfg.pairs[p][:2]]
                     for p in pair])


rows, training = [], []
for preset in args.presets.split(","):
    run = load_run(args.runs / preset)
    cfg = run.config
    import csv
    with open(args.runs / preset / "analysis" / "pairs.csv", newline="") as f:
        pairs = [{k: (int(v) if k in ("instance", "layer", "head", "query_feature",
                                      "key_feature") else v) for k, v in r.items()}
                 for r in csv.DictReader(f)]
    for r in pairs:
        r["sv_index"] = int(r["sv_index"]) if r["sv_index"] not in ("", None) else None
    batch = task_sequences(cfg, args.prompts, seed=0)
    for n, inst in enumerate(run.summary["instances"]):
        inputs = attention_inputs(cfg, {k: v[n] for k, v in run.params.items()}, batch["f"])
        result = sad.decompose(**inputs)
        for h in inst["heads"]:
            m = planted(result, cfg, batch, h["layer"], h["head"])
            fired = m["n_recon"] >= 0
            matched = matched_index(pairs, n, h["layer"], h["head"], batch, cfg)
            rows.append({
                "run": preset, "seed": inst["seed"], "layer": h["layer"], "head": h["head"],
                "accuracy": h["accuracy"], "qk_matched": h["qk_matched"],
                "planted_pairs": int(len(fired)), "planted_firings": int(fired.sum()),
                "top_is_matched": float(np.mean(m["top_k"][fired] == matched[fired]))
                if fired.any() else None,
                **{f"median_{k}": float(np.median(m[k][fired])) if fired.any() else None
                   for k in ("n_recon", "n_recon_rot", "sparseness", "sparseness_rot")},
                "share_n_recon_le2": float(np.mean(m["n_recon"][fired] <= 2))
                if fired.any() else None,
                "share_n_recon_le2_rot": float(np.mean(m["n_recon_rot"][fired] <= 2))
                if fired.any() else None})
        if run.dynamics is None or n >= args.training_instances:
            continue
        steps = run.dynamics["steps"]
        for r_index, step in enumerate(steps):
            params = {k[len("param_"):]: v[n, r_index] for k, v in run.dynamics.items()
                      if k.startswith("param_")}
            result = sad.decompose(**attention_inputs(cfg, params, batch["f"]))
            for h in inst["heads"]:
                m = planted(result, cfg, batch, h["layer"], h["head"])
                fired = m["n_recon"] >= 0
                training.append({
                    "run": preset, "seed": inst["seed"], "layer": h["layer"],
                    "head": h["head"], "step": int(step), "planted_firings": int(fired.sum()),
                    "median_sparseness": float(np.median(m["sparseness"][fired]))
                    if fired.any() else None,
                    "median_sparseness_rot": float(np.median(m["sparseness_rot"][fired]))
                    if fired.any() else None})
        print(f"{preset} seed {inst['seed']}: decomposed at {len(steps)} recorded steps")

MARKER = "planted.parquet"
with claim(args.out, args.overwrite, marker=MARKER), \
        staged(args.out, args.overwrite, marker=MARKER) as staging:
    pq.write_table(pa.Table.from_pylist(rows), staging / MARKER)
    pq.write_table(pa.Table.from_pylist(training), staging / "over_training.parquet")

# ---- from the stored tables only ----
from toymodels.figures import render_script  # noqa: E402

table = pq.read_table(args.out / "planted.parquet").to_pylist()
print(f"{'run':<24}{'seed':>5}{'head':>6}{'acc':>7}{'firings':>8}{'top=match':>10}"
      f"{'N_recon':>8}{'rot':>6}{'sparse':>8}{'rot':>7}")
for r in table:
    f = (lambda x, fmt: "-" if x is None else format(x, fmt))
    print(f"{r['run']:<24}{r['seed']:>5}{r['layer']:>3}.{r['head']:<2}{f(r['accuracy'], '.3f'):>7}"
          f"{r['planted_firings']:>8}{f(r['top_is_matched'], '.3f'):>10}"
          f"{f(r['median_n_recon'], '.1f'):>8}{f(r['median_n_recon_rot'], '.1f'):>6}"
          f"{f(r['median_sparseness'], '.3f'):>8}{f(r['median_sparseness_rot'], '.3f'):>7}")

if not args.no_figure:
    for path in render_script("sad_toy_over_training", args.figures, paths={"sad": args.out}):
        print(f"figure: {path}")
