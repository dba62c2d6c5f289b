#!/usr/bin/env bash
# One lent-GPU session (device tool): versions, the multi-pair hyperparameter search
# sweep, then the training and analysis benchmarks. Writes everything under $OUT.
# usage (on the device machine, repo root): bash benchmarks/gpu_session.sh
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
log() { echo "== $*"; }
log versions
nvidia-smi -L
python3 -c "import jax, flax, optax, numpy; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'numpy', numpy.__version__, jax.devices())"

log multi-pair search sweep
timeout ${SWEEP_TIMEOUT:-330} python3 -m toymodels sweep ${SPEC:-experiments/sweeps/multi_pair_search3.toml} \
    --out /tmp/mp_search 2>&1 | grep -v '%|' | tee "$OUT/search.log"
# Whatever groups finished (also if the timeout hit), as two tables.
python3 - <<'PY'
import glob, os, pandas as pd
out = os.environ["OUT"]
for kind, pat in (("rows", "[0-9a-f]*[0-9a-f].parquet"), ("pairs", "*.pairs.parquet")):
    files = [f for f in sorted(glob.glob(f"/tmp/mp_search/groups/{pat}")) if kind == "pairs" or ".pairs." not in f]
    if files:
        pd.concat([pd.read_parquet(f) for f in files]).to_parquet(f"{out}/search_{kind}.parquet")
        print(kind, len(files), "groups")
PY
cp /tmp/mp_search/manifest.json "$OUT/search_manifest.json" 2>/dev/null

[ -n "${SKIP_BENCH:-}" ] && { log done; exit 0; }
log bench_train
# PEAK_TFLOPS: the float32 (CUDA-core) peak, 67 for an H100 or H200 SXM
timeout 200 python3 benchmarks/bench_train.py --instances 1,64,1024,4096 --steps 500 --repeats 2 \
    --peak-tflops ${PEAK_TFLOPS:-67} 2>&1 | tee "$OUT/bench_train.log"
log bench_analysis
timeout 90 python3 benchmarks/bench_analysis.py --heads 10000 --loop-heads 300 --skip-dynamics 2>&1 | tee "$OUT/bench_analysis.log"
log done
