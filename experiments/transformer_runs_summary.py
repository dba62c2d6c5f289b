"""Toy transformers: every number of docs/transformers.md's run table and its bullets, from
stored runs (never by retraining), with each verdict beside its foil.

Per preset found under --runs (transformer-retrieval, -rope, -multi-pair, -full, -control):
the table row (training seconds from timing.json, solved count, the best head's accuracy,
QK sides, QK >= 0.9, OV, the heads that solve; beside them the foil of each verdict, the
random twin of families.random_twin, and how many seeds it would pass), then the numbers
the bullets cite: every seed's QK, the other heads, the control's spectrum and rotated
ranges, the RoPE planted logit and |cos| per offset, the multi-pair rotated range.
Ranges are min–max over seeds. Runs stored before foils print "-" for them.

usage: toymodels run transformer-retrieval --seeds 100-107 --out runs/heldout/transformer-retrieval
       (the same for transformer-rope, -multi-pair, -full, -control)
       python experiments/transformer_runs_summary.py --runs runs/heldout
"""

import argparse
import json
from pathlib import Path

import numpy as np

PRESETS = ("transformer-retrieval", "transformer-rope", "transformer-multi-pair",
           "transformer-full", "transformer-control")
BAR = 0.9
TOL = 1e-4
"""A head within this of its rotated range's ends counts as inside: at rank one the range is
the head's own value, computed once in float32 and once in float64."""

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--runs", default="runs", type=Path)
args = parser.parse_args()


def rng(values, fmt="{:.3f}"):
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    lo, hi = min(values), max(values)
    return fmt.format(lo) + "–" + fmt.format(hi)


def best_of(inst):
    b = inst["best_head"] or {"layer": inst["heads"][0]["layer"],
                              "head": inst["heads"][0]["head"]}
    return next(h for h in inst["heads"] if (h["layer"], h["head"]) == (b["layer"], b["head"]))


def count(values, bar=BAR):
    values = [v for v in values if v is not None]
    return f"{sum(v >= bar for v in values)} of {len(values)}" if values else "–"


for name in PRESETS:
    run = args.runs / name
    if not (run / "summary.json").is_file():
        print(f"## {name}: no run at {run}\n")
        continue
    summary = json.loads((run / "summary.json").read_text())
    timing = json.loads((run / "timing.json").read_text())
    insts = [i for i in summary["instances"] if i.get("diverged_step") is None]
    cfg = summary["config"]
    bests = [best_of(i) for i in insts]
    asks = any(b["accuracy"] is not None for b in bests)
    print(f"## {name}: seeds {[i['seed'] for i in summary['instances']]}, {cfg['steps']} steps, "
          f"training {timing['train_seconds']:.0f} s, {len(insts)} not diverged")
    print(f"solved: {sum(bool(i['solved']) for i in insts)} of {len(insts)}")
    if asks:
        print(f"best head's accuracy {rng([b['accuracy'] for b in bests])}")
    for key, label in (("qk_cos_query_u", "QK query side (u)"), ("qk_cos_key_v", "QK key side (v)"),
                       ("qk_matched", "QK matched"), ("ov_matched", "OV matched"),
                       ("qk_foil_matched", "QK foil (random twin)"),
                       ("qk_foil_cos_query_u", "QK foil query side"),
                       ("qk_foil_cos_key_v", "QK foil key side"),
                       ("ov_foil_matched", "OV foil (random twin)"),
                       ("qk_baseline_low", "QK rotated twin 5%"),
                       ("qk_baseline_high", "QK rotated twin 95%"),
                       ("qk_sigma_1", "QK σ1"), ("qk_n_significant", "QK significant σ")):
        print(f"best head {label}: {rng([b.get(key) for b in bests])}")
    for key in ("qk_matched", "ov_matched", "qk_foil_matched", "ov_foil_matched",
                "qk_baseline_high"):
        print(f"best head {key} >= {BAR}: {count([b.get(key) for b in bests])}")
    print("per seed, best head QK matched: " + ", ".join(
        f"{i['seed']}: {b['qk_matched']:.3f}" for i, b in zip(insts, bests)))
    print("per seed, solving heads: " + ", ".join(
        f"{i['seed']}: {len(i['solving_heads'])}" for i in insts))
    others = [h for i, b in zip(insts, bests) for h in i["heads"] if h is not b]
    if others:
        print(f"other heads: accuracy {rng([h['accuracy'] for h in others])}, QK matched "
              f"{rng([h['qk_matched'] for h in others])}, foil {rng([h.get('qk_foil_matched') for h in others])}")
    heads = [h for i in insts for h in i["heads"]]
    above = sum(h["qk_matched"] > h["qk_baseline_high"] + TOL for h in heads)
    below = sum(h["qk_matched"] < h["qk_baseline_low"] - TOL for h in heads)
    print(f"all {len(heads)} heads: QK matched {rng([h['qk_matched'] for h in heads])}, σ1 "
          f"{rng([h['qk_sigma_1'] for h in heads], '{:.3g}')}; against their rotated range: "
          f"{len(heads) - above - below} inside, {below} below, {above} above; random twin "
          f"{rng([h.get('qk_foil_matched') for h in heads])}")
    print("per seed, best head QK above its rotated range: " + ", ".join(
        f"{i['seed']}: {b['qk_matched'] > b['qk_baseline_high'] + TOL}"
        for i, b in zip(insts, bests)))
    if cfg["positions"] == "rope":
        with np.load(run / "analysis.npz") as f:
            offsets, cos, logit = f["rope_offsets"], f["rope_qk_cos"], f["rope_planted_logit"]
        idx = [(n, b["layer"], b["head"]) for n, b in enumerate(bests)]
        peak = [int(np.argmax(logit[at])) for at in idx]
        print(f"planted logit largest at δ = {cfg['offset']} in "
              f"{sum(p == cfg['offset'] for p in peak)} of {len(idx)} (argmax {peak})")
        for d in offsets:
            print(f"  δ = {d}: planted logit {rng([logit[at][d] for at in idx], '{:.1f}')}, "
                  f"QK |cos| {rng([cos[at][d] for at in idx], '{:.2f}')}")
    print()
