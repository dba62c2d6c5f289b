"""Training throughput against the number of vmapped instances, in one process.

Compiles each instance count once (warm-up), then times whole train() calls,
which return host arrays (so the device work is finished). Prints ms per step and instance-steps per second, and the
ratio of throughput to the 1-instance baseline measured in the same run.

usage: python benchmarks/bench_train.py [--preset single-pair] [--instances 1,16,64,256]
                                        [--steps 500] [--repeats 3]
"""

import argparse
import time

import jax

from toymodels.config import make_instances, preset
from toymodels.train import train


def time_instances(cfg, n_instances: int, repeats: int) -> float:
    """Best wall seconds of train() for n_instances instances (compiled beforehand)."""
    instances = make_instances(cfg, range(n_instances))
    train(cfg, instances, progress=False)  # compiles; the program is cached for the reruns
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        train(cfg, instances, progress=False)  # returns host arrays: the work is done
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="single-pair")
    parser.add_argument("--instances", default="1,16,64,256")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    counts = [int(n) for n in args.instances.split(",")]
    cfg = preset(args.preset).replace(steps=args.steps, chunk_steps=args.steps,
                                      record_points=0)
    print(f"{args.preset}: N={cfg.N} D={cfg.D} H={cfg.H} m={cfg.m} batch={cfg.batch_size}, "
          f"{args.steps} steps per timing, best of {args.repeats}, "
          f"device {jax.devices()[0].platform}")
    print(f"{'instances':>9} {'ms/step':>9} {'inst-steps/s':>13} {'vs 1 instance':>14}")
    base = None
    for n in counts:
        seconds = time_instances(cfg, n, args.repeats)
        throughput = n * args.steps / seconds
        base = base or throughput
        print(f"{n:>9} {1e3 * seconds / args.steps:>9.2f} {throughput:>13.0f} "
              f"{throughput / base:>13.2f}x")


if __name__ == "__main__":
    main()
