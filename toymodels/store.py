"""Atomic output directories: every result toymodels writes (a run, a sweep, a theory
table, a SAD analysis, an export) is claimed, staged in a sibling folder and renamed into
place, so an interrupted or failed command never leaves a half-written directory, and an
existing result is only replaced on request and only where toymodels wrote every file.
Also JSON and CSV writing and the provenance (package versions, git commit) every result
carries. What goes inside a run directory is rundir.py's.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path


from toymodels.errors import RunDirError

ANALYSIS_MARKER = "analysis.json"


def check_out_dir(out_dir, overwrite: bool, marker: str = "summary.json",
                  flag: str = "--out") -> Path:
    """Fail early, before any work, if out_dir cannot receive a result (an existing one is
    recognised by its marker file). overwrite replaces only a result toymodels wrote: a
    folder holding anything else (a file the user added, a result of an older version that
    did not record its files) is refused, and so is a symbolic link (see refuse_link)."""
    out = Path(out_dir)
    refuse_link(out, flag)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{flag} {out} is a file; give a directory path")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise RunDirError(f"{flag} {out} already exists and is not empty; pass --overwrite "
                              "to replace it or choose another directory")
        if not (out / marker).exists():
            raise RunDirError(f"{flag} {out} holds files that are not a toymodels run; "
                              "refusing to replace it")
        foreign = foreign_files(out)
        if foreign is None:
            raise RunDirError(f"{flag} {out} was written by a toymodels version that did not "
                              "record its files, so --overwrite cannot tell them from yours; "
                              "delete it yourself or choose another directory")
        if foreign:
            raise RunDirError(f"{flag} {out} holds {_listing(foreign)} that toymodels did not "
                              "write; --overwrite replaces only toymodels' own files: move "
                              "them out or choose another directory")
    check_creatable(out, flag)
    return out


def refuse_link(path, flag: str = "--out") -> None:
    """RunDirError if path itself is a symbolic link (dangling or not). A result directory is
    replaced by renaming, which would replace the link rather than what it points to, so
    links are refused up front, and again at commit; links among its parents are fine."""
    path = Path(path)
    if path.is_symlink():
        raise RunDirError(f"{flag} {path} is a symbolic link (to {os.readlink(path)}); give "
                          "the directory it points to, or another path")


OWNED_FILES = ".toymodels-files"
"""JSON in every committed result directory: the files toymodels put there, so that
--overwrite can replace them and refuse whatever else appeared (foreign_files)."""


def record_files(folder: Path) -> None:
    """Write folder/OWNED_FILES listing every file and link under folder."""
    write_json(folder / OWNED_FILES, {"files": sorted(
        str(p.relative_to(folder)) for p in _entries(folder) if p.name != OWNED_FILES)})


def own_files(paths) -> None:
    """Add files written beside a committed result (e.g. `toymodels report`'s report.md in
    a run directory) to the record of the result directory holding them, so that a later
    --overwrite of that result replaces them too instead of refusing them as foreign.
    Files outside a recorded result are left alone."""
    for path in (Path(p).absolute() for p in paths):
        record = path.parent / OWNED_FILES
        if not record.is_file():
            continue
        files = set(_read_record(record)) | {path.name}
        tmp = record.with_name(f".{OWNED_FILES}.tmp-{os.getpid()}")
        write_json(tmp, {"files": sorted(files)})
        os.replace(tmp, record)


def _entries(folder: Path):
    """Files and links under folder; links are not followed."""
    for root, dirs, files in os.walk(folder):
        root = Path(root)
        yield from (root / name for name in files)
        yield from (root / name for name in dirs if (root / name).is_symlink())


def foreign_files(out: Path) -> list[str] | None:
    """Paths under out (relative) that no toymodels commit recorded; None if out records
    nothing at all. A nested result (a run's analysis/) counts by its own record, but only
    where the record above it lists that record: a result copied in by hand is foreign."""
    out = Path(out)
    if not (out / OWNED_FILES).is_file():
        return None
    owned = set()
    for root, _, files in os.walk(out):  # top-down: a parent's record is read first
        root = Path(root)
        record = root / OWNED_FILES
        if OWNED_FILES in files and (root == out or record in owned):
            owned |= {root / p for p in _read_record(record)}
    return sorted(str(p.relative_to(out)) for p in _entries(out)
                  if p.name != OWNED_FILES and p not in owned)


def _read_record(path: Path) -> list[str]:
    """The paths a record lists; [] if it is unreadable (then nothing below counts as ours)."""
    try:
        listed = json.loads(path.read_text()).get("files")
    except (OSError, ValueError, AttributeError):
        return []
    return [p for p in listed if isinstance(p, str)] if isinstance(listed, list) else []


def _listing(paths: list[str], at_most: int = 3) -> str:
    shown = ", ".join(paths[:at_most])
    more = f" and {len(paths) - at_most} more" if len(paths) > at_most else ""
    return f"{'a file' if len(paths) == 1 else 'files'} ({shown}{more})"


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


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


@contextlib.contextmanager
def claim(out_dir, overwrite: bool = False, marker: str = "summary.json",
          resume: bool = False):
    """Hold out_dir for one writer, from before any work until its result is committed.

    Checks out_dir (check_out_dir; with resume, a directory the caller adds to in place,
    as a sweep does, only that it is no link and can be created), creates its parent folders (so an unusable path
    fails now, not after training), takes an exclusive lock `.<name>.lock` beside it
    (another process writing there gets a one-line RunDirError), and tidies what a
    killed writer left: its staging folders, and a previous run it had moved aside."""
    if resume:
        out = Path(out_dir)
        refuse_link(out)
        check_creatable(out, "--out")
    else:
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
    return pid.isdigit() and not pid_alive(int(pid))


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
    """Move a finished staging folder to out, first recording its files (OWNED_FILES).
    Decided now, not when the run started:

    - out missing or empty: rename (rename(2) may replace an empty directory: nothing lost);
    - overwrite and out holds a previous result (its marker file) and nothing toymodels did
      not write: that result is moved aside, the new one renamed in, the old one deleted
      (put back if the rename fails);
    - anything else (out became a link, files appeared in it meanwhile, or no overwrite):
      nothing in out is touched; the new result is kept beside it as out.conflict-<time>
      and RunDirError says so. Nothing is ever deleted that toymodels did not write.
    """
    record_files(staging)
    out = out.absolute()
    if out.is_symlink():
        _keep_as_conflict(staging, out, "became a symbolic link during the run")
    if overwrite and out.is_dir() and (out / marker).exists():
        foreign = foreign_files(out)
        if foreign != []:
            _keep_as_conflict(staging, out, "gained files toymodels did not write during the "
                              f"run ({_listing(foreign or ['unrecorded files'])})")
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


def _keep_as_conflict(staging: Path, out: Path, why: str = "was changed by someone else "
                      "during the run"):
    kept = out.with_name(f"{out.name}.conflict-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    os.rename(staging, kept)
    raise RunDirError(f"{out} {why}, so it was left as it is; the new results are in {kept}")


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, allow_nan=True) + "\n")


VERSIONED = {"toymodels": "toymodels", "jax": "jax", "jaxlib": "jaxlib", "flax": "flax",
             "optax": "optax", "orbax": "orbax-checkpoint", "numpy": "numpy", "scipy": "scipy"}
"""The packages that shape the numbers (key in a result -> distribution name)."""

command_line: list[str] | None = None
"""The command that made this process's results: the CLI sets it (["toymodels", ...]);
otherwise the interpreter's own argv is recorded."""


def versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for key, package in VERSIONED.items():
        try:
            out[key] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[key] = None
    return out


def provenance() -> dict:
    """What every result records of how it was made: the package versions, the git commit,
    the command line, and JAX's backend and devices (a GPU may run float32 products as
    TF32, so the same command can give different numbers on another machine)."""
    import shlex

    command = command_line or [sys.executable, *sys.argv]
    return {"versions": versions(), "git_commit": git_commit(),
            "command": shlex.join(str(a) for a in command), "backend": jax_backend()}


def jax_backend() -> dict | None:
    """JAX's default backend and its devices, where JAX is loaded (None otherwise: loading
    it only to say so would cost seconds)."""
    if "jax" not in sys.modules:
        return None
    import jax
    return {"platform": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
            "x64": bool(jax.config.jax_enable_x64)}


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


def read_json(path: Path, what: str = "toymodels", error=RunDirError) -> dict:
    """A JSON object from path, or `error` (RunDirError) naming the file and what is wrong."""
    try:
        obj = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{path} is unreadable or corrupt ({e}); it is not a {what} file "
                    "this version can read") from None
    if not isinstance(obj, dict):
        raise error(f"{path} holds a JSON {type(obj).__name__}, not an object")
    return obj


def write_csv(path, rows: list[dict]) -> None:
    """Rows as CSV (to a path or an open text file); columns in order of first appearance,
    None as an empty cell."""
    import csv

    columns = list(dict.fromkeys(k for row in rows for k in row))
    with (open(path, "w", newline="") if isinstance(path, (str, os.PathLike))
          else contextlib.nullcontext(path)) as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
