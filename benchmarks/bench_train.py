"""Training throughput against the number of vmapped instances, in one process.

Compiles each instance count once (warm-up), then times whole train() calls, which
return host arrays (so the device work is finished). Prints ms per step, instance-steps
per second, the ratio to the 1-instance throughput and per-instance cost against 1.

--against torch also times the same math as a plain batched PyTorch loop
(benchmarks/torch_toy.py: instances in one tensor, torch.optim.AdamW), in interleaved
rounds (jax, torch, jax, torch, ...) so that load on the machine hits both alike, and
prints the ratio of best times. torch comes from the optional `bench` extra.

The GFLOP/s column counts the matrix products of a step (forward and backward, in the
contraction order the model takes: models/toy.py's multiply-add counts, x2), not the
elementwise work, sampling or AdamW. With --peak-tflops (the device's float32 peak,
e.g. 67 for an H100 SXM's CUDA cores) it also prints the achieved fraction of it.

usage: python benchmarks/bench_train.py [--preset single-pair] [--instances 1,16,64,256]
                                        [--steps 500] [--repeats 3] [--against torch]
                                        [--peak-tflops T]
"""

import argparse
import time

import jax

from toymodels.configs import make_instances, preset
from toymodels.models.toy import logit_macs, reconstruction_macs
from toymodels.training.loop import train


def matmul_flops(cfg) -> int:
    """FLOPs of one instance's step in matrix products: the reconstruction of the
    batch's B(m + 1) tokens, the head's logits and the targets' f_qᵀ T f_j (forward
    only), each in the order the model takes."""
    B = cfg.batch_size
    macs = (min(reconstruction_macs(cfg.N, cfg.D, tokens=B * (cfg.m + 1)))
            + min(logit_macs(cfg.N, cfg.D, cfg.H, cfg.m, queries=B))
            + B * (cfg.N * cfg.N + cfg.m * cfg.N))
    return 2 * macs


def jax_timer(cfg, n_instances: int):
    instances = make_instances(cfg, range(n_instances))
    train(cfg, instances, progress=False)  # compiles; the program is cached for the reruns

    def run():
        t0 = time.perf_counter()
        train(cfg, instances, progress=False)  # returns host arrays: the work is done
        return time.perf_counter() - t0
    return run


def torch_timer(cfg, n_instances: int):
    import torch

    from torch_toy import TorchToy

    model = TorchToy(cfg, n_instances)
    model.train(2)  # warm-up: allocator and kernels

    def run():
        t0 = time.perf_counter()
        model.train(cfg.steps)
        return time.perf_counter() - t0
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="single-pair")
    parser.add_argument("--instances", default="1,16,64,256")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--against", choices=["torch"], default=None)
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's float32 peak, for the fraction achieved")
    args = parser.parse_args()
    counts = [int(n) for n in args.instances.split(",")]
    cfg = preset(args.preset).replace(steps=args.steps, chunk_steps=args.steps,
                                      record_points=0)
    toy = hasattr(cfg, "template")  # GFLOP/s is counted for the toy model only
    if args.against and not toy:
        parser.error("--against torch times the toy model only (a toy preset)")
    print(f"{args.preset}: N={cfg.N} D={cfg.D} H={getattr(cfg, 'H', '-')} "
          f"m={getattr(cfg, 'm', '-')} batch={cfg.batch_size}, {args.steps} steps per timing, "
          f"best of {args.repeats}, device {jax.devices()[0].platform}")
    head = (f"{'instances':>9} {'ms/step':>9} {'inst-steps/s':>13} {'vs 1 instance':>14}"
            f" {'GFLOP/s':>8}" + (f" {'of peak':>8}" if args.peak_tflops else ""))
    if args.against:
        import torch
        head += f" {'torch inst-steps/s':>19} {'jax/torch':>10}"
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(head)
    base = None
    for n in counts:
        timers = {"jax": jax_timer(cfg, n)}
        if args.against:
            timers["torch"] = torch_timer(cfg, n)
        best = {name: float("inf") for name in timers}
        for _ in range(args.repeats):  # interleaved rounds
            for name, timer in timers.items():
                best[name] = min(best[name], timer())
        throughput = n * args.steps / best["jax"]
        base = base or throughput
        line = (f"{n:>9} {1e3 * best['jax'] / args.steps:>9.2f} {throughput:>13.0f} "
                f"{throughput / base:>13.2f}x")
        if toy:
            gflops = throughput * matmul_flops(cfg) / 1e9
            line += f" {gflops:>8.1f}"
            if args.peak_tflops:
                line += f" {gflops / (1e3 * args.peak_tflops):>8.1%}"
        else:
            line += f" {'-':>8}" + (f" {'-':>8}" if args.peak_tflops else "")
        if args.against:
            t_tp = n * args.steps / best["torch"]
            line += f" {t_tp:>19.0f} {throughput / t_tp:>9.2f}x"
        print(line, flush=True)


if __name__ == "__main__":
    main()
