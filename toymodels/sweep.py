"""Sweeps: a spec -> points -> shape groups -> one compiled program per group -> tidy tables.

A spec (TOML, or the SweepSpec dataclass) names a base preset, overrides, and axes:
`grid` axes multiply, `zip` axes advance together. Points whose configs differ only
in batched fields (seeds, λ, learning rate, p_active, target scale) form one group
and train as one vmapped program; N, D, H, m and the other fields split groups.

  DIR/groups/<id>.parquet        one group's rows, written atomically when it ends
  DIR/groups/<id>.pairs.parquet  its per-pair rows (long form)
  DIR/results.parquet            every group's rows, in spec order
  DIR/pairs.parquet              every group's pair rows
  DIR/manifest.json              spec and its hash, versions, git commit, per-group time
                                 and compiles
  DIR/.checkpoints/<id>/         a group's training state while it trains (training/checkpoints.py)
  DIR/checkpoints/<id>/          kept after it, with --keep-checkpoints

Rerunning a sweep skips groups whose file exists, and a group that was training
continues from its last checkpoint, so a killed sweep resumes with no lost or
duplicated rows and the same numbers. A sweep directory belongs to one spec: another spec into
it is refused (RunDirError), and one process at a time writes it (store.claim). An instance whose loss becomes NaN, inf or explodes
(see DIVERGENCE_FACTOR) is marked diverged with its step, and its metrics are null;
instances never interact, so the rest of its program is unaffected.
"""

import contextlib
import dataclasses
import hashlib
import itertools
import json
import math
import os
import time
import tomllib
from pathlib import Path

import numpy as np

from toymodels.configs import (Instance, ToyConfig, check_fits, check_seeds, make_instances,
                               parse_seeds, preset, typed)
from toymodels.errors import ConfigError, RunDirError

MAX_POINTS = 1_000_000
"""A sweep of more (config, seed) points than this is refused before any is built."""


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
        return cfg.replace(**{k: typed(k, v, type(cfg)) for k, v in self.set.items()})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"seeds": list(self.seeds)}

    def canonical_hash(self) -> str:
        """Equal for specs that describe the same sweep however they were written
        (seeds as '0-3' or a list, 1 or 1.0 for a float field)."""
        config_class = type(preset(self.preset))
        values = {kind: {k: ([typed(k, v, config_class) for v in vals] if kind != "set"
                             else typed(k, vals, config_class))
                         for k, vals in getattr(self, kind).items()}
                  for kind in ("set", "grid", "zip")}
        blob = json.dumps({"preset": self.preset, "seeds": list(self.seeds), **values},
                          sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _check_spec_types(spec: SweepSpec) -> None:
    """The shape of a spec, before any value in it is used."""
    if not isinstance(spec.preset, str):
        raise ConfigError(f"preset must be a string like \"single-pair\", got {spec.preset!r}")
    for kind in ("set", "grid", "zip"):
        if not isinstance(getattr(spec, kind), dict):
            raise ConfigError(f"[{kind}] must be a table of field = value(s), got "
                              f"{getattr(spec, kind)!r}")
    for kind in ("grid", "zip"):
        for name, values in getattr(spec, kind).items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"[{kind}] {name} must be a non-empty list of values")
            if name == "seed" or name == "seeds":
                raise ConfigError("give seeds as the top-level seeds = [...], not an axis")
    check_seeds(spec.seeds, "seeds")


def count_points(spec: SweepSpec) -> int:
    """How many (config, seed) points the spec makes, without making them."""
    zipped = len(next(iter(spec.zip.values()))) if spec.zip else 1
    return math.prod(len(v) for v in spec.grid.values()) * zipped * len(spec.seeds)


def batched_fields(cfg) -> tuple[str, ...]:
    """The fields that may differ between instances of one compiled program."""
    return type(cfg).BATCHED_FIELDS


