"""Checkpoints inside a run: the training state every K steps, so a killed run resumes.

A checkpoint folder holds what one call of train() needs to continue where it stopped:

  run.json                  what is trained (preset, config, instances) and by which
                            versions; a run resumes only from checkpoints of exactly that
  steps/<S>/                the training state after S steps (an orbax CheckpointManager)
  steps/<S>/toymodels-digest.json   size and SHA-256 of each file of that step, written
                            once orbax has finalized it

Where it lives: a run's in `.<DIR>.ckpt/` beside its output DIR (DIR itself is written
once, at the end), a sweep group's in `<SWEEP>/.checkpoints/<group id>/`. It is removed
once the results are stored, or kept on request (--keep-checkpoints) as DIR/checkpoints/
(a sweep: <SWEEP>/checkpoints/<group id>/), where read_checkpoints reads it.

The state saved at step S, host NumPy arrays exactly as trained (float32, no rounding):
  I  the run's instances (device padding dropped)    R_S  record points reached by step S
  params     {name: [I, ...]}        model parameters (nnx pure dict)
  opt_state  {"00000": [I, ...]}     the optax state's leaves in tree order; its structure
                                     comes from the optimizer's init, never from the file
  curves     {name: [I, S]}          per-step curves so far
  metrics    {name: [I, R_S, ...]}   recorded dynamics so far (absent while R_S = 0)
  step       []                      S

An instance's data at step t is fold_in(data_key, t), so training continued from these
at the same chunk boundary is the uninterrupted run, bit for bit.

A step counts only if orbax finalized it (it writes `<S>.orbax-checkpoint-tmp` and renames
it when complete) and every file matches its digest; a step that does not (killed while
saving, truncated or damaged later) is reported in one line on stderr and removed, and
the one before it is used. Saves are synchronous: nothing is in flight between saves.
"""

import contextlib
import json
import numbers
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toymodels.training.digest import DIGEST_FILE, verify_step, write_digest
from toymodels.errors import ConfigError, RunDirError

FORMAT = 1
IDENTITY_FILE = "run.json"
ORBAX_TMP = ".orbax-checkpoint-tmp"  # orbax's suffix for a step it has not finalized

CHECKPOINT_SECONDS = 300
"""Default: save at the first chunk boundary 5 minutes after the last save. A save costs
well under a second for toy-sized models, so this bounds the overhead below 1% of any run
and the work lost to a kill to 5 minutes (plus one chunk); runs shorter than that never
write one. Time, not steps, because step time varies 1000-fold between presets."""

KEPT_CHECKPOINTS = 10
"""With --keep-checkpoints and no --checkpoint-every: about this many, evenly spaced."""

LATEST_KEPT = 2
"""Without --keep-checkpoints, the last this-many steps stay on disk: one to resume from,
and the one before it in case the last is damaged."""


@dataclass(frozen=True)
class CheckpointPlan:
    """Where and how often train() saves its state (plain data, so it travels to Ray)."""

    path: Path
    """The checkpoint folder (created on the first save)."""
    identity: dict = field(hash=False)
    """What is trained, as JSON: a folder holding another identity is never resumed."""
    every: int | None = None
    """Save every this-many steps (a multiple of the chunk size); 0: never; None: every
    CHECKPOINT_SECONDS (KEPT_CHECKPOINTS evenly spaced steps with keep)."""
    keep: bool = False
    """Keep every saved step, and save the last step too (for read_checkpoints)."""


def run_checkpoint_dir(out) -> Path:
    """The checkpoint folder of a run into out: `.<name>.ckpt` beside it (same filesystem,
    outside the directory that is renamed into place at the end)."""
    out = Path(out).absolute()
    return out.with_name(f".{out.name}.ckpt")


def identity_of(preset_name: str | None, cfg, instances) -> dict:
    """What a run trains, as plain JSON: equal for runs that must give equal results."""
    return _jsonable({"preset": preset_name, "config": cfg.to_dict(),
                      "instances": [{"seed": i.seed, **i.overrides()} for i in instances]})


def _jsonable(obj):
    return json.loads(json.dumps(obj, sort_keys=True))


