"""Cost of structured features: sample_structured against sample_features.

Sampler only: one batch of the preset's tokens (f_q [B, N] and f_k [B, m, N], as
tasks/toy.py's sample_batch draws them) for every instance, jitted and vmapped, timed to
block_until_ready in interleaved rounds (so load on the machine hits all alike); prints
ms per call (best round), the ratio to sample_features, and each generator alone. With
--step it also times whole training steps (train() of the preset), sample_features
swapped for the richest structure in the toy task, each with its own compiled program.
--clock cpu (default) times this process's CPU time over all its threads, which other
processes' load inflates far less than wall time on a shared machine; --clock wall
times what a user waits for.

Run from the repository root with PYTHONPATH=. (a script's own folder, not the working
directory, is on sys.path).

usage: python benchmarks/bench_generators.py [--preset single-pair] [--instances 64]
                                             [--calls 20] [--rounds 5] [--step]
                                             [--steps 100] [--clock cpu|wall]
"""

import argparse
import functools
import statistics
import time

import jax
import jax.numpy as jnp

clock = time.process_time  # --clock

from toymodels.tasks import generators
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


def vectorised(sampler):
    """`sampler` traced with the vectorised assembly whatever N (generators.py)."""
    def traced(key, p, shape):
        saved, generators.ROW_BY_ROW_MAX_FEATURES = generators.ROW_BY_ROW_MAX_FEATURES, 0
        try:
            return sampler(key, p, shape)
        finally:
            generators.ROW_BY_ROW_MAX_FEATURES = saved
    return traced


def batch_sampler(sampler, B: int, m: int, N: int, instances: int):
    def one(key, p):
        k_q, k_k = jax.random.split(key)
        return sampler(k_q, p, (B, N)), sampler(k_k, p, (B, m, N))
    run = jax.jit(jax.vmap(one))
    keys = jax.random.split(jax.random.key(0), instances)
    ps = jnp.full((instances, N), 0.1)

    def timed(calls: int) -> float:
        t0 = clock()
        for _ in range(calls):
            jax.block_until_ready(run(keys, ps))
        return (clock() - t0) / calls
    timed(2)  # compile
    return timed


def step_timers(cfg, instances, samplers: dict) -> dict:
    """A timer of whole training steps for each sampler swapped in for sample_features.
    Each gets its own compiled program (the chunk-program cache keyed by sampler too),
    so rounds can interleave; prints each program's first call (compile included)."""
    build = train_module._make_chunk_fn.__wrapped__  # the uncached builder
    programs, current = {}, {}
    train_module._make_chunk_fn = lambda c: programs.setdefault(
        (current["name"], c), build(c))
    timers = {}
    for name, sampler in samplers.items():
        def run(name=name, sampler=sampler):
            current["name"] = name
            toy_task.sample_features = sampler  # read when the program is first traced
            t0 = clock()
            train_module.train(cfg, instances, progress=False)  # returns host arrays
            toy_task.sample_features = sample_features
            return (clock() - t0) / cfg.steps
        print(f"  step program {name:>15}: first call (compiles) {run() * cfg.steps:.1f} s",
              flush=True)
        timers[name] = run
    return timers


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="single-pair")
    parser.add_argument("--instances", type=int, default=64)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--step", action="store_true", help="also time training steps")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    args = parser.parse_args()
    global clock
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    cfg = preset(args.preset)
    B, m, N = cfg.batch_size, cfg.m, cfg.N
    print(f"{args.preset}: {args.instances} instances x (B={B}) x (m+1={m + 1}) tokens x "
          f"N={N}, device {jax.devices()[0].platform}, {args.clock} time, best of "
          f"{args.rounds} rounds")
    samplers = {"independent": sample_features}
    for name, structure in structures(N).items():
        samplers[name] = functools.partial(
            lambda key, p, shape, s: sample_structured(key, s, p, shape), s=structure)
    samplers["rich vectorised"] = vectorised(samplers["rich"])
    timers = {name: batch_sampler(fn, B, m, N, args.instances) for name, fn in samplers.items()}
    times = {name: [] for name in timers}
    for _ in range(args.rounds):
        for name, timer in timers.items():
            times[name].append(timer(args.calls))
    base = min(times["independent"])
    for name, ts in times.items():
        print(f"  sampler {name:>15}: {1e3 * min(ts):7.2f} ms/call (median "
              f"{1e3 * statistics.median(ts):.2f}), {min(ts) / base:.2f}x independent")
    print(f"sampler ratio rich/independent: {min(times['rich']) / base:.2f}")
    if args.step:
        step_cfg = cfg.replace(steps=args.steps, chunk_steps=args.steps, record_points=0)
        instances = make_instances(step_cfg, range(args.instances))
        timers = step_timers(step_cfg, instances, {
            name: samplers[name] for name in ("independent", "rich", "rich vectorised")})
        best = {name: float("inf") for name in timers}
        for _ in range(args.rounds):  # interleaved
            for name, timer in timers.items():
                best[name] = min(best[name], timer())
        for name, t in best.items():
            print(f"  step {name:>15}: {1e3 * t:7.2f} ms, {t / best['independent']:.2f}x")
        print(f"step ratio rich/independent: {best['rich'] / best['independent']:.2f}")


if __name__ == "__main__":
    main()
