"""Sparse attention decomposition of all-MiniLM-L6-v2 on 64 IOI prompts (paper Figure 9
analogue): per-head N_recon beside the rotated control, and a layer × head map.

Runs `toymodels sad minilm --prompts ioi:64 --rotations 20 --recon-fracs 0.9,0.99,1 --out
RUNS/sad-minilm` only if that directory holds no result yet; the rotated control is then
measured over 20 Haar draws per head, and every number is read beside the control's 5–95%
over those draws (one draw alone moved the count of heads with median N_recon ≤ 4 by
three). The figures are drawn from its stored tables (`toymodels figures --only
'sad_minilm_*'` draws the same).

usage: python experiments/sad_minilm.py [--runs runs] [--out figures]
"""

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from toymodels.figures import render_script

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--runs", default="runs", type=Path)
parser.add_argument("--out", default="figures", type=Path)
args = parser.parse_args()

run = args.runs / "sad-minilm"
if not (run / "sad.json").exists():
    from toymodels.cli import main
    if main(["sad", "minilm", "--prompts", "ioi:64", "--rotations", "20", "--recon-fracs",
             "0.9,0.99,1", "--out", str(run)]) != 0:
        raise SystemExit(1)

record = json.loads((run / "sad.json").read_text())
timing = json.loads((run / "timing.json").read_text())
o = record["overall"]
print(f"{record['model']} ({record['architecture']}, LayerNorm folded: "
      f"{record['layernorm_folded']}), {record['prompts']['count']} prompts, "
      f"{o['firings']} firings in {o['heads']} heads; decomposition {timing['decompose_s']:.1f} s")
print(f"share of firings with N_recon <= 4: {o['share_n_recon_le4']:.3f} "
      f"(rotated {o['share_n_recon_le4_rot']:.3f})")
print(f"median N_recon {o['median_n_recon']:.0f} (rotated {o['median_n_recon_rot']:.0f}); "
      f"median sparseness {o['median_sparseness']:.3f} (rotated {o['median_sparseness_rot']:.3f})")
print(f"heads with median N_recon <= 4: {o['heads_median_n_recon_le4']} of "
      f"{o['heads_with_firings']} (rotated {o['heads_median_n_recon_rot_le4']})")
spread = record.get("rotations")
if spread:
    print(f"\nthe rotated control over {spread['draws']} Haar draws, 5% / 50% / 95%:")
    for k, trained in (("share_n_recon_le4_rot", o["share_n_recon_le4"]),
                       ("median_n_recon_rot", o["median_n_recon"]),
                       ("median_sparseness_rot", o["median_sparseness"]),
                       ("heads_median_n_recon_rot_le4", o["heads_median_n_recon_le4"]),
                       *((f"median_n_recon_rot_at_{f:g}", o[f"median_n_recon_at_{f:g}"])
                         for f in record["options"]["recon_fracs"])):
        q = spread[k]["q"]
        print(f"  {k.replace('_rot', ''):<28} heads {trained:8.3f}   rotated "
              f"{q[0]:.3f} / {q[1]:.3f} / {q[2]:.3f}")

heads = pq.read_table(run / "heads.parquet").to_pydict()
n = max(heads["head"]) + 1
if "median_n_recon_rot_q05" in heads:
    m, lo, hi = (np.asarray(heads[k]) for k in ("median_n_recon", "median_n_recon_rot_q05",
                                                 "median_n_recon_rot_q95"))
    s, s_lo, s_hi = (np.asarray(heads[k]) for k in (
        "median_sparseness", "median_sparseness_rot_q05", "median_sparseness_rot_q95"))
    print(f"\nper head, against its own control's 5–95% over draws: median N_recon below "
          f"the 5% in {np.sum(m < lo)}, inside in {np.sum((m >= lo) & (m <= hi))}, above the "
          f"95% in {np.sum(m > hi)} of {len(m)} heads; median sparseness below the 5% in "
          f"{np.sum(s < s_lo)}, above the 95% in {np.sum(s > s_hi)}")
    print("\nmedian N_recon per head [rotated 5–95%]; rows = layers, columns = heads")
    for layer in range(max(heads["layer"]) + 1):
        cells = [f"{m[i]:4.1f} [{lo[i]:g}–{hi[i]:g}]" for i in range(len(m))
                 if heads["layer"][i] == layer]
        print(f"L{layer} " + " ".join(cells[:n]))
else:
    print("\nmedian N_recon per head (rotated in brackets); rows = layers, columns = heads")
    for layer in range(max(heads["layer"]) + 1):
        cells = [f"{heads['median_n_recon'][i]:4.1f} ({heads['median_n_recon_rot'][i]:4.1f})"
                 for i in range(len(heads["head"])) if heads["layer"][i] == layer]
        print(f"L{layer} " + " ".join(cells[:n]))

files = [path for name in ("sad_minilm_nrecon", "sad_minilm_heads")
         for path in render_script(name, args.out, runs=args.runs)]
print("\nwrote " + ", ".join(map(str, files)))
