"""How much of the toy transformer's QK alignment, and of its query/key asymmetry, is the
optimizer's basis (issue 19, item 5)?

Three tasks (retrieval, RoPE, multi-pair) are trained with three optimizers (AdamW; AdamW
in a fixed random basis; SGD with momentum) on two fixed frames (features in a random
orthonormal frame; feature i on axis i), on held-out seeds (the presets were designed on
seeds 0-7; SGD's rate was chosen on seeds 0-3). For the head that solves the task (attention
accuracy >= 0.9), else the best head, it reads, from the stored runs:

  query, key     matched |cos| of u₁ with E_q and v₁ with E_k (the QK template's sides;
                 RoPE: of Ω_δ = W_Qᵀ R_{−δ} W_K at the task's offset δ = 3)
  span           (multi-pair) the smallest principal cosine of the top P − 1 singular
                 vectors with the centred query (key) features: the task fixes Ω only up
                 to shifts that move all keys of a query together, so this is its yardstick
  ov             matched |cos| of OV with the value features
  OV gain        mean over value features of E_vᵀ OV E_v / g_v, this head's and the other
                 heads' summed (1 and 0 for a head that carries the planted map alone)
  self           E_qᵀ Ω E_q / √H (RoPE: of Ω_δ; self_0 of Ω_0, the query token's score of
                 itself): a part of the solution the QK template leaves out
  off-template   the share of ‖Ω_f‖_F, Ω_f = Eᵀ Ω E, outside the planted entries (q_p, k_p);
                 multi-pair: outside the centred template, after removing what the task
                 leaves free (toymodels.plots.studies.off_template_share)
  verdict        QK aligned: min(query, key) >= 0.9 (multi-pair: min of the two spans),
                 beside its foil, a random head of the same rank and norm, which must fail
                 it (a foil that passes is printed as a DEFECT and the script exits 1)

  python experiments/optimizer_frame.py --train [--task rope]  # trains the missing runs
  python experiments/optimizer_frame.py [--task rope]          # tables + figures, stored runs
  python experiments/optimizer_frame.py --measure RUN_DIR      # the same numbers, any one run

The runs, their commands and the measurements are toymodels.figures.OPTIMIZER_FRAME_TASKS,
OPTIMIZERS, FRAMES and toymodels.plots.studies.optimizer_frame_rows; `toymodels figures
--only 'optimizer_frame*'` draws the same figures.
"""

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from toymodels.figures import (FRAMES, OPTIMIZER_FRAME_TASKS, OPTIMIZERS,
                               optimizer_frame_command, optimizer_frame_dir, render_script)

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "optimizer-frame"  # --runs moves it
FIGURE = {"retrieval": "optimizer_frame", "rope": "optimizer_frame_rope",
          "multi-pair": "optimizer_frame_multi_pair"}
COLUMNS = {  # task: the table's (row key, heading), after optimizer, frame, verdicts
    "retrieval": (("task_loss", "task loss (max)"), ("accuracy", "attention accuracy"),
                  ("query", "QK query side"), ("key", "QK key side"), ("ov", "OV"),
                  ("ov_gain", "OV gain"), ("ov_gain_others", "other head's OV gain"),
                  ("self", "self E_qᵀΩE_q/√H"), ("off_template", "off-template share")),
    "rope": (("task_loss", "task loss (max)"), ("accuracy", "attention accuracy"),
             ("query", "Ω₃ query side"), ("key", "Ω₃ key side"), ("ov", "OV"),
             ("ov_gain", "OV gain"),
             ("self", "self E_qᵀΩ₃E_q/√H"), ("self_0", "self at δ = 0, E_qᵀΩ₀E_q/√H"),
             ("off_template", "off-template share of Ω₃")),
    "multi-pair": (("task_loss", "task loss (max)"), ("accuracy", "attention accuracy"),
                   ("span_query", "centred span, query side"),
                   ("span_key", "centred span, key side"),
                   ("query", "per-pair query side"), ("key", "per-pair key side"),
                   ("qk", "per-pair matched"), ("ov", "OV"), ("ov_gain", "OV gain"),
                   ("ov_gain_others", "other head's OV gain"),
                   ("self", "self, mean E_qᵀΩE_q/√H"),
                   ("off_template", "off the centred template")),
}
FOIL = {"retrieval": ("foil_query", "foil_key"), "rope": ("foil_query", "foil_key"),
        "multi-pair": ("foil_span_query", "foil_span_key")}


