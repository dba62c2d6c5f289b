"""Integrity of a saved checkpoint step: each file's size and SHA-256, written once
orbax has finalized the step and checked before the step is trusted (orbax's own format
checks neither: a truncated chunk can read back as other numbers)."""

import hashlib
import json
import os
from pathlib import Path

DIGEST_FILE = "toymodels-digest.json"
FORMAT = 1


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def _files(step_dir: Path) -> dict[str, Path]:
    return {str(p.relative_to(step_dir)): p for p in sorted(step_dir.rglob("*"))
            if p.is_file() and p.name != DIGEST_FILE and not p.name.startswith(".digest")}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_digest(step_dir: Path, step: int) -> None:
    """Record each file's size and SHA-256 in step_dir/DIGEST_FILE, atomically."""
    digest = {"format": FORMAT, "step": step,
              "files": {name: [p.stat().st_size, _sha256(p)]
                        for name, p in _files(step_dir).items()}}
    tmp = step_dir / f".digest-{os.getpid()}"
    tmp.write_text(json.dumps(digest, indent=1) + "\n")
    os.replace(tmp, step_dir / DIGEST_FILE)


def verify_step(step_dir: Path) -> str | None:
    """None if every file of the step is as its digest says, else what is wrong."""
    try:
        digest = json.loads((step_dir / DIGEST_FILE).read_text())
        files = digest["files"]
    except FileNotFoundError:
        return "no digest: killed while saving"
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"its digest is unreadable: {_first_line(e)}"
    on_disk = _files(step_dir)
    for name, (size, sha) in files.items():
        path = on_disk.get(name)
        if path is None:
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, not {size}"
        if _sha256(path) != sha:
            return f"{name} does not match its digest"
    return None
