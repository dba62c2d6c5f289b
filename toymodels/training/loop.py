"""Train many models at once: vmap over instances, lax.scan over steps.

One loop for every model family (families/: the paper's toy, toy transformers): a family
supplies the model, the task's loss, batched hyperparameters and in-training metrics.

Shapes:
  I  instances (the vmapped axis; each has its own seed and batched hyperparameters)
  S  steps in one compiled chunk

One jit-compiled program advances every instance by S steps. An instance's
data at step t is sample_batch(fold_in(data_key, t)), and its parameters
start from its own init key, so its result depends on its seed and settings
only, never on its position in the batch or on the chunk size. It is also why a run
can stop between two chunks and continue later (train(checkpoints=...), training/checkpoints.py):
the state restored exactly, the steps that follow are the same.
"""

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from flax import nnx
from tqdm.auto import tqdm

from toymodels.blas import one_blas_thread
from toymodels.training.dynamics import record_steps
from toymodels.errors import ConfigError, RunDirError
from toymodels.families import family_of
from toymodels.training.optimizers import make_optimizer
from toymodels.compile_cache import configure as _use_compile_cache  # noqa: E402

_use_compile_cache()  # before this module compiles anything


@dataclass
class TrainResult:
    params: dict[str, np.ndarray]
    """Trained parameters by name, each with a leading instance axis: W [I, D, N], ..."""
    curves: dict[str, np.ndarray]
    """Per-step curves named by the family (toy: 'recon', 'attn'), each [I, steps]."""
    dynamics: dict[str, np.ndarray] | None = None
    """If cfg.record_points: 'steps' [R] and per-instance metrics [I, R, ...] (training/dynamics.py)."""


def instance_keys(seed: int):
    """(init key, data key) of one instance: a function of its seed alone."""
    k_init, k_data = jax.random.split(jax.random.key(seed))
    return k_init, k_data


def _model_graphdef(cfg):
    abstract = nnx.eval_shape(lambda: family_of(cfg).build(cfg, nnx.Rngs(0)))
    graphdef, _ = nnx.split(abstract)
    return graphdef


def init_states(cfg, seeds):
    """Model states for each seed, stacked on a leading instance axis."""
    return _init_fn(program_key(cfg))(jnp.asarray(seeds, jnp.uint32))


@functools.lru_cache(maxsize=16)
def _init_fn(cfg):
    def init_one(seed):
        k_init, _ = instance_keys(seed)
        return nnx.split(family_of(cfg).build(cfg, nnx.Rngs(params=k_init)))[1]
    return jax.jit(jax.vmap(init_one))


def _instance_hparams(cfg, instances) -> dict:
    """The batched per-instance values, each with a leading [I] axis."""
    return {
        **family_of(cfg).hparams(cfg, instances),
        "steps": jnp.full(len(instances), cfg.steps, jnp.float32),
        "data_key": jax.vmap(lambda s: instance_keys(s)[1])(
            jnp.asarray([inst.seed for inst in instances], jnp.uint32)),
    }


def program_key(cfg):
    """cfg with the fields that do not change the compiled program reset: configs with
    equal keys share one compiled training program."""
    return family_of(cfg).program_key(cfg)


def make_chunk_fn(cfg):
    """A jitted function advancing every instance by len(step_ids) steps."""
    return _make_chunk_fn(program_key(cfg))


@functools.lru_cache(maxsize=16)
def _make_chunk_fn(cfg):
    family = family_of(cfg)
    graphdef = _model_graphdef(cfg)
    # The optimizer at learning rate 1, scaled by each instance's own rate below (optax's
    # adamw is chain(scale_by_adam, add_decayed_weights, scale(-lr))): the same update
    # with lr free to vary across the vmapped axis.
    tx = make_optimizer(cfg.optimizer, cfg.weight_decay)
    loss_fn = family.loss_fn(cfg)

    def losses(state, key, hp):
        return loss_fn(nnx.merge(graphdef, state), key, hp)

    recorder = family.recorder(cfg) if cfg.record_points else None
    # Frozen parameters get no update at all (so no weight decay either).
    frozen = family.frozen(cfg)

    def record(state, hp):
        return recorder(nnx.merge(graphdef, state), hp)

    def step(carry, xs, hp):
        step_id, active, record_now = xs
        # Steps past cfg.steps (the padded tail of the last chunk) leave the carry as
        # it is, so every chunk has one length and the program compiles once.
        def run(c):
            return train_step(c, step_id, record_now, hp)

        def skip(c):
            return c, _zeros_like(jax.eval_shape(run, c)[1])

        return jax.lax.cond(active, run, skip, carry)

    def train_step(carry, step_id, record_now, hp):
        state, opt_state = carry
        key = jax.random.fold_in(hp["data_key"], step_id)
        grads, outputs = jax.grad(losses, has_aux=True)(state, key, hp)
        updates, opt_state = tx.update(grads, opt_state, state)
        if frozen:
            updates = jax.tree_util.tree_map_with_path(
                lambda path, u: jnp.zeros_like(u) if _top_name(path) in frozen else u, updates)
        lr = hp["learning_rate"] * _schedule(cfg.lr_schedule, step_id, hp["steps"])
        updates = jax.tree.map(lambda u: lr * u, updates)
        state = optax.apply_updates(state, updates)
        outputs = dict(outputs)
        if recorder is not None:
            # record_now is shared by all instances, so under vmap this stays a
            # real branch: the metrics cost nothing on steps that are not recorded.
            outputs["metrics"] = jax.lax.cond(
                record_now, lambda s: record(s, hp),
                lambda s: _zeros_like(jax.eval_shape(record, s, hp)), state)
        return (state, opt_state), outputs

    def run_instance(state, opt_state, hp, step_ids, active, record_mask):
        (state, opt_state), outputs = jax.lax.scan(
            lambda c, xs: step(c, xs, hp), (state, opt_state), (step_ids, active, record_mask))
        return state, opt_state, outputs

    chunk = jax.jit(jax.vmap(run_instance, in_axes=(0, 0, 0, None, None, None)),
                    donate_argnums=(0, 1))
    init_opt = jax.jit(jax.vmap(tx.init))
    return chunk, init_opt