def stored(runs: Path, task: str) -> list[Path]:
    """The task's runs that are not stored yet."""
    return [optimizer_frame_dir(runs, o, f, task) for o in OPTIMIZERS for f in FRAMES
            if not (optimizer_frame_dir(runs, o, f, task) / "summary.json").is_file()]


def train_missing(runs: Path, task: str) -> None:
    for optimizer in OPTIMIZERS:
        for frame in FRAMES:
            out = optimizer_frame_dir(runs, optimizer, frame, task)
            if (out / "summary.json").is_file():
                continue
            cmd = [sys.executable, "-m", "toymodels",
                   *optimizer_frame_command(out, optimizer, frame, task), "--no-progress"]
            print(" ".join(cmd[1:]), flush=True)
            subprocess.run(cmd, check=True, cwd=ROOT)


def _range(rows, key):
    values = np.array([np.nan if r.get(key) is None else r[key] for r in rows], float)
    if np.all(np.isnan(values)):
        return None
    return float(np.nanmin(values)), float(np.nanmax(values))


def summarize(rows: list[dict], task: str = "retrieval") -> list[dict]:
    out = []
    for optimizer in OPTIMIZERS:
        for frame in FRAMES:
            mine = [r for r in rows if (r["optimizer"], r["frame"]) == (optimizer, frame)]
            if not mine:
                continue
            row = {"task": task, "optimizer": optimizer, "frame": frame, "seeds": len(mine),
                   "solved": sum(bool(r["solved"]) for r in mine),
                   "aligned": sum(bool(r.get("aligned")) for r in mine),
                   "foil_aligned": sum(bool(r.get("foil_aligned")) for r in mine),
                   "diverged": sum("diverged_step" in r for r in mine)}
            for key in ({k for k, _ in COLUMNS[task]} | set(FOIL[task])
                        | {"foil_off_template", "score", "foil_score"}):
                row[key] = _range(mine, key)
            if task == "multi-pair":
                row["above_rotated"] = sum(bool(r.get("above_rotated")) for r in mine)
                row["rotated"] = (_range(mine, "rotated_low")[0], _range(mine, "rotated_high")[1])
            out.append(row)
    return out


NAMES = {"adamw": "AdamW", "adamw_rotated": "AdamW, rotated basis", "sgd": "SGD (momentum 0.9)"}


def _cell(r, key):
    if r[key] is None:
        return "–"
    if key == "task_loss":
        return f"{r[key][1]:.1e}"
    lo, hi = r[key]
    return f"{lo:.3f}–{hi:.3f}".replace("-", "−")


