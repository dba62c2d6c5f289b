"""Where a toy training step's time goes, part by part, in one process.

Each part runs as its own compiled program of the training loop's shape (lax.scan over
--steps steps, vmapped over instances), each timed as the best of --repeats:
  sample    drawing the step's tokens (tasks/toy.sample_batch)
  forward   sampling + the loss
  gradient  sampling + the loss + its gradient
  step      train(): the above + AdamW, the learning-rate schedule, the curves and
            train()'s host work (copying curves, the progress bar)
Differences between consecutive parts are the cost of what each adds.

usage: python benchmarks/profile_step.py [--preset multi-pair] [--instances 4]
                                         [--steps 250] [--repeats 3]
"""

import argparse
import time

import jax
import jax.numpy as jnp
from flax import nnx

from toymodels.blas import one_blas_thread
from toymodels.configs import make_instances, preset
from toymodels.errors import ConfigError
from toymodels.families import family_of
from toymodels.tasks.toy import sample_batch
from toymodels.training.loop import _instance_hparams, _model_graphdef, init_states, train


def scanned(cfg, part):
    """jit(vmap(scan of part(state, key, hp) -> scalar over the steps)), summed so that
    nothing is dead code. The parameters shrink by a float32 ulp or so each step, as
    training would change them, so that XLA cannot hoist their products (WᵀW, Wᵀ Ω W)
    out of the loop."""
    def one(state, hp):
        def body(carry, t):
            total, state = carry
            total = total + part(state, jax.random.fold_in(hp["data_key"], t), hp)
            return (total, jax.tree.map(lambda x: x * 0.9999999, state)), None
        steps = jnp.arange(cfg.steps, dtype=jnp.uint32)
        return jax.lax.scan(body, (0.0, state), steps)[0][0]
    return jax.jit(jax.vmap(one))


def parts(cfg):
    graphdef, loss_fn = _model_graphdef(cfg), family_of(cfg).loss_fn(cfg)

    def sample(state, key, hp):
        f_q, f_k = sample_batch(key, hp["p_active"], cfg.batch_size, cfg.m, cfg.tokens)
        return f_q.sum() + f_k.sum()

    def forward(state, key, hp):
        return loss_fn(nnx.merge(graphdef, state), key, hp)[0]

    def gradient(state, key, hp):
        grads = jax.grad(forward)(state, key, hp)
        return sum(jnp.sum(g) for g in jax.tree.leaves(grads))

    return {"sample": sample, "forward": forward, "gradient": gradient}


def best_of(repeats, fn):
    fn()  # compiles
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


@one_blas_thread
def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="multi-pair")
    parser.add_argument("--instances", type=int, default=4)
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    try:
        cfg = preset(args.preset).replace(steps=args.steps, chunk_steps=args.steps,
                                          record_points=0)
    except ConfigError as e:
        parser.error(str(e))
    if not hasattr(cfg, "template"):
        parser.error("profile_step.py profiles the toy model (a toy preset)")
    instances = make_instances(cfg, range(args.instances))
    state = init_states(cfg, [inst.seed for inst in instances])
    hp = _instance_hparams(cfg, instances)
    ms = {}
    for name, part in parts(cfg).items():
        program = scanned(cfg, part)
        ms[name] = best_of(args.repeats, lambda: program(state, hp).block_until_ready())
    ms["step"] = best_of(args.repeats, lambda: train(cfg, instances, progress=False))
    ms = {k: 1e3 * v / args.steps for k, v in ms.items()}
    print(f"{args.preset}: N={cfg.N} D={cfg.D} H={cfg.H} m={cfg.m} batch={cfg.batch_size}, "
          f"{args.instances} instances, {args.steps} steps, best of {args.repeats}, "
          f"device {jax.devices()[0].platform}")
    print(f"{'part':<41} {'ms/step':>8} {'share':>7}")
    previous = 0.0
    for name, label in (("sample", "sampling the tokens"), ("forward", "+ loss (forward)"),
                        ("gradient", "+ gradient (backward)"),
                        ("step", "+ AdamW, schedule, curves, host (train)")):
        share = (ms[name] - previous) / ms["step"]
        print(f"{label:<41} {ms[name] - previous:>8.2f} {share:>7.0%}")
        previous = ms[name]
    print(f"{'whole step':<41} {ms['step']:>8.2f}")


if __name__ == "__main__":
    main()