def load_spec(path) -> SweepSpec:
    """Read and validate a TOML spec; raises ConfigError naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep spec {path} does not exist")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
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
    elif not isinstance(seeds, list):
        raise ConfigError(f"{path}: seeds must be a list of integers >= 0 or a string like '0-3'")
    spec = SweepSpec(preset=raw["preset"], seeds=tuple(check_seeds(seeds, f"{path}: seeds")),
                     set=raw.get("set", {}), grid=raw.get("grid", {}), zip=raw.get("zip", {}))
    plan(spec)  # validates every point and group before any work
    return spec


def plan(spec: SweepSpec) -> list["Group"]:
    """The sweep's shape groups, each checked to fit in memory (check_fits)."""
    groups = group_points(expand(spec))
    for group in groups:
        check_fits(group.cfg, len(group.instances), f"group of N={group.cfg.N}")
    return groups


def expand(spec: SweepSpec) -> list[tuple[ToyConfig, Instance]]:
    """Every (config, instance) of the sweep, in spec order (seeds vary fastest)."""
    _check_spec_types(spec)
    base = spec.base()
    lengths = {len(v) for v in spec.zip.values()}
    if len(lengths) > 1:
        raise ConfigError(f"[zip] axes must have equal lengths, got {sorted(lengths)}")
    if set(spec.grid) & set(spec.zip):
        raise ConfigError(f"{sorted(set(spec.grid) & set(spec.zip))[0]!r} is both a grid and "
                          "a zip axis")
    n_points = count_points(spec)  # before building any: a 10**8-point grid is refused now
    if n_points > MAX_POINTS:
        raise ConfigError(f"the sweep has {n_points:,} points (configs x seeds); at most "
                          f"{MAX_POINTS:,} are allowed")
    zipped = [dict(zip(spec.zip, vals)) for vals in zip(*spec.zip.values())] or [{}]
    grid = [dict(zip(spec.grid, vals)) for vals in itertools.product(*spec.grid.values())]
    points = []
    for g in grid:
        for z in zipped:
            changes = {k: typed(k, v, type(base)) for k, v in {**g, **z}.items()}
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

def run_group(group: Group, progress: bool = True, checkpoints=None) -> dict:
    """Train and analyse one group; returns its rows, pair rows and statistics.
    checkpoints: a training.checkpoints.CheckpointPlan (train resumes from it, saves there).
    The rows are what the group's family measures for a run's summary (families.measure),
    beside each instance's own config."""
    from toymodels.families import measure
    from toymodels.training.loop import make_chunk_fn, train

    chunk_fn, _ = make_chunk_fn(group.cfg)
    compiled_before = chunk_fn._cache_size()
    t0 = time.perf_counter()
    result = train(group.cfg, group.instances, progress=progress, desc=f"group {group.id}",
                   checkpoints=checkpoints)
    train_seconds = time.perf_counter() - t0
    measured, diverged_at = measure(group.cfg, group.instances, result)
    rows, pair_rows = [], []
    for n, inst in enumerate(group.instances):
        own = group.cfg.replace(**{k: getattr(inst, k) for k in batched_fields(group.cfg)})
        rows.append({"group": group.id, "seed": inst.seed,
                     **{f.name: _cell(getattr(own, f.name))
                        for f in dataclasses.fields(own)},
                     "diverged": diverged_at[n] is not None, "diverged_step": diverged_at[n],
                     **measured.rows[n]})
        pair_rows += [{"group": group.id, "seed": inst.seed, **p}
                      for p in measured.pair_rows[n]]
    return {"rows": rows, "pairs": pair_rows, "seconds": time.perf_counter() - t0,
            "train_seconds": train_seconds,
            "compiles": chunk_fn._cache_size() - compiled_before}


def _cell(value):
    """A config value as a table cell: tuples (templates, per-feature p_active) as JSON."""
    return json.dumps([list(v) if isinstance(v, tuple) else v for v in value]) \
        if isinstance(value, tuple) else value


# ---- the sweep --------------------------------------------------------------------


def run_sweep(spec: SweepSpec, out_dir, *, backend: str = "local", ray_address=None,
              progress: bool = True, checkpoint_every: int | None = None,
              keep_checkpoints: bool = False) -> dict:
    """Run every group not yet stored in out_dir, then assemble the tables.

    A group saves its training state every checkpoint_every steps (None: every
    resume.CHECKPOINT_SECONDS; 0: never) in out_dir/.checkpoints/<group id>/, so a rerun
    resumes a killed group where it stopped; its checkpoints go when its rows are stored,
    or move to out_dir/checkpoints/<group id>/ with keep_checkpoints (read them with
    resume.read_checkpoints)."""
    from toymodels.training.checkpoints import check_every
    from toymodels.store import claim

    groups = plan(spec)
    for group in groups:
        check_every(checkpoint_every, keep_checkpoints, group.cfg)
    # Groups land in the directory one by one, so it is locked for the whole sweep.
    with claim(out_dir, resume=True) as out:
        return _run_groups(spec, groups, out, backend, ray_address, progress,
                           checkpoint_every, keep_checkpoints)


