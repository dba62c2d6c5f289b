"""Transformer multi-pair: which part of the planted pairing does a head's QK identify?

The task fixes, for each query feature i_p, which key feature wins; adding to Ω anything
that raises every key feature equally for a query leaves the loss unchanged (every
earlier token carries exactly one key feature). So the prediction is that the head's top
P − 1 singular vectors span the *centred* key features E_j − mean_q E_j (and the same on
the query side), while the raw 6-dimensional span and the basis inside it are free.
Reads the stored run only.

usage: toymodels run transformer-multi-pair --seeds 0-7 --out runs/transformer-multi-pair
       python experiments/multi_pair_span.py [--run runs/transformer-multi-pair]
"""

import argparse
import json
from pathlib import Path

import numpy as np

from toymodels.plots.studies import smallest_principal_cos

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--run", default="runs/transformer-multi-pair", type=Path)
args = parser.parse_args()

summary = json.loads((args.run / "summary.json").read_text())
with np.load(args.run / "params.npz", allow_pickle=False) as f:
    params = {k: f[k] for k in f.files}
cfg = summary["config"]
queries = [p[0] for p in cfg["pairs"]]
keys = [p[1] for p in cfg["pairs"]]
r = len(queries) - 1  # the identified dimensions


print(f"{'seed':>4} {'head':>5} {'σ_k/σ_1 (k = 1..7)':<40} {'raw key span':>12} "
      f"{'centred query':>13} {'centred key':>11}")
for n, inst in enumerate(summary["instances"]):
    b = inst.get("best_head") or inst["solving_head"]
    layer, head = b["layer"], b["head"]
    E = params["E"][n].astype(np.float64)
    Omega = params["W_Q"][n, layer, head].T.astype(np.float64) @ params["W_K"][n, layer, head]
    U, S, Vt = np.linalg.svd(Omega)
    E_q, E_k = E[:, queries], E[:, keys]
    centred_q = (E_q - E_q.mean(1, keepdims=True))[:, :r]  # r independent centred columns
    centred_k = (E_k - E_k.mean(1, keepdims=True))[:, :r]
    n_sig = int((S > 0.01 * S[0]).sum())
    print(f"{inst['seed']:>4} {layer}.{head:<3} {str(np.round(S[:7] / S[0], 2)):<40} "
          f"{smallest_principal_cos(E_k, Vt[:n_sig].T):>12.3f} "
          f"{smallest_principal_cos(centred_q, U[:, :r]):>13.3f} "
          f"{smallest_principal_cos(centred_k, Vt[:r].T):>11.3f}")
