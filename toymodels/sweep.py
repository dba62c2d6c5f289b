"""Sweeps: a spec -> points -> shape groups -> one compiled program per group -> tidy tables.

A spec (TOML, or the SweepSpec dataclass) names a base preset, overrides, and axes:
`grid` axes multiply, `zip` axes advance together. Points whose configs differ only
in batched fields (seeds, λ, learning rate, p_active, target scale) form one group
and train as one vmapped program; N, D, H, m and the other fields split groups.

  DIR/groups/<id>.parquet        one group's rows, written atomically when it ends
  DIR/groups/<id>.pairs.parquet  its per-pair rows (long form)
  DIR/results.parquet            every group's rows, in spec order
  DIR/pairs.parquet              every group's pair rows
  DIR/manifest.json              spec, versions, git commit, per-group time and compiles

Rerunning a sweep skips groups whose file exists, so a killed sweep resumes with
no lost or duplicated rows. An instance whose loss becomes NaN, inf or explodes
(see DIVERGENCE_FACTOR) is marked diverged with its step, and its metrics are null;
instances never interact, so the rest of its program is unaffected.
"""

import dataclasses
import hashlib
import itertools
import json
import os
import time
import tomllib
from pathlib import Path

import numpy as np

from toymodels.config import (BATCHED_FIELDS, Instance, ToyConfig, field_names, make_instances,
                              parse_seeds, parse_template, preset)
from toymodels.config_transformer import TRANSFORMER_BATCHED_FIELDS, TransformerConfig
from toymodels.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """What to sweep. Each axis maps a config field to its list of values."""

    preset: str
    seeds: tuple[int, ...] = (0,)
    set: dict = dataclasses.field(default_factory=dict)
    """Overrides applied to the preset before the axes."""
    grid: dict = dataclasses.field(default_factory=dict)
    """Axes whose values combine with every value of every other axis."""
    zip: dict = dataclasses.field(default_factory=dict)
    """Axes of equal length whose values advance together."""

    def base(self) -> ToyConfig:
        cfg = preset(self.preset)
        return cfg.replace(**{k: _typed(k, v, type(cfg)) for k, v in self.set.items()})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"seeds": list(self.seeds)}


def _typed(name: str, value, config_class=ToyConfig):
    """A TOML value as the config field's type (ints for float fields become floats)."""
    kinds = {f.name: f.type for f in dataclasses.fields(config_class)}
    if name not in kinds:
        raise ConfigError(f"unknown config field {name!r}; known fields: " + ", ".join(kinds))
    kind = kinds[name]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if name == "template":
        if isinstance(value, str):
            return parse_template(value)
        if isinstance(value, list):
            return tuple(tuple(p) if isinstance(p, list) else p for p in value)
    if name == "p_active" and isinstance(value, list):
        return tuple(float(p) for p in value)
    if name == "pairs" and isinstance(value, list):  # a transformer's planted pairs
        return tuple(tuple(p) if isinstance(p, list) else p for p in value)
    if name in ("value_features", "value_gains") and isinstance(value, list):
        return tuple(value)
    return value


def batched_fields(cfg) -> tuple[str, ...]:
    """The fields that may differ between instances of one compiled program."""
    return TRANSFORMER_BATCHED_FIELDS if isinstance(cfg, TransformerConfig) else BATCHED_FIELDS


