"""The toy model's two contraction orders (models/toy.py), timed in one process.

Times whole training chunks (lax.scan over steps, vmapped instances, AdamW) of a toy
preset twice: with the orders the model picks for its shapes, and with both products
forced through the residuals (r = W f, the only order before the [N, N] routes).
Rounds are interleaved (routes, residuals, routes, ...) so that load on the machine hits
both alike; prints the best ms per step of each and their ratio.

usage: python benchmarks/bench_routes.py [--presets single-pair,multi-pair]
                                         [--instances 4,64] [--steps 250] [--repeats 5]
"""

import argparse
import contextlib
import time
from unittest import mock

import jax
import jax.numpy as jnp

from toymodels.blas import one_blas_thread
from toymodels.configs import make_instances, preset
from toymodels.errors import ConfigError
from toymodels.models import toy as toy_model
from toymodels.tasks.toy import step_orders
from toymodels.training.loop import _instance_hparams, _make_chunk_fn, init_states, program_key


@contextlib.contextmanager
def residual_routes():
    with mock.patch.object(toy_model, "gram_route_is_cheaper", lambda *a, **k: False), \
            mock.patch.object(toy_model, "feature_route_is_cheaper", lambda *a, **k: False):
        yield


def chunk_timer(cfg, n: int, forced):
    """A function timing one chunk of cfg.steps steps for n instances; compiled here,
    inside `forced` (tracing happens on the first call, so the order is fixed then)."""
    instances = make_instances(cfg, range(n))
    hp = _instance_hparams(cfg, instances)
    steps = jnp.arange(cfg.steps, dtype=jnp.uint32)
    on = jnp.ones(cfg.steps, bool)
    off = jnp.zeros(cfg.steps, bool)
    with forced():
        chunk, init_opt = _make_chunk_fn.__wrapped__(program_key(cfg))  # not the cached one

        def run():
            state = init_states(cfg, list(range(n)))
            opt_state = init_opt(state)
            jax.block_until_ready((state, opt_state))
            t0 = time.perf_counter()
            out = chunk(state, opt_state, hp, steps, on, off)
            jax.block_until_ready(out)
            return time.perf_counter() - t0
        run()  # compiles
    return run


@one_blas_thread
def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="single-pair,multi-pair")
    parser.add_argument("--instances", default="4,64")
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{args.steps} steps per timing, best of {args.repeats} interleaved rounds, "
          f"device {jax.devices()[0].platform}")
    print(f"{'preset':<12} {'N':>4} {'D':>4} {'H':>4} {'instances':>9} {'routes':<12}"
          f" {'ms/step':>9} {'residuals ms/step':>18} {'speed-up':>9}")
    try:
        configs = {name: preset(name) for name in args.presets.split(",")}
    except ConfigError as e:
        parser.error(str(e))
    for name, cfg in configs.items():
        if not hasattr(cfg, "template"):
            parser.error(f"{name} is not a toy preset (the contraction orders are the toy's)")
    for name, cfg in configs.items():
        cfg = cfg.replace(steps=args.steps, chunk_steps=args.steps, record_points=0)
        gram, features = step_orders(cfg)
        routes = f"{'WᵀW' if gram else 'r'}/{'WᵀΩW' if features else 'r'}"
        for n in map(int, args.instances.split(",")):
            timers = {"routes": chunk_timer(cfg, n, contextlib.nullcontext),
                      "residuals": chunk_timer(cfg, n, residual_routes)}
            best = {k: float("inf") for k in timers}
            for _ in range(args.repeats):  # interleaved rounds
                for k, t in timers.items():
                    best[k] = min(best[k], t())
            ms = {k: 1e3 * v / args.steps for k, v in best.items()}
            print(f"{name:<12} {cfg.N:>4} {cfg.D:>4} {cfg.H:>4} {n:>9} {routes:<12}"
                  f" {ms['routes']:>9.2f} {ms['residuals']:>18.2f}"
                  f" {ms['residuals'] / ms['routes']:>8.2f}x", flush=True)


if __name__ == "__main__":
    main()
