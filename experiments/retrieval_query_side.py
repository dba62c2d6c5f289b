"""Transformer retrieval: where the weight of a head's top singular vectors lies.

With a fixed orthonormal frame (N = D, ε = 0) the coordinates of u_1 and v_1 in the
feature basis are exact. Prints, per instance and head, the squared weight of u_1 on the
query feature, the key feature, the value features and the background features, and the
same for v_1. Reads the stored run only.

usage: toymodels run transformer-retrieval --seeds 0-7 --out runs/transformer-retrieval
       python experiments/retrieval_query_side.py [--run runs/transformer-retrieval]
"""

import argparse
import json
from pathlib import Path

import numpy as np

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--run", default="runs/transformer-retrieval", type=Path)
args = parser.parse_args()

summary = json.loads((args.run / "summary.json").read_text())
cfg = summary["config"]
if cfg["embedding"] != "fixed" or cfg["N"] != cfg["D"] or cfg["anisotropy"]:
    raise SystemExit("needs a fixed orthonormal frame (embedding=fixed, N = D, anisotropy 0)")
with np.load(args.run / "params.npz", allow_pickle=False) as f:
    params = {k: f[k] for k in f.files}
groups = {"query": [p[0] for p in cfg["pairs"]], "key": [p[1] for p in cfg["pairs"]],
          "value": cfg["value_features"]}
groups["background"] = [i for i in range(cfg["N"]) if not any(i in g for g in groups.values())]
print(f"{'seed':>4} {'head':>5}  " + "  ".join(f"u:{g[:5]:>5}" for g in groups) + "   "
      + "  ".join(f"v:{g[:5]:>5}" for g in groups))
for n, inst in enumerate(summary["instances"]):
    E = params["E"][n].astype(np.float64)
    for layer in range(cfg["n_layers"]):
        for head in range(cfg["n_heads"]):
            Omega = params["W_Q"][n, layer, head].T.astype(np.float64) @ \
                params["W_K"][n, layer, head]
            U, _, Vt = np.linalg.svd(Omega)
            cu, cv = (E.T @ U[:, 0]) ** 2, (E.T @ Vt[0]) ** 2
            print(f"{inst['seed']:>4} {layer}.{head:<3}  "
                  + "  ".join(f"{cu[g].sum():>7.2f}" for g in groups.values()) + "   "
                  + "  ".join(f"{cv[g].sum():>7.2f}" for g in groups.values()))
