"""Reading user-given .npy and .npz files without trusting them.

NumPy allocates what an array header claims before it reads the data, so a 100-byte file
that claims a [10**6, 10**6] array costs terabytes (or a MemoryError traceback). Here each
header is checked against the bytes actually stored, before anything is allocated, and
nothing is ever unpickled. Every problem is one line in the caller's error type.

  read_npy(path, error)           one array
  read_npz(path, error, keys)     {name: array}, only the named members if keys is given
"""

import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format


class _Bad(Exception):
    """What is wrong with one array's header (the reader names the file)."""


def _check_header(fp, stored: int) -> None:
    """Read an .npy header from fp and compare its claimed size with `stored` bytes."""
    try:
        version = npy_format.read_magic(fp)
        shape, _, dtype = (npy_format.read_array_header_1_0(fp) if version == (1, 0)
                           else npy_format.read_array_header_2_0(fp))
    except (ValueError, OSError, EOFError) as e:
        raise _Bad(f"not a NumPy array ({e})") from None
    if dtype.hasobject:
        raise _Bad("it holds Python objects, not numbers; save numeric arrays")
    claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    available = stored - fp.tell()
    if claimed > available:
        raise _Bad(f"its header claims a {dtype} array of shape {shape} ({claimed:,} bytes) "
                   f"but it holds {max(available, 0):,} bytes of data")


def read_npy(path, error) -> np.ndarray:
    """The array in an .npy file, its header checked first (see module docstring)."""
    path = Path(path)
    try:
        with open(path, "rb") as fp:
            _check_header(fp, path.stat().st_size)
        return np.load(path, allow_pickle=False)
    except _Bad as e:
        raise error(f"cannot read {path} as .npy: {e}") from None
    except (OSError, EOFError, ValueError) as e:  # ValueError: np.load's own complaints
        raise error(f"cannot read {path} as .npy: {e}") from None


MAX_DEFLATE_RATIO = 1032
"""Deflate expands at most about 1032:1, so a member's data is bounded by its compressed
size even where the zip directory's uncompressed size lies."""


def _stored_bound(info: zipfile.ZipInfo, path: Path) -> int:
    """The most bytes a member can really hold: its declared size, capped by what its
    compressed bytes (themselves within the archive) can expand to."""
    compressed = min(info.compress_size, path.stat().st_size)
    ratio = 1 if info.compress_type == zipfile.ZIP_STORED else MAX_DEFLATE_RATIO
    return min(info.file_size, compressed * ratio)


def read_npz(path, error, keys=None) -> dict[str, np.ndarray]:
    """The arrays of an .npz (only those named in keys, if given), each member's header
    checked against its stored size first."""
    path = Path(path)
    key = None
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename[:-4]: info for info in archive.infolist()
                       if info.filename.endswith(".npy")}
            wanted = list(members) if keys is None else [k for k in keys if k in members]
            out = {}
            for key in wanted:
                info = members[key]
                with archive.open(info) as fp:
                    _check_header(fp, _stored_bound(info, path))
                with archive.open(info) as fp:
                    out[key] = npy_format.read_array(fp, allow_pickle=False)
            return out
    except (_Bad, OSError, EOFError, ValueError, zipfile.BadZipFile,
            zipfile.LargeZipFile) as e:
        member = f"{key}: " if key is not None else ""
        raise error(f"{path} is unreadable or corrupt (cannot read it as .npz): "
                    f"{member}{e}") from None
