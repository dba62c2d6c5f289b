"""A run directory on disk, written atomically and read back without executing code.

  DIR/summary.json   preset, config, versions, git commit, per-instance results
  DIR/params.npz     trained W [I, D, N], b [I, N], W_Q, W_K [I, H, D]
  DIR/curves.npz     per-step losses recon, attn [I, steps]
  DIR/analysis.npz   singular_values [I, K], cos_u, cos_v [I, N, K]
  DIR/alignment.png  figure drawn from the files above

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
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from toymodels.config import ToyConfig
from toymodels.config_transformer import TransformerConfig
from toymodels.errors import ConfigError, RunDirError

RUN_FILES = ("summary.json", "params.npz", "curves.npz", "analysis.npz")


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
    parent = out.resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise RunDirError(f"--out {out}: {parent} is not writable")
    return out


def stage_dir(out: Path) -> Path:
    """A fresh staging folder beside out (same filesystem, so the final rename is atomic)."""
    out.resolve().parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.resolve().parent))


@contextlib.contextmanager
def staged(out: Path):
    """Yield a staging folder; on success it replaces out, on any failure it is removed,
    so out holds either the old complete result or the new one, never a partial one."""
    staging = stage_dir(out)
    try:
        yield staging
        commit_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def commit_dir(staging: Path, out: Path) -> None:
    """Move a finished staging folder to out, replacing a previous run there."""
    out = out.resolve()
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rename(out, old / "run")
    os.rename(staging, out)
    if old is not None:
        shutil.rmtree(old)


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


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def load_run(run_dir) -> LoadedRun:
    """Read a run directory back: config, summary, parameters, loss curves, analysis arrays."""
    run_dir = Path(run_dir)
    missing = [name for name in RUN_FILES if not (run_dir / name).exists()]
    if missing:
        raise RunDirError(f"{run_dir} is not a toymodels run (missing {', '.join(missing)})")
    summary = json.loads((run_dir / "summary.json").read_text())
    config_class = TransformerConfig if summary.get("family") == "transformer" else ToyConfig
    try:
        config = config_class.from_dict(summary["config"])
    except (TypeError, KeyError, ConfigError) as e:
        raise RunDirError(f"{run_dir}/summary.json has an unreadable config: {e}") from None
    return LoadedRun(config=config, summary=summary,
                     params=_load_npz(run_dir / "params.npz"),
                     curves=_load_npz(run_dir / "curves.npz"),
                     analysis=_load_npz(run_dir / "analysis.npz"),
                     dynamics=_load_npz(run_dir / "dynamics.npz")
                     if (run_dir / "dynamics.npz").exists() else None)


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
    analysis.json (what was analysed, and how), replacing out_dir atomically."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out} is a file; give a directory path")
    if out.is_dir() and any(out.iterdir()) and not (out / "analysis.json").exists():
        raise RunDirError(f"{out} holds files that are not a toymodels analysis; "
                          "refusing to replace it")
    with staged(out) as staging:
        write_csv(staging / "heads.csv", analysis.heads)
        write_csv(staging / "pairs.csv", analysis.pairs)
        write_csv(staging / "features.csv", analysis.features)
        np.savez(staging / "arrays.npz", **analysis.arrays)
        write_json(staging / "analysis.json", {**meta, "axes": list(analysis.axes),
                                                "versions": versions(),
                                                "git_commit": git_commit()})
    return out