def _top_name(path) -> str:
    key = path[0]
    return str(getattr(key, "key", getattr(key, "name", key)))


def _schedule(kind: str, step_id, steps):
    """Learning-rate factor at step_id (0-based) of `steps`."""
    if kind == "cosine":
        return 0.5 * (1 + jnp.cos(jnp.pi * step_id.astype(jnp.float32) / steps))
    return 1.0


def _zeros_like(shapes):
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def pad_to_devices(instances: list) -> list:
    """Repeat the last instance until the count divides the local device count (the
    copies are dropped after training; instances never interact)."""
    n_dev = jax.local_device_count()
    return instances + [instances[-1]] * (-len(instances) % n_dev)


def shard_instances(tree):
    """Split the leading instance axis of every array across the local devices, so one
    run uses 1 CPU, 8 GPUs or a TPU slice unchanged."""
    devices = jax.local_devices()
    if len(devices) == 1:
        return tree
    sharding = NamedSharding(Mesh(np.array(devices), ("instance",)), PartitionSpec("instance"))
    return jax.device_put(tree, sharding)


@one_blas_thread
def train(cfg, instances: list, *, progress: bool = True,
          desc: str = "train", init: dict | None = None,
          checkpoints=None) -> TrainResult:
    """Train every instance for cfg.steps steps as one compiled program.

    init: optional starting values by parameter name, each [I, ...] (e.g. fixed
    features W [I, D, N] with cfg.train_features=False); the rest start from the seed
    (or from the family's host_init, e.g. a transformer's fixed embedding frame).
    checkpoints: a resume.CheckpointPlan: continue from its latest good checkpoint (the
    result is the uninterrupted run's, bit for bit) and save the state at chunk
    boundaries as it says."""
    chunk_fn, init_opt = make_chunk_fn(cfg)
    n_real = len(instances)
    init = {**family_of(cfg).host_init(cfg, instances), **(init or {})}
    instances = pad_to_devices(instances)
    state = init_states(cfg, [inst.seed for inst in instances])
    names = tuple(nnx.to_pure_dict(state))
    for name, value in init.items():
        if name not in names:
            raise ConfigError(f"init[{name!r}]: not a parameter; give one of {names}")
        value = np.asarray(value, np.float32)
        expected = (n_real,) + state[name].shape[1:]
        if value.shape != expected:
            raise ConfigError(f"init[{name!r}] must have shape {expected} (instances first), "
                              f"got {value.shape}")
        pad = np.repeat(value[-1:], len(instances) - n_real, axis=0)
        state[name].set_value(jnp.asarray(np.concatenate([value, pad])))

    chunk = min(cfg.chunk_steps, cfg.steps)
    padded_steps = -(-cfg.steps // chunk) * chunk
    recorded = record_steps(cfg)
    all_steps = np.arange(padded_steps)
    active = all_steps < cfg.steps
    record_mask = np.isin(all_steps + 1, recorded) & active
    curve_chunks, metric_chunks = [], []
    session = _checkpoint_session(checkpoints, cfg)
    resumed = None
    if session is not None:
        resumed = session.restore(
            *_expected_state(state, init_opt, n_real), n_real,
            lambda s: int(np.count_nonzero(recorded <= s)))
    if resumed is None:
        state = shard_instances(state)
        opt_state = init_opt(state)
        first = 0
    else:
        state, opt_state = _restored_state(state, init_opt, resumed, len(instances))
        curve_chunks.append(resumed.curves)
        if resumed.metrics:
            metric_chunks.append(resumed.metrics)
        first = resumed.step
        _note(f"resuming from step {first} of {cfg.steps} (checkpoint in "
              f"{checkpoints.path})")
    hp = shard_instances(_instance_hparams(cfg, instances))

    bar = tqdm(total=cfg.steps, initial=first, desc=f"{desc} ({n_real} instances)",
               unit="step", disable=None if progress else True)  # None: off when not a terminal
    try:
        for start in range(first, padded_steps, chunk):
            window = slice(start, start + chunk)
            step_ids = jnp.arange(start, start + chunk, dtype=jnp.uint32)
            state, opt_state, out = chunk_fn(state, opt_state, hp, step_ids,
                                             jnp.asarray(active[window]),
                                             jnp.asarray(record_mask[window]))
            keep = active[window]
            metrics = out.pop("metrics", None)
            curve_chunks.append({k: np.asarray(v)[:n_real, keep]  # waits for the chunk
                                 for k, v in out.items()})
            if metrics is not None and record_mask[window].any():
                metric_chunks.append({k: np.asarray(v)[:n_real, record_mask[window]]
                                      for k, v in metrics.items()})
            if resumed is not None and start == first:
                _check_curves(resumed.curves, curve_chunks[-1], checkpoints.path)
            with np.errstate(invalid="ignore"):
                bar.set_postfix({k: f"{np.nanmean(v[:, -1]):.4f}"
                                 for k, v in curve_chunks[-1].items()})
            bar.update(int(keep.sum()))
            done = min(start + chunk, cfg.steps)
            if session is not None and session.due(done, last=done == cfg.steps):
                curve_chunks[:] = [_joined(curve_chunks)]  # each save needs them whole
                metric_chunks[:] = [_joined(metric_chunks)] if metric_chunks else []
                session.save(done, _host_state(state, opt_state, n_real, curve_chunks[0],
                                               metric_chunks[0] if metric_chunks else None))
    finally:
        bar.close()
        if session is not None:
            session.close()

    params = {name: np.asarray(value)[:n_real]
              for name, value in nnx.to_pure_dict(state).items()}
    curves = _joined(curve_chunks)
    dynamics = None
    if cfg.record_points:
        dynamics = {"steps": recorded, **_joined(metric_chunks)}
    return TrainResult(params=params, curves=curves, dynamics=dynamics)


# ---- checkpoints (checkpoints.py) ----------------------------------------------------


def _checkpoint_session(plan, cfg):
    if plan is None:
        return None
    from toymodels.training.checkpoints import Session, check_every
    check_every(plan.every, plan.keep, cfg, "checkpoint every")
    return Session(plan, cfg)


def _note(message: str) -> None:
    from toymodels.training.checkpoints import note
    note(message)


def _check_curves(restored: dict, new: dict, path) -> None:
    if set(restored) != set(new):
        raise RunDirError(f"the checkpoint in {path} holds curves {sorted(restored)}, this "
                          f"code records {sorted(new)}; delete it to start from step 0")


def _joined(chunks: list[dict]) -> dict:
    """Chunks of {name: [I, k, ...]} joined along their step axis."""
    return {k: np.concatenate([c[k] for c in chunks], axis=1) for k in chunks[0]}


def _expected_state(state, init_opt, n_real):
    """(params {name: (shape, dtype)}, optimizer leaves [(shape, dtype)]) with the
    instance axis n_real: what a checkpoint of this run must hold."""
    def spec(x):
        return (n_real,) + tuple(x.shape[1:]), np.dtype(x.dtype)
    params = {k: spec(v) for k, v in nnx.to_pure_dict(state).items()}
    opt = [spec(x) for x in jax.tree.leaves(jax.eval_shape(init_opt, state))]
    return params, opt


def _padded(x, n: int) -> np.ndarray:
    """[I_real, ...] -> [n, ...], repeating the last instance as pad_to_devices does."""
    x = np.asarray(x)
    return np.concatenate([x, np.repeat(x[-1:], n - len(x), axis=0)])


def _restored_state(state, init_opt, resumed, n: int):
    """Model and optimizer state (sharded) from a checkpoint's host arrays."""
    nnx.replace_by_pure_dict(state, {k: jnp.asarray(_padded(v, n))
                                     for k, v in resumed.params.items()})
    treedef = jax.tree.structure(jax.eval_shape(init_opt, state))
    opt_state = jax.tree.unflatten(treedef, [jnp.asarray(_padded(v, n))
                                             for v in resumed.opt_leaves])
    return shard_instances(state), shard_instances(opt_state)


def _host_state(state, opt_state, n_real, curves, metrics) -> dict:
    """The training state as host arrays of the real instances (checkpoints.py's layout)."""
    tree = {"params": {k: np.asarray(v)[:n_real] for k, v in nnx.to_pure_dict(state).items()},
            "opt_state": {f"{i:05d}": np.asarray(x)[:n_real]
                          for i, x in enumerate(jax.tree.leaves(opt_state))},
            "curves": curves}
    if metrics:
        tree["metrics"] = metrics
    return tree
