"""A run directory on disk, written atomically and read back without executing code.

  DIR/summary.json   preset, config, versions, git commit, per-instance results
  DIR/params.npz     trained W [I, D, N], b [I, N], W_Q, W_K [I, H, D]
  DIR/curves.npz     per-step losses recon, attn [I, steps]
  DIR/analysis.npz   singular_values [I, K], cos_u, cos_v [I, N, K]
  DIR/alignment.png  figure drawn from the files above
  DIR/checkpoints/   with --keep-checkpoints: the training state at kept steps (resume.py),
                     read by load_run(DIR).params_at(step)

A run is staged in a sibling folder and renamed into place, so an interrupted
or failed run never leaves a half-written DIR, and an existing run is only
replaced on request.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from toymodels.config import ToyConfig
from toymodels.config_transformer import TransformerConfig
from toymodels.errors import RunDirError

RUN_FILES = ("summary.json", "params.npz", "curves.npz", "analysis.npz")
PARAM_KEYS = ("W", "b", "W_Q", "W_K")
ANALYSIS_MARKER = "analysis.json"


def check_out_dir(out_dir, overwrite: bool, marker: str = "summary.json") -> Path:
    """Fail early, before any work, if out_dir cannot receive a run (an existing one is
    recognised by its marker file)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out} is a file; give a directory path")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise RunDirError(f"--out {out} already exists and is not empty; pass --overwrite "
                          "to replace it or choose another directory")
    if out.is_dir() and any(out.iterdir()) and not (out / marker).exists():
        raise RunDirError(f"--out {out} holds files that are not a toymodels run; "
                          "refusing to replace it")
    check_creatable(out, "--out")
    return out