def check_sweep_dir(spec: SweepSpec, out_dir) -> dict:
    """The manifest already in out_dir ({} if none). RunDirError if out_dir is not a sweep
    directory, or holds another spec's sweep (its rows are never dropped or mixed)."""
    from toymodels.store import read_json, refuse_link

    out = Path(out_dir)
    refuse_link(out)
    # a sweep killed before its manifest was written holds only groups/ (and .checkpoints/)
    ours = (out / "manifest.json").is_file() or (
        out.is_dir() and (out / "groups").is_dir()
        and {p.name for p in out.iterdir()} <= {"groups", ".checkpoints"})
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not ours)):
        raise RunDirError(f"--out {out} exists and is not a sweep directory; choose another")
    if not (out / "manifest.json").is_file():
        return {}
    manifest = read_json(out / "manifest.json", "sweep manifest")
    try:
        theirs = manifest.get("spec_hash") or SweepSpec(**manifest["spec"]).canonical_hash()
    except (KeyError, TypeError, ConfigError):
        raise RunDirError(f"{out}/manifest.json does not say which spec it holds") from None
    if theirs != spec.canonical_hash():
        raise RunDirError(f"--out {out} holds a sweep of another spec (preset "
                          f"{manifest['spec'].get('preset')!r}); give this spec its own "
                          "directory")
    return manifest


def _run_groups(spec, groups, out: Path, backend, ray_address, progress,
                checkpoint_every=None, keep_checkpoints=False) -> dict:
    from toymodels.training.checkpoints import check_checkpoints
    from toymodels.store import provenance, write_json

    manifest = check_sweep_dir(spec, out)
    stats = manifest.get("groups", {})
    manifest_path = out / "manifest.json"
    todo = [g for g in groups if not (out / "groups" / f"{g.id}.parquet").exists()]
    plans = {g.id: group_checkpoints(out, g, checkpoint_every, keep_checkpoints) for g in todo}
    for p in plans.values():  # before any work
        check_checkpoints(p, what=f"--out {out}",
                          remedy="delete that folder to train the group from step 0")
    (out / "groups").mkdir(parents=True, exist_ok=True)
    # The spec is recorded before the first group, so a killed sweep's directory says
    # which spec it belongs to.
    _atomic(manifest_path, lambda p: write_json(p, _manifest(spec, groups, stats)))
    if backend == "ray":
        results = _run_ray(todo, ray_address, plans)
    else:
        results = (run_group(g, progress, plans[g.id]) for g in todo)
    for group, result in zip(todo, results):
        _write_group(out, group, result)
        _settle_checkpoints(out, group.id, keep_checkpoints)
        stats[group.id] = {"config": group.cfg.to_dict(), "instances": len(group.instances),
                           "seconds": result["seconds"], "train_seconds": result["train_seconds"],
                           "compiles": result["compiles"]}
        _atomic(manifest_path, lambda p: write_json(p, _manifest(spec, groups, stats)))
        print(f"group {group.id}: {len(group.instances)} instances in "
              f"{result['seconds']:.1f} s, {result['compiles']} compiled program(s)", flush=True)
    manifest = _manifest(spec, groups, stats) | provenance()
    _atomic(manifest_path, lambda p: write_json(p, manifest))
    for group in groups:  # those a killed sweep stored but had not tidied
        _settle_checkpoints(out, group.id, keep_checkpoints)
    with contextlib.suppress(OSError):
        (out / ".checkpoints").rmdir()  # only if empty
    _assemble(out, groups)
    return manifest


def group_checkpoints(out: Path, group: Group, every=None, keep=False):
    """Where and how a group of the sweep in out saves its training state."""
    from toymodels.training.checkpoints import CheckpointPlan, identity_of
    return CheckpointPlan(out.absolute() / ".checkpoints" / group.id,
                          identity_of(None, group.cfg, group.instances), every=every, keep=keep)


