# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # toymodels in a notebook
#
# Train the paper's toy model and a toy transformer, read what they learned as pandas
# tables, plot inline, analyse weights of your own, run a small sweep, and read a row of
# the theory table. Every cell runs on a laptop CPU in seconds to a minute.
#
# (This notebook is paired with `docs/tutorial.py`, which the test suite runs at tiny sizes
# with `TOYMODELS_TUTORIAL_TINY=1`; edit the `.py` and regenerate the notebook with
# `python scripts/notebook.py`.)

# %%
import os
import tempfile

import numpy as np
import pandas as pd

import toymodels

TINY = os.environ.get("TOYMODELS_TUTORIAL_TINY") == "1"
STEPS = 250 if TINY else 3000  # the presets train 5000 steps; 3000 already aligns
work = tempfile.mkdtemp(prefix="toymodels-tutorial-")

# %% [markdown]
# ## 1. Train the paper's toy model, in memory
#
# `toymodels.train` takes a preset name (or a config) and trains one instance per seed and
# per combination of `vary`'s values, all vmapped in one compiled program. Nothing is
# written to disk.

# %%
cfg = toymodels.preset("single-pair").replace(steps=STEPS)
run = toymodels.train(cfg, seeds=[0, 1, 2], vary={"lam": [1.0, 10.0]}, progress=False)
pairs = run.tables()["pairs"]  # one row per (instance, planted pair); seed and λ joined in
pairs[["seed", "lam", "sv_index", "cos_query_u", "cos_key_v", "sigma"]]

# %% [markdown]
# Each row says how well the planted pair (feature 0 on the query attends to feature 1 on
# a key) is read off the singular vectors of Ω = W_Qᵀ W_K: |cos| between the query feature
# and u_k, and between the key feature and v_k, at the singular index the Hungarian match
# assigns it. The loss curves are a table too:

# %%
curves = run.tables()["curves"]
curves.groupby(["lam", "step"])[["recon", "attn"]].mean().iloc[-3:]

# %%
toymodels.plot_alignment(run)  # a matplotlib Figure: shown inline, saved only if asked

# %% [markdown]
# ## 2. Save and reload
#
# `run.save(dir)` writes the same run directory `toymodels run` writes; `load_run` reads it
# back into the same `Run` type, with equal tables.

# %%
run.save(f"{work}/single-pair")
again = toymodels.load_run(f"{work}/single-pair")
assert again.tables()["pairs"].equals(pairs)

# %% [markdown]
# ## 3. A toy transformer that has to find the pair itself
#
# Nothing in its loss names the pair: it must retrieve the value features of the token
# whose key feature matches the query's. The analysis finds the head that solves the task
# from its attention accuracy, and scores its QK and OV circuits against the planted
# features, beside the range random rotations of its own singular bases give.

# %%
tcfg = toymodels.preset("transformer-retrieval")
if TINY:
    tcfg = tcfg.replace(steps=60, batch_size=32, chunk_steps=30)
trun = toymodels.train(tcfg, seeds=[0, 1], progress=False)
heads = trun.tables()["heads"]
heads[["seed", "layer", "head", "circuit", "mean_cos_query_u", "mean_cos_key_v", "sigma_1"]]

# %%
toymodels.plot_run(trun)

# %% [markdown]
# ## 4. Analyse weights of your own
#
# `toymodels.analyze` takes any attention weights (toymodels' [H, D] layout here; give
# `layout="transformer_lens"` for TransformerLens' [D, H]) and a feature dictionary
# [D, N]. Here a head whose QK matrix is exactly 3 · w_0 w_1ᵀ:

# %%
features = np.linalg.qr(np.random.default_rng(0).normal(size=(16, 16)))[0]  # [D, N]
W_Q = np.zeros((8, 16))
W_Q[0] = features[:, 0]
W_K = np.zeros((8, 16))
W_K[0] = 3 * features[:, 1]
result = toymodels.analyze(features, W_Q=W_Q, W_K=W_K, template=[(0, 1, 1.0)])
result.to_pandas("pairs")[["sv_index", "cos_query_u", "cos_key_v", "sigma"]]

# %% [markdown]
# ## 5. A small sweep
#
# A sweep trains every point of a grid, one compiled program per shape (λ only rides along
# the vmapped instance axis, so this grid is one program), and writes tidy Parquet tables
# (`toymodels sweep SPEC.toml` does the same from a file).

# %%
from toymodels.sweep import SweepSpec, run_sweep  # noqa: E402

spec = SweepSpec(preset="single-pair", seeds=(3, 4, 5), grid={"lam": [1.0, 10.0]},
                 set={"steps": STEPS})
run_sweep(spec, f"{work}/sweep", progress=False)
results = pd.read_parquet(f"{work}/sweep/results.parquet")
results.groupby("lam")["min_matched_cos"].describe()[["count", "mean", "min"]]

# %% [markdown]
# ## 6. A row of the theory table
#
# `toymodels theory --quick` measures every prediction of the theory beside its predicted
# value, and beside a foil (a wrong model the check must reject). The table it stored for
# the README is in the repository:

# %%
theory = pd.read_csv(os.path.join(os.path.dirname(toymodels.__file__), "..", "benchmarks",
                                  "results", "theory_quick.csv"))
theory.loc[0, ["check", "prediction", "predicted", "measured", "status", "foil",
               "foil_measured", "foil_status", "seeds", "held_out"]]
