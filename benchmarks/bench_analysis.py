"""Analysis throughput: toymodels' batched jit analysis against a per-head NumPy loop.

The loop is what per-head tools do: for each head, form the dense D×D matrix Ω, take
NumPy's SVD, and compute the same metrics one head at a time (head_rows.py, the
definitions the library's batched tables are tested against). The library decomposes
every head in one compiled call and computes the tables over all heads at once
(batched_rows.py). The loop is timed with OpenBLAS's default threads and with one
(toymodels' setting, blas.py), and the faster counts. Also times training with and
without metrics recorded at 100 points (the in-loop dynamics).

usage: python benchmarks/bench_analysis.py [--heads 10000] [--shapes 384x32,50x50]
                                           [--loop-heads N] [--skip-dynamics]
"""

import argparse
import time

import jax
import numpy as np

from toymodels.analysis.svd import DEFAULT_REL_TOL
from toymodels.blas import one_blas_thread
from toymodels.analysis.alignment import analyze
from toymodels.analysis.head_rows import head_rows

N_FEATURES = 64
TEMPLATE = tuple((i, i + 8, 1.0 - 0.1 * i) for i in range(8))


def numpy_loop(W, W_Q, W_K, seed=0):
    """Per-head dense SVD and the same metrics, one head at a time."""
    query_set = tuple(dict.fromkeys(i for i, _, _ in TEMPLATE))
    key_set = tuple(dict.fromkeys(j for _, j, _ in TEMPLATE))
    W_unit = W / np.linalg.norm(W, axis=0)
    K = min(W_Q.shape[-2:])
    rng = np.random.default_rng(seed)
    rows = []
    for n in range(W_Q.shape[0]):
        U, S, V_t = np.linalg.svd(W_Q[n].T @ W_K[n])
        U, S, V = U[:, :K], S[:K], V_t[:K].T
        sig = S > DEFAULT_REL_TOL * S[0]
        r = int(sig.sum())
        rot = []
        for _ in range(2):  # Haar rotations inside the significant span
            q, t = np.linalg.qr(rng.normal(size=(r, r)))
            R = np.eye(K)
            R[:r, :r] = q * np.sign(np.diag(t))
            rot.append(R)
        head = {"S": S, "significant": sig,
                "cos_u": np.abs(W_unit.T @ U), "cos_v": np.abs(W_unit.T @ V),
                "cos_u_rot": np.abs(W_unit.T @ U @ rot[0]),
                "cos_v_rot": np.abs(W_unit.T @ V @ rot[1])}
        for side, feats, vecs in (("query", query_set, U), ("key", key_set, V)):
            q_f, _ = np.linalg.qr(W[:, feats])
            P = min(len(feats), K)
            head[f"principal_cos_{side}"] = np.linalg.svd(
                q_f.T @ (vecs[:, :P] * sig[:P]), compute_uv=False)[:P]
        dead = np.zeros(W.shape[1], bool)  # the benchmark's features are all alive
        rows.append(head_rows(head, TEMPLATE, query_set, key_set, dead)[0])
    return rows


def bench_shape(D, H, heads, loop_heads):
    rng = np.random.default_rng(0)
    W = rng.normal(size=(D, N_FEATURES)).astype(np.float32)
    W_Q = rng.normal(size=(heads, H, D)).astype(np.float32)
    W_K = rng.normal(size=(heads, H, D)).astype(np.float32)
    analyze(W, W_Q=W_Q[:heads], W_K=W_K[:heads], template=TEMPLATE, axes=("head",),
            layout="toymodels")  # compile
    t0 = time.perf_counter()
    lib = analyze(W, W_Q=W_Q, W_K=W_K, template=TEMPLATE, axes=("head",),
                  layout="toymodels")
    t_lib = time.perf_counter() - t0  # analyze returns host arrays: the work is done

    t_loops = {}
    for threads, fn in (("default", numpy_loop), ("one", one_blas_thread(numpy_loop))):
        t0 = time.perf_counter()
        loop = fn(W, W_Q[:loop_heads], W_K[:loop_heads])
        t_loops[threads] = (time.perf_counter() - t0) * heads / loop_heads
    t_loop = min(t_loops.values())
    # Same numbers from both routes (first heads, float32 vs float64-ish tolerance).
    for a, b in zip(lib.heads[:20], loop[:20]):
        assert abs(a["sigma_1"] - b["sigma_1"]) <= 1e-4 * b["sigma_1"]
        assert abs(a["mmcs_query_u"] - b["mmcs_query_u"]) <= 1e-3
    scaled = "" if loop_heads == heads else f" (timed {loop_heads}, scaled)"
    print(f"D={D:<4} H={H:<3} {heads} heads: library {t_lib:8.2f} s   NumPy loop "
          f"{t_loop:8.2f} s{scaled}   library is {t_loop / t_lib:6.1f}x faster   (loop with "
          f"default / one BLAS thread: {t_loops['default']:.2f} / {t_loops['one']:.2f} s)",
          flush=True)


def bench_dynamics(steps=2000):
    from toymodels.configs import make_instances, preset
    from toymodels.training.loop import train

    base = preset("single-pair").replace(steps=steps, record_spacing="linear")
    insts = make_instances(base, range(8))
    times = {}
    for points in (0, 100, 0, 100):  # interleaved; the first pair warms the compile cache
        cfg = base.replace(record_points=points)
        t0 = time.perf_counter()
        train(cfg, insts, progress=False)
        times.setdefault(points, []).append(time.perf_counter() - t0)
    plain, rec = times[0][-1], times[100][-1]
    print(f"single-pair training, 8 instances x {steps} steps: {plain:.2f} s plain, "
          f"{rec:.2f} s recording 100 points: {100 * (rec / plain - 1):+.1f}% time", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heads", type=int, default=10_000)
    parser.add_argument("--shapes", default="384x32,50x50")
    parser.add_argument("--loop-heads", type=int, default=None,
                        help="time the NumPy loop on this many heads and scale up")
    parser.add_argument("--skip-dynamics", action="store_true")
    args = parser.parse_args()
    print(f"device {jax.devices()[0].platform}; {N_FEATURES} features, {len(TEMPLATE)} pairs")
    for shape in args.shapes.split(","):
        D, H = (int(x) for x in shape.split("x"))
        bench_shape(D, H, args.heads, args.loop_heads or args.heads)
    if not args.skip_dynamics:
        bench_dynamics()


if __name__ == "__main__":
    main()
