"""How much of the toy transformer's QK alignment, and of its query/key asymmetry, is the
optimizer's basis (issue 19, item 5)?

The retrieval task is trained with three optimizers (AdamW; AdamW in a fixed random basis;
SGD with momentum) on two fixed frames (features in a random orthonormal frame; feature i
on axis i), on held-out seeds 100-107 (the presets were designed on seeds 0-7; SGD's rate
was chosen on seeds 0-3). For the head that solves the task (attention accuracy >= 0.9), else the
best head, it reads, from the stored runs:

  query, key     matched |cos| of u₁ with E_q and v₁ with E_k (the QK template's sides)
  ov             matched |cos| of OV with the value features
  self           E_qᵀ Ω E_q / √H: how the head scores the query token itself, a part of
                 the solution the QK template leaves out (the query must not read itself)
  off-template   ‖Ω_f − Ω_f[q, k] e_q e_kᵀ‖_F / ‖Ω_f‖_F with Ω_f = Eᵀ Ω E: the share of Ω
                 (in feature coordinates) outside the planted entry

  python experiments/optimizer_frame.py --train    # trains the missing runs (minutes each)
  python experiments/optimizer_frame.py            # table + figure from the stored runs

The runs, their commands and the measurements are toymodels.figures.OPTIMIZERS / FRAMES
and toymodels.plots.studies.optimizer_frame_rows; `toymodels figures --only
optimizer_frame` draws the same figure.
"""

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from toymodels.figures import (FRAMES, OPTIMIZERS, optimizer_frame_command, optimizer_frame_dir,
                               render_script)

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "optimizer-frame"  # --runs moves it


def train_missing(runs: Path) -> None:
    for optimizer in OPTIMIZERS:
        for frame in FRAMES:
            out = optimizer_frame_dir(runs, optimizer, frame)
            if (out / "summary.json").is_file():
                continue
            cmd = [sys.executable, "-m", "toymodels",
                   *optimizer_frame_command(out, optimizer, frame), "--no-progress"]
            print(" ".join(cmd[1:]), flush=True)
            subprocess.run(cmd, check=True, cwd=ROOT)


def summarize(rows: list[dict]) -> list[dict]:
    out = []
    for optimizer in OPTIMIZERS:
        for frame in FRAMES:
            mine = [r for r in rows if (r["optimizer"], r["frame"]) == (optimizer, frame)]
            if not mine:
                continue
            row = {"optimizer": optimizer, "frame": frame, "seeds": len(mine),
                   "solved": sum(bool(r["solved"]) for r in mine)}
            for key in ("task_loss", "accuracy", "query", "key", "ov", "self", "off_template"):
                values = np.array([np.nan if r[key] is None else r[key] for r in mine])
                row[key] = (float(np.nanmin(values)), float(np.nanmax(values)))
            out.append(row)
    return out


def markdown(summary: list[dict]) -> str:
    lines = ["| optimizer | frame | a head solves | task loss (max) | attention accuracy | "
             "QK query side | QK key side | OV | self E_qᵀΩE_q/√H | off-template share |",
             "|---" * 10 + "|"]
    for r in summary:
        cells = [f"{r['task_loss'][1]:.1e}"] + [
            f"{lo:.3f}–{hi:.3f}" for lo, hi in
            (r[k] for k in ("accuracy", "query", "key", "ov", "self", "off_template"))]
        lines.append(f"| {r['optimizer']} | {r['frame']} | {r['solved']}/{r['seeds']} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    from toymodels.plots.studies import optimizer_frame_rows

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", action="store_true", help="train the missing runs first")
    parser.add_argument("--runs", type=Path, default=RUNS, help=f"stored runs (default {RUNS})")
    parser.add_argument("--out", type=Path, default=ROOT / "figures",
                        help="where the figure goes (default figures/)")
    args = parser.parse_args()
    runs = args.runs
    if args.train:
        train_missing(runs)
    missing = [optimizer_frame_dir(runs, o, f) for o in OPTIMIZERS for f in FRAMES
               if not (optimizer_frame_dir(runs, o, f) / "summary.json").is_file()]
    if missing:
        sys.exit(f"missing runs: {', '.join(map(str, missing))}; make them with "
                 "python experiments/optimizer_frame.py --train")
    rows = optimizer_frame_rows(runs)
    with open(runs / "optimizer_frame.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = summarize(rows)
    (runs / "optimizer_frame.json").write_text(json.dumps(summary, indent=1))
    render_script("optimizer_frame", args.out, paths={
        f"{o}-{f}": optimizer_frame_dir(runs, o, f) for o in OPTIMIZERS for f in FRAMES})
    print(markdown(summary))


if __name__ == "__main__":
    main()