def load_spec(path) -> SweepSpec:
    """Read and validate a TOML spec; raises ConfigError naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep spec {path} does not exist")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    unknown = set(raw) - {"preset", "seeds", "set", "grid", "zip"}
    if unknown:
        raise ConfigError(f"{path}: unknown key {sorted(unknown)[0]!r}; a spec has preset, "
                          "seeds, [set], [grid] and [zip]")
    if "preset" not in raw:
        raise ConfigError(f"{path}: a spec needs preset = \"single-pair\" (or another preset)")
    seeds = raw.get("seeds", [0])
    if isinstance(seeds, str):
        seeds = parse_seeds(seeds)
    elif not (isinstance(seeds, list) and all(isinstance(s, int) and s >= 0 for s in seeds)):
        raise ConfigError(f"{path}: seeds must be a list of integers >= 0 or a string like '0-3'")
    spec = SweepSpec(preset=raw["preset"], seeds=tuple(seeds), set=raw.get("set", {}),
                     grid=raw.get("grid", {}), zip=raw.get("zip", {}))
    expand(spec)  # validates every point before any work
    return spec


def expand(spec: SweepSpec) -> list[tuple[ToyConfig, Instance]]:
    """Every (config, instance) of the sweep, in spec order (seeds vary fastest)."""
    base = spec.base()
    for kind, axes in (("grid", spec.grid), ("zip", spec.zip)):
        for name, values in axes.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"[{kind}] {name} must be a non-empty list of values")
            if name == "seed" or name == "seeds":
                raise ConfigError("give seeds as the top-level seeds = [...], not an axis")
    lengths = {len(v) for v in spec.zip.values()}
    if len(lengths) > 1:
        raise ConfigError(f"[zip] axes must have equal lengths, got {sorted(lengths)}")
    if set(spec.grid) & set(spec.zip):
        raise ConfigError(f"{sorted(set(spec.grid) & set(spec.zip))[0]!r} is both a grid and "
                          "a zip axis")
    zipped = [dict(zip(spec.zip, vals)) for vals in zip(*spec.zip.values())] or [{}]
    grid = [dict(zip(spec.grid, vals)) for vals in itertools.product(*spec.grid.values())]
    points = []
    for g in grid:
        for z in zipped:
            changes = {k: _typed(k, v, type(base)) for k, v in {**g, **z}.items()}
            cfg = base.replace(**changes)  # the config class validates values and types
            for seed in spec.seeds:
                points.append((cfg, make_instances(cfg, [seed])[0]))
    if not points:
        raise ConfigError("the sweep has no points")
    return points


@dataclasses.dataclass
class Group:
    """Instances sharing one compiled program."""

    cfg: ToyConfig
    instances: list[Instance]

    @property
    def id(self) -> str:
        """Stable name from the group's config and instances (a changed spec reruns it)."""
        blob = json.dumps([self.cfg.to_dict(), [i.overrides() | {"seed": i.seed}
                                                for i in self.instances]], sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


def group_points(points) -> list[Group]:
    """Group by everything but the batched fields, keeping spec order."""
    groups: dict[ToyConfig, Group] = {}
    for cfg, inst in points:
        key = cfg.replace(**{n: getattr(type(cfg)(), n) for n in batched_fields(cfg)})
        groups.setdefault(key, Group(cfg=key, instances=[])).instances.append(inst)
    return list(groups.values())


# ---- running a group --------------------------------------------------------------

CONFIG_COLUMNS = [n for n in field_names() if n != "template"]
PAIR_IDENTITY = ("query_feature", "key_feature", "target")


def run_group(group: Group, progress: bool = True) -> dict:
    """Train and analyse one group; returns its rows, pair rows and statistics."""
    from toymodels.families import family_of
    from toymodels.train import make_chunk_fn, train

    chunk_fn, _ = make_chunk_fn(group.cfg)
    compiled_before = chunk_fn._cache_size()
    t0 = time.perf_counter()
    result = train(group.cfg, group.instances, progress=progress, desc=f"group {group.id}")
    train_seconds = time.perf_counter() - t0
    family = family_of(group.cfg)
    diverged_at = [diverged_step(family.divergence_loss(
        {k: v[n] for k, v in result.curves.items()}, inst))
        for n, inst in enumerate(group.instances)]
    params = {k: np.where(_instance_mask(v, diverged_at), 0.0, v).astype(np.float32)
              for k, v in result.params.items()}  # a diverged head is not analysed
    if isinstance(group.cfg, TransformerConfig):
        from toymodels.run_transformer import sweep_rows
        rows, pair_rows = sweep_rows(group.id, group.cfg, group.instances, result, params,
                                     diverged_at)
    else:
        rows, pair_rows = _toy_rows(group, result, params, diverged_at)
    return {"rows": rows, "pairs": pair_rows, "seconds": time.perf_counter() - t0,
            "train_seconds": train_seconds,
            "compiles": chunk_fn._cache_size() - compiled_before}


def _toy_rows(group: Group, result, params, diverged_at):
    """One row per instance and one per (instance, attended pair) of a toy-model group."""
    from toymodels.run import analyze_params

    analysis = analyze_params(group.cfg, params)
    heads = {row["instance"]: row for row in analysis.heads}
    rows, pair_rows = [], []
    for n, inst in enumerate(group.instances):
        cfg = group.cfg.replace(**{k: getattr(inst, k) for k in BATCHED_FIELDS})
        row = {"group": group.id, "seed": inst.seed,
               **{k: _cell(getattr(cfg, k)) for k in CONFIG_COLUMNS},
               "template": json.dumps([list(p) for p in cfg.template]),
               "diverged": diverged_at[n] is not None, "diverged_step": diverged_at[n]}
        ok = diverged_at[n] is None
        for name, curve in result.curves.items():
            row[f"final_{name}"] = float(np.mean(curve[n, -100:])) if ok else None
        for key, value in heads[n].items():
            if key not in ("instance", "circuit"):
                row[key] = value if ok else None
        rows.append(row)
        for p in (p for p in analysis.pairs if p["instance"] == n):
            pair = {k: v for k, v in p.items() if k not in ("instance", "circuit")}
            if not ok:  # keep which pair it is, drop what a diverged head measured
                pair |= {k: None for k in pair if k not in PAIR_IDENTITY}
            pair_rows.append({"group": group.id, "seed": inst.seed, "lam": inst.lam,
                              "learning_rate": inst.learning_rate,
                              "target_scale": inst.target_scale, **pair})
    return rows, pair_rows


def _cell(value):
    return json.dumps(list(value)) if isinstance(value, tuple) else value


DIVERGENCE_FACTOR = 1e3
"""A loss above this many times its first-step value counts as diverged (as does NaN or
inf): Adam moves each weight by about the learning rate per step, so a too-large rate
makes the loss explode polynomially long before it overflows."""


def diverged_step(loss) -> int | None:
    """First step (1-based) at which the training loss is non-finite or above
    DIVERGENCE_FACTOR times its first value; None if it never is."""
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(loss) | (loss > DIVERGENCE_FACTOR * abs(loss[0]))
    idx = np.flatnonzero(bad)
    return int(idx[0]) + 1 if idx.size else None


def _instance_mask(array, diverged_at):
    bad = np.array([d is not None for d in diverged_at])
    return bad.reshape((-1,) + (1,) * (array.ndim - 1))


# ---- the sweep --------------------------------------------------------------------


def run_sweep(spec: SweepSpec, out_dir, *, backend: str = "local", ray_address=None,
              progress: bool = True) -> dict:
    """Run every group not yet stored in out_dir, then assemble the tables."""
    from toymodels.store import git_commit, versions, write_json

    out = Path(out_dir)
    groups = group_points(expand(spec))
    (out / "groups").mkdir(parents=True, exist_ok=True)
    todo = [g for g in groups if not (out / "groups" / f"{g.id}.parquet").exists()]
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    stats = manifest.get("groups", {})
    if backend == "ray":
        results = _run_ray(todo, ray_address)
    else:
        results = (run_group(g, progress) for g in todo)
    for group, result in zip(todo, results):
        _write_group(out, group, result)
        stats[group.id] = {"config": group.cfg.to_dict(), "instances": len(group.instances),
                           "seconds": result["seconds"], "train_seconds": result["train_seconds"],
                           "compiles": result["compiles"]}
        _atomic(manifest_path, lambda p: write_json(p, _manifest(spec, groups, stats)))
        print(f"group {group.id}: {len(group.instances)} instances in "
              f"{result['seconds']:.1f} s, {result['compiles']} compiled program(s)", flush=True)
    manifest = _manifest(spec, groups, stats) | {"versions": versions(),
                                                  "git_commit": git_commit()}
    _atomic(manifest_path, lambda p: write_json(p, manifest))
    _assemble(out, groups)
    return manifest


def _manifest(spec, groups, stats):
    return {"spec": spec.to_dict(), "group_order": [g.id for g in groups],
            "groups": stats, "compiles": sum(s["compiles"] for s in stats.values())}


def _atomic(path: Path, write):
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def _write_group(out: Path, group: Group, result: dict):
    import pyarrow as pa
    import pyarrow.parquet as pq

    # The pairs file first: a group counts as done once its rows file exists.
    _atomic(out / "groups" / f"{group.id}.pairs.parquet",
            lambda p: pq.write_table(pa.Table.from_pylist(result["pairs"]), p))
    _atomic(out / "groups" / f"{group.id}.parquet",
            lambda p: pq.write_table(pa.Table.from_pylist(result["rows"]), p))


def _assemble(out: Path, groups: list[Group]):
    import pyarrow as pa
    import pyarrow.parquet as pq

    for name, suffix in (("results", ""), ("pairs", ".pairs")):
        tables = [pq.read_table(out / "groups" / f"{g.id}{suffix}.parquet") for g in groups]
        tables = [t for t in tables if t.num_rows]
        table = pa.concat_tables(tables, promote_options="permissive") if tables \
            else pa.table({})
        _atomic(out / f"{name}.parquet", lambda p: pq.write_table(table, p))


def _run_ray(groups: list[Group], address):
    """Each group as a Ray task, one accelerator each where the cluster has any."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False, include_dashboard=False)
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    task = ray.remote(num_gpus=gpus)(run_group)
    refs = [task.remote(g, False) for g in groups]
    for ref in refs:  # in spec order, so the manifest and files follow it
        yield ray.get(ref)


def sweep_table(out_dir) -> str:
    """One line per group: its shape, size, time and mean alignment."""
    import pyarrow.parquet as pq

    out = Path(out_dir)
    manifest = json.loads((out / "manifest.json").read_text())
    rows = pq.read_table(out / "results.parquet").to_pylist()
    transformer = bool(rows) and "best_qk_matched" in rows[0]
    shape = ("D", "H", "n_layers", "n_heads") if transformer else ("N", "D", "H", "m")
    metric = "best_qk_matched" if transformer else "min_matched_cos"
    lines = [f"{'group':<13}" + "".join(f"{k[:8]:>9}" for k in shape) +
             f"{'inst':>6}{'sec':>8}{'comp':>5}{'diverged':>9}"
             f"{'mean QK match (best head)' if transformer else 'mean min cos':>26}"]
    for gid in manifest["group_order"]:
        sub = [r for r in rows if r["group"] == gid]
        cfg, stat = manifest["groups"][gid]["config"], manifest["groups"][gid]
        cos = [r[metric] for r in sub if r.get(metric) is not None]
        lines.append(f"{gid:<13}" + "".join(f"{cfg[k]:>9}" for k in shape) +
                     f"{len(sub):>6}{stat['seconds']:>8.1f}{stat['compiles']:>5}"
                     f"{sum(r['diverged'] for r in sub):>9}"
                     f"{(f'{np.mean(cos):.4f}' if cos else '-'):>26}")
    return "\n".join(lines)