def check_every(every: int | None, keep: bool, cfg, flag: str = "--checkpoint-every") -> None:
    """ConfigError unless every is None, 0, or a positive multiple of cfg's chunk size
    (saves happen between chunks, so any other value could not be honoured)."""
    if every is None:
        return
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise ConfigError(f"{flag} must be an integer >= 0 (0: no checkpoints), got {every!r}")
    if every == 0 and keep:
        raise ConfigError(f"--keep-checkpoints with {flag} 0 keeps nothing; drop one of them")
    chunk = min(cfg.chunk_steps, cfg.steps)
    if every % chunk:
        lower = max(chunk, every // chunk * chunk)
        raise ConfigError(f"{flag} {every} must be a multiple of chunk_steps ({chunk}), "
                          f"the steps between checkpoint chances; e.g. {lower} or "
                          f"{lower + chunk}")


def save_interval(plan: CheckpointPlan, cfg) -> int | None:
    """Steps between saves (None: by time)."""
    if plan.every is not None or not plan.keep:
        return plan.every
    chunk = min(cfg.chunk_steps, cfg.steps)
    return chunk * max(1, round(cfg.steps / KEPT_CHECKPOINTS / chunk))


def note(message: str) -> None:
    """One line on stderr, as the CLI writes its messages."""
    sys.stderr.write(f"toymodels: {message}\n")
    sys.stderr.flush()


# ---- before any work: does the folder belong to this run? ---------------------------


def read_identity(path: Path) -> dict:
    """run.json of a checkpoint folder; RunDirError if it is unreadable."""
    from toymodels.store import read_json
    record = read_json(Path(path) / IDENTITY_FILE, "toymodels checkpoint")
    if record.get("format") != FORMAT or "identity" not in record:
        raise RunDirError(f"{path}/{IDENTITY_FILE} is not a checkpoint record this version "
                          "can read; delete that folder to start from step 0")
    return record


def check_checkpoints(plan: CheckpointPlan, overwrite: bool = False, what: str = "--out",
                      remedy: str = "rerun that run's command to resume it, or pass "
                                    "--overwrite to discard them") -> None:
    """Refuse (RunDirError, one line) checkpoints of another run at plan.path, or with
    overwrite discard them; checkpoints of this very run are left to resume from."""
    _remove_stale_creations(plan.path)
    if plan.path.is_symlink() or (plan.path.exists() and not plan.path.is_dir()):
        raise RunDirError(f"{plan.path} is where toymodels keeps this run's checkpoints, but it "
                          "is a link or a file; move it away")
    if not plan.path.exists():
        return
    try:
        theirs = read_identity(plan.path)["identity"]
    except RunDirError:
        if not overwrite:
            raise
        theirs = None
    ours = _jsonable(plan.identity)
    if theirs == ours:
        _refuse_links(plan.path)
        return
    if overwrite:
        shutil.rmtree(plan.path)
        note(f"discarded the checkpoints of another run in {plan.path} (--overwrite)")
        return
    raise RunDirError(f"{what} has checkpoints of an unfinished run with "
                      f"{differences(theirs, ours)} in {plan.path}; {remedy}")


def _refuse_links(path: Path) -> None:
    """RunDirError if a checkpoint folder holds a link: toymodels writes none there."""
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            if (Path(root) / name).is_symlink():
                raise RunDirError(f"{Path(root) / name} is a symbolic link, which toymodels "
                                  f"never writes among checkpoints; remove it, or delete {path} "
                                  "to start from step 0")


def _remove(path: Path) -> str:  # a damaged step; says what happened, for the note
    try:
        return shutil.rmtree(path) or "removed it"
    except OSError as e:
        return f"could not remove it ({e.strerror or e})"


def differences(theirs: dict, ours: dict) -> str:
    """What differs between two identities, in a few words."""
    parts = []
    if theirs.get("preset") != ours.get("preset"):
        parts.append(f"preset {theirs.get('preset')!r} there, {ours.get('preset')!r} now")
    a, b = theirs.get("config", {}), ours.get("config", {})
    changed = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    parts += [f"{k}={a.get(k)!r} there, {b.get(k)!r} now" for k in changed[:3]]
    if len(changed) > 3:
        parts.append(f"{len(changed) - 3} more config fields")
    if theirs.get("instances") != ours.get("instances"):
        seeds = ([i.get("seed") for i in theirs.get("instances", [])],
                 [i.get("seed") for i in ours.get("instances", [])])
        parts.append(f"seeds {_seed_text(seeds[0])} there, {_seed_text(seeds[1])} now"
                     if seeds[0] != seeds[1] else "other --vary values")
    return "another config (" + "; ".join(parts or ["another record"]) + ")"


def _seed_text(seeds: list) -> str:
    if len(seeds) > 1 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(map(str, seeds[:6])) + (",..." if len(seeds) > 6 else "")


def _remove_stale_creations(path: Path) -> None:
    """Half-created folders (`<name>.tmp-<pid>`) of killed processes."""
    from toymodels.store import pid_alive
    for tmp in path.parent.glob(f"{path.name}.tmp-*"):
        pid = tmp.name.rsplit(".tmp-", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def discard(plan: CheckpointPlan) -> None:
    """Remove a finished run's checkpoint folder."""
    shutil.rmtree(plan.path, ignore_errors=True)


def export(plan: CheckpointPlan, dest: Path) -> None:
    """Copy the checkpoint folder to dest (hard links where the filesystem allows: the
    files are never written again), for --keep-checkpoints."""
    if not plan.path.exists():
        return

    def link(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(plan.path, dest, copy_function=link)


# ---- during training -----------------------------------------------------------------


@dataclass
class Resumed:
    """A restored training state (see the module docstring for names and shapes)."""

    step: int
    params: dict
    opt_leaves: list
    curves: dict
    metrics: dict | None


class Session:
    """train()'s side of a CheckpointPlan: restore once, then save at chunk boundaries."""

    def __init__(self, plan: CheckpointPlan, cfg):
        self.plan = plan
        self.cfg = cfg
        self.steps_dir = plan.path / "steps"
        self.interval = save_interval(plan, cfg)
        self._manager = None
        self._last_save = time.monotonic()

    # -- restore

    def restore(self, expect_params: dict, expect_opt: list, n_real: int,
                n_recorded) -> Resumed | None:
        """The latest good state, or None. expect_params {name: (shape, dtype)} and
        expect_opt [(shape, dtype)] are what init gives (instance axis n_real);
        n_recorded(S) is how many record points lie in steps 1..S."""
        if not self.plan.path.exists():
            return None
        record = read_identity(self.plan.path)
        if record["identity"] != _jsonable(self.plan.identity):
            raise RunDirError(f"{self.plan.path} holds checkpoints of another run with "
                              f"{differences(record['identity'], self.plan.identity)}; "
                              "delete it to start from step 0")
        self._warn_if_versions_changed(record)
        steps = self._candidate_steps()
        for step in steps:
            where = f"checkpoint at step {step} in {self.plan.path}"
            problem = verify_step(self.steps_dir / str(step))
            if problem is None:
                try:
                    return self._read(step, expect_params, expect_opt, n_real, n_recorded)
                except Exception as e:  # orbax and tensorstore raise many kinds
                    problem = f"unreadable: {_first_line(e)}"
            removed = _remove(self.steps_dir / str(step))
            note(f"{where} is damaged ({problem}); {removed}, trying the one before")
            if self._manager is not None:
                self._manager.reload()
        if steps:
            note(f"no usable checkpoint left in {self.plan.path}; starting from step 0")
        return None

    def _candidate_steps(self) -> list[int]:
        """Finalized steps, latest first; orbax's unfinalized ones are reported and go."""
        if not self.steps_dir.is_dir():
            return []
        steps = []
        for entry in self.steps_dir.iterdir():
            if entry.is_symlink():
                _refuse_links(self.steps_dir)
            if ORBAX_TMP in entry.name:
                removed = _remove(entry)
                note(f"checkpoint {entry.name.split('.')[0]} in {self.plan.path} was never "
                     f"finished (killed while saving); {removed}")
            elif entry.name.isdigit() and entry.is_dir():
                steps.append(int(entry.name))
        return sorted(steps, reverse=True)

    def _read(self, step, expect_params, expect_opt, n_real, n_recorded) -> Resumed:
        import orbax.checkpoint as ocp

        tree = self.manager().restore(step, args=ocp.args.StandardRestore())
        problem = check_state(tree, step, self.cfg.steps, expect_params, expect_opt, n_real,
                              n_recorded(step))
        if problem:
            raise ValueError(problem)
        opt = tree["opt_state"]
        return Resumed(step=step, params=tree["params"],
                       opt_leaves=[opt[k] for k in sorted(opt)],
                       curves=tree["curves"], metrics=tree.get("metrics"))

    def _warn_if_versions_changed(self, record: dict) -> None:
        from toymodels.store import git_commit, versions
        now = {"versions": _numeric_versions(versions()), "git_commit": git_commit()}
        then = {"versions": _numeric_versions(record.get("versions", {})),
                "git_commit": record.get("git_commit")}
        changed = [k for k in now["versions"] if now["versions"][k] != then["versions"].get(k)]
        if then["git_commit"] != now["git_commit"]:
            changed.append(f"git commit {then['git_commit']} -> {now['git_commit']}")
        if changed:
            note(f"the checkpoints in {self.plan.path} were written with other code "
                 f"({', '.join(changed)}); resuming anyway: delete that folder to start "
                 "from step 0 instead")

    # -- save

    def due(self, step: int, last: bool) -> bool:
        """Whether to save after `step` steps (a chunk boundary)."""
        if self.interval == 0:
            return False
        if last:  # the run's own results follow within seconds; kept runs want this step
            return self.plan.keep
        if self.interval is None:
            return time.monotonic() - self._last_save >= CHECKPOINT_SECONDS
        return step % self.interval == 0

    def save(self, step: int, state: dict) -> None:
        """Write the state after `step` steps (module docstring), then its digest."""
        import orbax.checkpoint as ocp

        manager = self.manager(create=True)
        if step in manager.all_steps():  # a kept run resumed at its last step
            return
        manager.save(step, args=ocp.args.StandardSave({**state, "step": np.asarray(step)}),
                     force=True)
        write_digest(self.steps_dir / str(step), step)
        self._last_save = time.monotonic()

    def manager(self, create: bool = False):
        if self._manager is None:
            if create and not self.plan.path.exists():
                self._create()
            self._manager = _manager(self.steps_dir, keep=self.plan.keep)
        return self._manager

    def _create(self) -> None:
        """The folder with its run.json, made elsewhere and renamed into place."""
        from toymodels.store import git_commit, versions
        tmp = self.plan.path.with_name(f"{self.plan.path.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "steps").mkdir(parents=True)
        record = {"format": FORMAT, "identity": _jsonable(self.plan.identity),
                  "versions": versions(), "git_commit": git_commit()}
        (tmp / IDENTITY_FILE).write_text(json.dumps(record, indent=2) + "\n")
        os.rename(tmp, self.plan.path)

    def close(self) -> None:
        if self._manager is not None:
            self._manager.close()
            self._manager = None


def _manager(steps_dir: Path, keep: bool = False, reader: bool = False):
    """An orbax CheckpointManager on steps_dir; a reader never creates, cleans or deletes
    (orbax's read_only mode would log a warning for every read)."""
    import orbax.checkpoint as ocp
    from orbax.checkpoint.checkpoint_managers import LatestN

    options = ocp.CheckpointManagerOptions(
        # Synchronous: a save is complete (finalized by rename) when save() returns, so a
        # SIGKILL never leaves one in flight between saves.
        enable_async_checkpointing=False,
        preservation_policy=LatestN(None if keep or reader else LATEST_KEPT),  # None: all
        cleanup_tmp_directories=not reader, create=not reader)
    return ocp.CheckpointManager(steps_dir, options=options)


def _numeric_versions(versions: dict) -> dict:
    return {k: versions.get(k) for k in ("jax", "jaxlib", "flax", "optax", "numpy")}


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def check_state(tree, step, total_steps, expect_params, expect_opt, n_real,
                n_recorded) -> str | None:
    """None if a restored tree has every array with the shape and dtype training
    expects at `step`, else what is wrong."""
    if not isinstance(tree, dict) or not {"params", "opt_state", "curves", "step"} <= set(tree):
        return "not a toymodels training state"
    if int(tree["step"]) != step or not 0 < step <= total_steps:
        return f"it says step {int(tree['step'])}"

    def wrong(what, array, shape, dtype):
        if tuple(np.shape(array)) != tuple(shape) or np.asarray(array).dtype != dtype:
            return f"{what} is {np.shape(array)} {np.asarray(array).dtype}, expected " \
                   f"{tuple(shape)} {np.dtype(dtype)}"
        return None

    if set(tree["params"]) != set(expect_params):
        return f"parameters {sorted(tree['params'])}, expected {sorted(expect_params)}"
    for name, (shape, dtype) in expect_params.items():
        if (problem := wrong(f"parameter {name}", tree["params"][name], shape, dtype)):
            return problem
    opt = tree["opt_state"]
    if len(opt) != len(expect_opt):
        return f"{len(opt)} optimizer arrays, expected {len(expect_opt)}"
    for key, (shape, dtype) in zip(sorted(opt), expect_opt):
        if (problem := wrong(f"optimizer array {key}", opt[key], shape, dtype)):
            return problem
    for name, curve in tree["curves"].items():
        if np.shape(curve) != (n_real, step):
            return f"curve {name} is {np.shape(curve)}, expected {(n_real, step)}"
    metrics = tree.get("metrics") or {}
    if bool(metrics) != (n_recorded > 0):
        return f"{len(metrics)} recorded metrics, expected {n_recorded} record points"
    for name, m in metrics.items():
        if np.shape(m)[:2] != (n_real, n_recorded):
            return f"metric {name} is {np.shape(m)}, expected {(n_real, n_recorded)} first"
    return None


# ---- reading kept checkpoints --------------------------------------------------------


class Checkpoints:
    """Kept checkpoints of a finished run or sweep group (--keep-checkpoints), read-only.

      steps                  the saved steps, ascending
      params_at(step)        {name: [I, ...]} parameters after that many steps
      state_at(step)         everything saved then (module docstring: params, opt_state,
                             curves [I, S], metrics [I, R_S, ...], step)
    """

    def __init__(self, path):
        self.path = Path(path)
        steps_dir = self.path / "steps"
        if not steps_dir.is_dir():
            raise RunDirError(f"{self.path} holds no checkpoints (a run keeps them with "
                              "--keep-checkpoints)")
        self.steps = sorted(int(p.name) for p in steps_dir.iterdir()
                            if p.name.isdigit() and p.is_dir() and not p.is_symlink())

    def state_at(self, step: int) -> dict:
        if isinstance(step, bool) or not isinstance(step, numbers.Integral):
            raise RunDirError(f"step must be an integer, one of the kept steps "
                              f"{', '.join(map(str, self.steps)) or '(none)'}; got {step!r}")
        step = int(step)
        if step not in self.steps:
            raise RunDirError(f"no checkpoint at step {step} in {self.path}; kept steps: "
                              f"{', '.join(map(str, self.steps)) or 'none'}")
        step_dir = self.path / "steps" / str(step)
        problem = verify_step(step_dir)
        if problem:
            raise RunDirError(f"checkpoint at step {step} in {self.path} is damaged ({problem})")
        import orbax.checkpoint as ocp
        with contextlib.closing(_manager(self.path / "steps", reader=True)) as manager:
            try:
                tree = manager.restore(step, args=ocp.args.StandardRestore())
            except Exception as e:  # noqa: BLE001 (orbax raises many kinds)
                raise RunDirError(f"checkpoint at step {step} in {self.path} is unreadable: "
                                  f"{_first_line(e)}") from None
        return tree

    def params_at(self, step: int) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in self.state_at(step)["params"].items()}


def read_checkpoints(path) -> Checkpoints:
    """Kept checkpoints at path: a run's DIR/checkpoints or a sweep's
    <SWEEP>/checkpoints/<group id> (see Checkpoints)."""
    return Checkpoints(path)