def markdown(summary: list[dict], task: str = "retrieval") -> str:
    fq, fk = FOIL[task]
    side = "spans" if task == "multi-pair" else "sides"
    heads = ["optimizer", "frame", "a head solves (≥ 0.9)",
             f"QK aligned (both {side} ≥ 0.9)", "foil aligned (its best)"]
    heads += [h for _, h in COLUMNS[task]]
    if task == "multi-pair":
        heads += ["per-pair above its rotated twin's range (5–95%)"]
    lines = ["| " + " | ".join(heads) + " |", "|---" * len(heads) + "|"]
    for r in summary:
        n = r["seeds"]
        foil = f"{r['foil_aligned']}/{n} (≤ {r['foil_score'][1]:.2f})" if r[fq] else "–"
        cells = [NAMES[r["optimizer"]], r["frame"], f"{r['solved']}/{n}",
                 f"{r['aligned']}/{n}", foil] + [_cell(r, k) for k, _ in COLUMNS[task]]
        if task == "multi-pair":
            cells.append(f"{r['above_rotated']}/{n} ({r['rotated'][0]:.2f}–"
                         f"{r['rotated'][1]:.2f})")
        if r["diverged"]:
            cells[2] += f" ({r['diverged']} diverged)"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def measure_one(run_dir: Path) -> None:
    from toymodels.plots.studies import optimizer_frame_measure, optimizer_frame_task
    from toymodels.rundir import load_run

    run = load_run(run_dir)
    task = optimizer_frame_task(run.config)
    rows = [optimizer_frame_measure(run, i) for i in range(len(run.summary["instances"]))]
    keys = ["seed", "solved", "task_loss"] + [k for k, _ in COLUMNS[task][1:]] + [
        "score", "foil_score"]
    print(f"{run_dir} ({task}): " + ", ".join(keys))
    for r in rows:
        print("  " + "  ".join(f"{k}={r.get(k):.4g}" if isinstance(r.get(k), float)
                               else f"{k}={r.get(k)}" for k in keys))
    for k in keys[3:]:
        r = _range(rows, k)
        if r:
            print(f"  {k}: {r[0]:.3f}–{r[1]:.3f}")


def main():
    from toymodels.plots.studies import optimizer_frame_rows

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", action="store_true", help="train the missing runs first")
    parser.add_argument("--task", choices=[*OPTIMIZER_FRAME_TASKS, "all"], default="all",
                        help="which task (default all: every task whose runs are all stored; "
                             "with --train, every task)")
    parser.add_argument("--runs", type=Path, default=RUNS, help=f"stored runs (default {RUNS})")
    parser.add_argument("--out", type=Path, default=ROOT / "figures",
                        help="where the figures go (default figures/)")
    parser.add_argument("--measure", type=Path, metavar="RUN_DIR",
                        help="print the study's numbers for each instance of one stored "
                             "toy-transformer run (e.g. a longer run of one cell) and exit")
    args = parser.parse_args()
    if args.measure:
        measure_one(args.measure)
        return
    runs = args.runs
    tasks = list(OPTIMIZER_FRAME_TASKS) if args.task == "all" else [args.task]
    if args.train:
        for task in tasks:
            train_missing(runs, task)
    missing = {task: stored(runs, task) for task in tasks}
    ready = [t for t in tasks if not missing[t]]
    for task in tasks:
        if missing[task]:
            print(f"{task}: missing runs {', '.join(map(str, missing[task]))}; make them with "
                  f"python experiments/optimizer_frame.py --train --task {task}",
                  file=sys.stderr)
    if not ready or (args.task != "all" and missing[args.task]):
        sys.exit(2)
    defects = []
    for task in ready:
        rows = optimizer_frame_rows(runs, task)
        where = runs if task == "retrieval" else runs / task
        fields = list(dict.fromkeys(k for r in rows for k in r))
        with open(where / "optimizer_frame.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        summary = summarize(rows, task)
        (where / "optimizer_frame.json").write_text(json.dumps(summary, indent=1))
        render_script(FIGURE[task], args.out, paths={
            f"{o}-{f}": optimizer_frame_dir(runs, o, f, task) for o in OPTIMIZERS for f in FRAMES})
        seeds = OPTIMIZER_FRAME_TASKS[task].seeds
        print(f"\n{task} ({OPTIMIZER_FRAME_TASKS[task].preset}, seeds {seeds}):\n")
        print(markdown(summary, task))
        defects += [f"{task} {r['optimizer']}-{r['frame']} seed {r['seed']}" for r in rows
                    if r.get("foil_aligned")]
    if defects:
        print(f"\nDEFECT: the foil passes the verdict in {', '.join(defects)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
