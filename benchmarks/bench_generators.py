"""Cost of structured features: sample_structured against sample_features.

Sampler only: one batch of the preset's tokens (f_q [B, N] and f_k [B, m, N], as
tasks/toy.py's sample_batch draws them) for every instance, jitted and vmapped, timed to
block_until_ready in interleaved rounds (so load on the machine hits all alike); prints
ms per call, the ratio to sample_features, and each generator alone. With --step it also
times whole training steps, sample_features swapped for the richest structure in the
toy task (the compiled-program caches cleared at each swap).

usage: python benchmarks/bench_generators.py [--preset single-pair] [--instances 64]
                                             [--calls 50] [--rounds 5] [--step]
"""

import argparse
import functools
import statistics
import time

import jax
import jax.numpy as jnp

from toymodels.tasks import toy as toy_task
from toymodels.tasks.features import sample_features
from toymodels.tasks.generators import sample_structured
from toymodels.tasks.structure import FeatureStructure

try:  # the package layout being reorganised: either place
    from toymodels.configs import make_instances, preset
    from toymodels.training import loop as train_module
except ImportError:
    from toymodels.config import make_instances, preset
    from toymodels import train as train_module


def structures(N: int) -> dict:
    """The richest composition for N >= 20 features, and each of its parts alone."""
    parents = [-1] * N
    for child, parent in ((7, 0), (8, 7), (9, 0), (10, 4), (13, 1), (14, 1), (15, 1)):
        parents[child] = parent
    parts = dict(
        zipf=dict(zipf_exponent=0.5),
        blocks=dict(blocks=((0, 1, 2, 3), (4, 5, 6)), rho=(0.5, -0.2)),
        hierarchy=dict(parents=tuple(parents), conditional=0.5),
        exclusive=dict(exclusive=((16, 17, 18, 19),)))
    out = {name: FeatureStructure(N, **kw) for name, kw in parts.items()}
    rich = {k: v for kw in parts.values() for k, v in kw.items()}
    rich["exclusive"] = ((13, 14, 15), (16, 17, 18, 19))  # siblings exclusive too
    out["rich"] = FeatureStructure(N, **rich)
    return out


def batch_sampler(sampler, B: int, m: int, N: int, instances: int):
    def one(key, p):
        k_q, k_k = jax.random.split(key)
        return sampler(k_q, p, (B, N)), sampler(k_k, p, (B, m, N))
    run = jax.jit(jax.vmap(one))
    keys = jax.random.split(jax.random.key(0), instances)
    ps = jnp.full((instances, N), 0.1)

    def timed(calls: int) -> float:
        t0 = time.perf_counter()
        for _ in range(calls):
            jax.block_until_ready(run(keys, ps))
        return (time.perf_counter() - t0) / calls
    timed(2)  # compile
    return timed


def time_steps(cfg, instances, sampler, rounds: int, steps: int):
    """Seconds per training step with `sampler` in place of sample_features."""
    toy_task.sample_features = sampler
    for value in vars(train_module).values():  # programs traced with the old sampler
        if callable(getattr(value, "cache_clear", None)):
            value.cache_clear()
    train_module.train(cfg, instances, progress=False)  # compile
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        train_module.train(cfg, instances, progress=False)
        best = min(best, time.perf_counter() - t0)
    toy_task.sample_features = sample_features
    return best / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="single-pair")
    parser.add_argument("--instances", type=int, default=64)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--step", action="store_true", help="also time training steps")
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    cfg = preset(args.preset)
    B, m, N = cfg.batch_size, cfg.m, cfg.N
    print(f"{args.preset}: {args.instances} instances x (B={B}) x (m+1={m + 1}) tokens x "
          f"N={N}, device {jax.devices()[0].platform}")
    samplers = {"independent": sample_features}
    for name, structure in structures(N).items():
        samplers[name] = functools.partial(
            lambda key, p, shape, s: sample_structured(key, s, p, shape), s=structure)
    timers = {name: batch_sampler(fn, B, m, N, args.instances) for name, fn in samplers.items()}
    times = {name: [] for name in timers}
    for _ in range(args.rounds):
        for name, timer in timers.items():
            times[name].append(timer(args.calls))
    base = min(times["independent"])
    for name, ts in times.items():
        print(f"  sampler {name:>11}: {1e3 * min(ts):7.2f} ms/call (median "
              f"{1e3 * statistics.median(ts):.2f}), {min(ts) / base:.2f}x independent")
    print(f"sampler ratio rich/independent: {min(times['rich']) / base:.2f}")
    if args.step:
        step_cfg = cfg.replace(steps=args.steps, chunk_steps=args.steps, record_points=0)
        instances = make_instances(step_cfg, range(args.instances))
        rich = samplers["rich"]
        plain = time_steps(step_cfg, instances, sample_features, args.rounds, args.steps)
        structured = time_steps(step_cfg, instances, rich, args.rounds, args.steps)
        print(f"  step independent: {1e3 * plain:.2f} ms, rich: {1e3 * structured:.2f} ms")
        print(f"step ratio rich/independent: {structured / plain:.2f}")


if __name__ == "__main__":
    main()
