"""Train many models at once: vmap over instances, lax.scan over steps.

One loop for every model family (families/: the paper's toy, toy transformers): a family
supplies the model, the task's loss, batched hyperparameters and in-training metrics.

Shapes:
  I  instances (the vmapped axis; each has its own seed and batched hyperparameters)
  S  steps in one compiled chunk

One jit-compiled program advances every instance by S steps. An instance's
data at step t is sample_batch(fold_in(data_key, t)), and its parameters
start from its own init key, so its result depends on its seed and settings
only, never on its position in the batch or on the chunk size.
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

from toymodels.dynamics import record_steps
from toymodels.errors import ConfigError
from toymodels.families import family_of


@dataclass
class TrainResult:
    params: dict[str, np.ndarray]
    """Trained parameters by name, each with a leading instance axis: W [I, D, N], ..."""
    curves: dict[str, np.ndarray]
    """Per-step curves named by the family (toy: 'recon', 'attn'), each [I, steps]."""
    dynamics: dict[str, np.ndarray] | None = None
    """If cfg.record_points: 'steps' [R] and per-instance metrics [I, R, ...] (dynamics.py)."""


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
    # AdamW at learning rate 1, scaled by each instance's own rate below: optax's
    # adamw is chain(scale_by_adam, add_decayed_weights, scale(-lr)), so this is
    # the same update with lr free to vary across the vmapped axis.
    tx = optax.adamw(1.0, weight_decay=cfg.weight_decay)
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


def train(cfg, instances: list, *, progress: bool = True,
          desc: str = "train", init: dict | None = None) -> TrainResult:
    """Train every instance for cfg.steps steps as one compiled program.

    init: optional starting values by parameter name, each [I, ...] (e.g. fixed
    features W [I, D, N] with cfg.train_features=False); the rest start from the seed
    (or from the family's host_init, e.g. a transformer's fixed embedding frame)."""
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
    state = shard_instances(state)
    opt_state = init_opt(state)
    hp = shard_instances(_instance_hparams(cfg, instances))

    chunk = min(cfg.chunk_steps, cfg.steps)
    padded_steps = -(-cfg.steps // chunk) * chunk
    recorded = record_steps(cfg)
    all_steps = np.arange(padded_steps)
    active = all_steps < cfg.steps
    record_mask = np.isin(all_steps + 1, recorded) & active
    curve_chunks, metric_chunks = [], []
    bar = tqdm(total=cfg.steps, desc=f"{desc} ({n_real} instances)",
               unit="step", disable=None if progress else True)  # None: off when not a terminal
    start = 0
    for start in range(0, padded_steps, chunk):
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
        with np.errstate(invalid="ignore"):
            bar.set_postfix({k: f"{np.nanmean(v[:, -1]):.4f}"
                             for k, v in curve_chunks[-1].items()})
        bar.update(int(keep.sum()))
    bar.close()

    params = {name: np.asarray(value)[:n_real]
              for name, value in nnx.to_pure_dict(state).items()}
    curves = {k: np.concatenate([c[k] for c in curve_chunks], axis=1) for k in curve_chunks[0]}
    dynamics = None
    if cfg.record_points:
        dynamics = {"steps": recorded, **{k: np.concatenate([c[k] for c in metric_chunks], 1)
                                          for k in metric_chunks[0]}}
    return TrainResult(params=params, curves=curves, dynamics=dynamics)