def _settle_checkpoints(out: Path, group_id: str, keep: bool) -> None:
    """A stored group's checkpoints: moved to out/checkpoints/<id>/ (keep), else removed."""
    import shutil

    path = out / ".checkpoints" / group_id
    if not path.exists():
        return
    if keep:
        (out / "checkpoints").mkdir(exist_ok=True)
        shutil.rmtree(out / "checkpoints" / group_id, ignore_errors=True)
        os.rename(path, out / "checkpoints" / group_id)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _manifest(spec, groups, stats):
    return {"spec": spec.to_dict(), "spec_hash": spec.canonical_hash(), "group_order": [g.id for g in groups],
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


def _run_ray(groups: list[Group], address, plans: dict):
    """Each group as a Ray task, one accelerator each where the cluster has any."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False, include_dashboard=False)
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    task = ray.remote(num_gpus=gpus)(run_group)
    refs = [task.remote(g, False, plans[g.id]) for g in groups]
    for ref in refs:  # in spec order, so the manifest and files follow it
        yield ray.get(ref)


FOIL_COLUMNS = {"best_qk_matched": "best_qk_foil_matched",
                "min_matched_cos": "foil_min_matched_cos"}
"""Each alignment column the sweep table prints -> the column of its foil in the same rows
(the random twin's value, families.random_twin); sweeps stored before foils lack it."""


def sweep_table(out_dir) -> str:
    """One line per group: its shape, size, time and mean alignment, beside its foil's mean
    (a random twin of each head) and how many of the group's rows the foil would pass
    (foil >= families.ALIGNED: a defect of the check, flagged !)."""
    import pyarrow.parquet as pq

    from toymodels.families import ALIGNED, FOIL_DRAWS, FOIL_QUANTILE

    out = Path(out_dir)
    manifest = json.loads((out / "manifest.json").read_text())
    rows = pq.read_table(out / "results.parquet").to_pylist()
    transformer = bool(rows) and "best_qk_matched" in rows[0]
    shape = ("D", "H", "n_layers", "n_heads") if transformer else ("N", "D", "H", "m")
    metric = "best_qk_matched" if transformer else "min_matched_cos"
    foil = FOIL_COLUMNS[metric]
    has_foil = bool(rows) and foil in rows[0]
    lines = [f"{'group':<13}" + "".join(f"{k[:8]:>9}" for k in shape) +
             f"{'inst':>6}{'sec':>8}{'comp':>5}{'diverged':>9}"
             f"{'mean QK match (best head)' if transformer else 'mean min cos':>26}"
             f"{'foil':>8}{'foil passes':>12}"]
    flagged = False
    for gid in manifest["group_order"]:
        sub = [r for r in rows if r["group"] == gid]
        cfg, stat = manifest["groups"][gid]["config"], manifest["groups"][gid]
        cos = [r[metric] for r in sub if r.get(metric) is not None]
        foils = [r[foil] for r in sub if r.get(foil) is not None]
        passing = sum(f >= ALIGNED for f in foils)
        flagged |= passing > 0
        foil_text = f"{np.mean(foils):.4f}" if foils else "-"
        passes_text = (f"{passing}/{len(foils)}" + ("!" if passing else "")) if foils else "-"
        lines.append(f"{gid:<13}" + "".join(f"{cfg[k]:>9}" for k in shape) +
                     f"{len(sub):>6}{stat['seconds']:>8.1f}{stat['compiles']:>5}"
                     f"{sum(r['diverged'] for r in sub):>9}"
                     f"{(f'{np.mean(cos):.4f}' if cos else '-'):>26}"
                     f"{foil_text:>8}{passes_text:>12}")
    if has_foil:
        lines.append(f"foil: {foil}, a random twin of each head (its singular values, Haar-random "
                     f"singular vectors; {FOIL_QUANTILE:.0%} quantile of {FOIL_DRAWS} draws); "
                     f"foil passes: rows where it reaches {ALIGNED:g}"
                     + (" (! = the check cannot reject a wrong head there)" if flagged else ""))
    else:
        lines.append(f"foil: - (the rows have no {foil} column: a sweep stored before foils, "
                     "or a family that measures none)")
    return "\n".join(lines)
