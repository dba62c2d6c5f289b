"""Sparse attention decomposition throughput: toymodels' jit, batched kernel against a
per-firing NumPy loop computing the same numbers, in the same process (MiniLM, IOI prompts).

The loop is what a straightforward implementation does: per head, NumPy's SVD of the dense
augmented Ω̃; per prompt, the head's logits and attention; then, per firing, the relative key
x̃_s − mean of the other visible keys, the contributions c_k, N_recon, sparseness and their
rotated twins (in the kernel's bases and rotation R, so that both compute the same numbers). Both
routes start from the same attention inputs (the forward pass is timed separately).

usage: PYTHONPATH=. python benchmarks/bench_sad.py [--prompts 64] [--repeats 3]
"""

import argparse
import time

import numpy as np

from toymodels.analysis import sad
from toymodels.pretrained import load_pretrained
from toymodels.pretrained.prompts import ioi_prompts


def nrecon(c, rel, K):
    reached = np.cumsum(np.sort(c)[::-1]) >= rel - sad.RECON_RTOL * np.abs(c).sum()
    return int(np.argmax(reached)) + 1 if reached.any() else K


def numpy_loop(x, mask, special, W_Q, W_K, b_Q, b_K, result):
    """Per-firing loop; returns {(l, p, h, d, s): (n_recon, sparseness, n_recon_rot)}."""
    L, P, T, D = x.shape
    n, H = W_Q.shape[1:3]
    K = min(H, D + 1)
    out = {}
    ones = np.ones((T, 1), np.float32)
    for l in range(L):
        for h in range(n):
            A = np.concatenate([W_Q[l, h], b_Q[l, h][:, None]], 1) / H ** 0.25
            B = np.concatenate([W_K[l, h], b_K[l, h][:, None]], 1) / H ** 0.25
            U, S, Vt = np.linalg.svd(A.T @ B)
            U, S, V = U[:, :K], S[:K], Vt[:K].T
            for p in range(P):
                xt = np.concatenate([x[l, p], ones], 1)
                logits = (xt @ A.T) @ (xt @ B.T).T
                for d in range(T):
                    vis = np.flatnonzero(mask[p, d])
                    if len(vis) < 2 or special[p, d]:
                        continue
                    z = np.exp(logits[d, vis] - logits[d, vis].max())
                    attn = z / z.sum()
                    for i, s in enumerate(vis):
                        if s == d or special[p, s] or attn[i] < 1 / len(vis):
                            continue
                        others = vis[vis != s]
                        x_rel = xt[s] - xt[others].mean(0)
                        c = S * (xt[d] @ U) * (V.T @ x_rel)
                        rel = c.sum()
                        if rel <= 0:
                            continue
                        # rotated twin in the kernel's bases (signs of u_k, v_k are arbitrary)
                        Ur, Sr, Vr, R = (result.U[l, h], result.S[l, h], result.V[l, h],
                                         result.R[l, h])
                        c_rot = (xt[d] @ Ur @ R) * ((Sr * (Vr.T @ x_rel)) @ R)
                        out[(l, p, h, d, s)] = (nrecon(c, rel, K),
                                                np.abs(c).mean() ** 2 / (c ** 2).mean(),
                                                nrecon(c_rot, rel, K))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    ckpt = load_pretrained("minilm")
    enc = ckpt.encode(ioi_prompts(args.prompts, seed=0))
    ckpt.forward(enc)  # compile
    t = time.perf_counter()
    acts = ckpt.forward(enc)  # returns NumPy arrays: device work is finished
    t_forward = time.perf_counter() - t
    h = ckpt.heads
    run = lambda: sad.decompose(acts.x, acts.mask, h.W_Q, h.W_K, h.b_Q, h.b_K,  # noqa: E731
                                special=enc.special)
    t = time.perf_counter()
    result = run()  # warm-up (compiles)
    t_first = time.perf_counter() - t
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        result = run()  # returns NumPy arrays, so every result is ready (block_until_ready)
        times.append(time.perf_counter() - t)
    t_jax = min(times)
    firings = len(result.firings["rel"])

    t = time.perf_counter()
    loop = numpy_loop(acts.x, acts.mask, enc.special, h.W_Q, h.W_K, h.b_Q, h.b_K, result)
    t_loop = time.perf_counter() - t

    idx = np.argwhere(result.pairs["firing"])
    only_one = len(set(map(tuple, idx.tolist())) ^ set(loop))  # float32 ties at 1/n or rel = 0
    keys = np.array([k for k in loop if result.pairs["firing"][k]], dtype=np.int64).reshape(-1, 5).T
    mine = np.stack([result.lookup(k, *keys) for k in ("n_recon", "n_recon_rot")], 1)
    theirs = np.array([(loop[k][0], loop[k][2]) for k in map(tuple, keys.T.tolist())]).reshape(-1, 2)
    agree = np.mean(np.all(mine == theirs, axis=1)) if loop else float("nan")
    print(f"MiniLM, {args.prompts} IOI prompts, {h.W_Q.shape[0] * h.W_Q.shape[1]} heads, "
          f"{enc.ids.shape[1]} tokens (padded)")
    print(f"forward pass (compiled)         {t_forward:8.2f} s")
    print(f"toymodels sad, first call       {t_first:8.2f} s  (includes compile)")
    print(f"toymodels sad, compiled (best of {args.repeats}) {t_jax:8.2f} s  "
          f"{firings} firings, {firings / t_jax:,.0f} firings/s")
    print(f"NumPy per-firing loop           {t_loop:8.2f} s  {len(loop)} firings, "
          f"{len(loop) / t_loop:,.0f} firings/s")
    print(f"firings found by one route only: {only_one}; on the {keys.shape[1]} common "
          f"firings N_recon and rotated N_recon agree on {100 * agree:.2f}%")
    print(f"ratio loop / toymodels          {t_loop / t_jax:8.1f}x")


if __name__ == "__main__":
    main()