def check_creatable(path, flag: str) -> None:
    """RunDirError unless path's nearest existing ancestor is a writable directory."""
    path = Path(path).absolute()
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise RunDirError(f"{flag} {path}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RunDirError(f"{flag} {path}: {parent} is not writable")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


@contextlib.contextmanager
def claim(out_dir, overwrite: bool = False, marker: str = "summary.json"):
    """Hold out_dir for one writer, from before any work until its result is committed.

    Checks out_dir (check_out_dir), creates its parent folders (so an unusable path
    fails now, not after training), takes an exclusive lock `.<name>.lock` beside it
    (another process writing there gets a one-line RunDirError), and tidies what a
    killed writer left: its staging folders, and a previous run it had moved aside."""
    out = check_out_dir(out_dir, overwrite, marker)
    created = _make_parents(out)
    try:
        lock = _lock(out)
    except BaseException:
        for folder in reversed(created):  # leave no trace of a refused claim
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    try:
        _recover(out.absolute())
        yield out
    finally:
        _unlock(lock)


def _make_parents(out: Path) -> list[Path]:
    missing = []
    parent = out.absolute().parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    try:
        for folder in reversed(missing):
            folder.mkdir()
    except OSError as e:
        raise RunDirError(f"--out {out}: cannot create {e.filename}: {e.strerror}") from None
    return list(reversed(missing))


def _lock_path(out: Path) -> Path:
    out = out.absolute()
    return out.with_name(f".{out.name}.lock")


def _lock(out: Path):
    """An flock on .<name>.lock: the kernel drops it when its process dies, so a killed
    run never blocks the next one. The file holds the pid, for the message."""
    import fcntl

    path = _lock_path(out)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise RunDirError(f"--out {out}: cannot create {path}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RunDirError(f"--out {out} is being written by another toymodels process "
                              f"(pid {holder}); wait for it or choose another directory") \
                from None
        # The holder before us may have unlinked the file after we opened it: retry on the
        # file that is there now, or two writers would hold two different locks.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            return fd, path
        os.close(fd)


def _unlock(lock) -> None:
    fd, path = lock
    with contextlib.suppress(OSError):
        path.unlink()  # while still holding it, so nobody locks a file about to vanish
    os.close(fd)


def _stale(folder: Path, kind: str) -> bool:
    """Whether a `.<name>.<kind>-<pid>-...` folder belongs to a process that is gone."""
    pid = folder.name.rsplit(f".{kind}-", 1)[-1].split("-", 1)[0]
    return pid.isdigit() and not _pid_alive(int(pid))


def _recover(out: Path) -> None:
    """Clean up after writers of out that were killed: their staging folders go; a
    previous run they had moved aside while replacing it goes back if out is missing."""
    for folder in out.parent.glob(f".{out.name}.staging-*"):
        if _stale(folder, "staging"):
            shutil.rmtree(folder, ignore_errors=True)
    for folder in out.parent.glob(f".{out.name}.old-*"):
        if _stale(folder, "old"):
            if not out.exists():
                os.rename(folder, out)
            else:
                shutil.rmtree(folder, ignore_errors=True)


def stage_dir(out: Path) -> Path:
    """A fresh staging folder beside out (same filesystem, so the final rename is atomic),
    named with this process' id so that a later run can tell whether it is stale. Its mode
    follows the umask, as a plain mkdir's would (mkdtemp's is always 0700)."""
    parent = out.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-{os.getpid()}-", dir=parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)
    return staging


@contextlib.contextmanager
def staged(out: Path, overwrite: bool = False, marker: str = "summary.json"):
    """Yield a staging folder; on success it becomes out (see commit_dir), on any failure
    it is removed, so out holds either the old complete result or the new one, never a
    partial one. Call it inside claim(out), which keeps other writers away."""
    staging = stage_dir(out)
    try:
        yield staging
        commit_dir(staging, out, overwrite, marker)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def commit_dir(staging: Path, out: Path, overwrite: bool = False,
               marker: str = "summary.json") -> None:
    """Move a finished staging folder to out. Decided now, not when the run started:

    - out missing or empty: rename (rename(2) may replace an empty directory: nothing lost);
    - overwrite and out holds a previous result (its marker file): that result is moved
      aside, the new one renamed in, the old one deleted (put back if the rename fails);
    - anything else (files appeared in out meanwhile, or no overwrite): nothing in out is
      touched; the new result is kept beside it as out.conflict-<time> and RunDirError
      says so. Nothing is ever deleted that this run did not create, or replace on request.
    """
    out = out.absolute()
    if overwrite and out.is_dir() and (out / marker).exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.rename(out, old)
        try:
            os.rename(staging, out)
        except OSError:
            os.rename(old, out)
            _keep_as_conflict(staging, out)
        shutil.rmtree(old)
        return
    try:
        os.rename(staging, out)  # fails on a non-empty directory (ENOTEMPTY) or a file
    except OSError:
        _keep_as_conflict(staging, out)


def _keep_as_conflict(staging: Path, out: Path):
    kept = out.with_name(f"{out.name}.conflict-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    os.rename(staging, kept)
    raise RunDirError(f"{out} was changed by someone else during the run, so it was left as "
                      f"it is; the new results are in {kept}")


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, allow_nan=True) + "\n")


def versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for package in ("toymodels", "jax", "jaxlib", "flax", "optax", "numpy", "scipy"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


def git_commit() -> str | None:
    """HEAD of the repository holding this package, suffixed '-dirty' if it has edits."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty.strip() else "")


@dataclass
class LoadedRun:
    config: "ToyConfig | TransformerConfig"
    summary: dict
    params: dict[str, np.ndarray]
    """W [I, D, N], b [I, N], W_Q, W_K [I, H, D]."""
    curves: dict[str, np.ndarray]
    analysis: dict[str, np.ndarray]
    dynamics: dict[str, np.ndarray] | None = None
    """Metrics recorded during training (if the run recorded any): 'steps' [R], ... [I, R, ...]."""
    run_dir: Path | None = None

    @property
    def checkpoint_steps(self) -> list[int]:
        """Steps at which the run kept its training state (--keep-checkpoints), ascending;
        [] if it kept none."""
        if self.run_dir is None or not (self.run_dir / "checkpoints").is_dir():
            return []
        return self._checkpoints().steps

    def params_at(self, step: int) -> dict[str, np.ndarray]:
        """Parameters after `step` training steps, from a kept checkpoint, named and shaped
        as params (W [I, D, N], ...). RunDirError if that step was not kept or its files
        are damaged."""
        return self._checkpoints().params_at(step)

    def _checkpoints(self):
        from toymodels.resume import read_checkpoints
        if self.run_dir is None:
            raise RunDirError("this run was not read from a directory: it has no checkpoints")
        return read_checkpoints(self.run_dir / "checkpoints")


def read_json(path: Path, what: str = "toymodels") -> dict:
    """A JSON object from path, or RunDirError naming the file and what is wrong."""
    try:
        obj = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunDirError(f"{path} is unreadable or corrupt ({e}); it is not a {what} file "
                          "this version can read") from None
    if not isinstance(obj, dict):
        raise RunDirError(f"{path} holds a JSON {type(obj).__name__}, not an object")
    return obj


def _load_npz(path: Path, required=()) -> dict[str, np.ndarray]:
    """Numeric arrays from an .npz, never unpickling; RunDirError naming the file else."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise RunDirError(f"{path} is unreadable or corrupt: {e}") from None
    missing = [k for k in required if k not in arrays]
    if missing:
        raise RunDirError(f"{path} lacks {', '.join(missing)}")
    for k, a in arrays.items():
        if a.dtype.kind not in "biuf":
            raise RunDirError(f"{path}: {k} holds {a.dtype} values, not numbers")
    return arrays


def load_run(run_dir) -> LoadedRun:
    """Read a run directory back: config, summary, parameters, loss curves, analysis arrays.
    A missing, truncated or malformed file raises RunDirError naming it.

    A run made with --keep-checkpoints also gives its parameters during training:
    `load_run(d).checkpoint_steps` lists the kept steps, `load_run(d).params_at(step)`
    returns {name: [I, ...]} after that many steps (the last kept step is the final one)."""
    run_dir = Path(run_dir)
    missing = [name for name in RUN_FILES if not (run_dir / name).exists()]
    if missing:
        raise RunDirError(f"{run_dir} is not a toymodels run (missing {', '.join(missing)})")
    summary = read_json(run_dir / "summary.json", "run summary")
    config_class = TransformerConfig if summary.get("family") == "transformer" else ToyConfig
    try:
        config = config_class.from_dict(summary["config"])
    except (TypeError, KeyError, ValueError, AttributeError) as e:
        raise RunDirError(f"{run_dir}/summary.json has an unreadable config: {e}") from None
    required = ({"params": ("E", "W_Q", "W_K", "W_V", "W_O"), "curves": ("task",)}
                if config_class is TransformerConfig else
                {"params": PARAM_KEYS, "curves": ("recon", "attn")})
    return LoadedRun(config=config, summary=summary,
                     params=_load_npz(run_dir / "params.npz", required["params"]),
                     curves=_load_npz(run_dir / "curves.npz", required["curves"]),
                     analysis=_load_npz(run_dir / "analysis.npz"),
                     dynamics=_load_npz(run_dir / "dynamics.npz")
                     if (run_dir / "dynamics.npz").exists() else None,
                     run_dir=run_dir)


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows as CSV; columns in order of first appearance, None as an empty cell."""
    import csv

    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)


def write_analysis(out_dir, analysis, meta: dict) -> Path:
    """Write an analysis as out_dir/{heads,pairs,features}.csv, arrays.npz and
    analysis.json (what was analysed, and how), replacing a previous analysis in out_dir
    atomically (never a folder that holds anything else)."""
    out = Path(out_dir)
    with claim(out, overwrite=True, marker=ANALYSIS_MARKER), \
            staged(out, overwrite=True, marker=ANALYSIS_MARKER) as staging:
        write_csv(staging / "heads.csv", analysis.heads)
        write_csv(staging / "pairs.csv", analysis.pairs)
        write_csv(staging / "features.csv", analysis.features)
        np.savez(staging / "arrays.npz", **analysis.arrays)
        write_json(staging / ANALYSIS_MARKER, {**meta, "axes": list(analysis.axes),
                                                "versions": versions(),
                                                "git_commit": git_commit()})
    return out
