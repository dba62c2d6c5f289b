"""JAX's persistent compilation cache: a repeated command or a restarted notebook reads
compiled programs from disk instead of compiling them again.

  TOYMODELS_COMPILE_CACHE=DIR   keep the cache in DIR
  TOYMODELS_COMPILE_CACHE=on    keep it in the default folder (below)
  TOYMODELS_COMPILE_CACHE=off   no persistent cache (also: 0, false, no)
  unset                         on where JAX has an accelerator plugin installed (CUDA,
                                ROCm, TPU), off on a CPU-only install: there jaxlib 0.9
                                logs the error lines below for every program it loads
  default folder                $XDG_CACHE_HOME/toymodels/jax/<host>, else
                                ~/.cache/toymodels/jax/<host>

<host> names this machine's CPU (a hash of its model and instruction-set flags): XLA's CPU
programs are compiled for the host's instruction set, so a home directory shared by
machines of different CPUs (a cluster's) must not hand one machine's programs to another.
jaxlib 0.9 logs "Loading XLA:CPU AOT result. Target machine feature +prefer-no-gather is
not supported..." on each cached load on some x86 CPUs: those two are tuning preferences,
not instructions (openxla/xla#44565), and the entries were compiled on this same CPU.

A cache the user configured for JAX itself (JAX_COMPILATION_CACHE_DIR, or
jax.config.update before toymodels compiles anything) is left as it is. The cache is
trusted code (JAX's documentation): keep it in a folder only you can write.
"""

import os
from pathlib import Path

ENV = "TOYMODELS_COMPILE_CACHE"
MIN_COMPILE_SECONDS = 0.2
"""Programs that compile faster than this are not worth a disk entry."""

_configured = False


ACCELERATOR_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin",
                       "jax_rocm7_plugin", "libtpu")
"""Packages whose presence means JAX can run on an accelerator."""


def accelerator_installed() -> bool:
    import importlib.util
    return any(importlib.util.find_spec(name) is not None for name in ACCELERATOR_PLUGINS)


def cache_dir() -> Path | None:
    """Where toymodels keeps compiled programs; None when the cache is off."""
    value = os.environ.get(ENV, "").strip()
    if value.lower() in ("off", "0", "false", "no"):
        return None
    if value and value.lower() not in ("on", "1", "true", "yes"):
        return Path(value).expanduser()
    if not value and not accelerator_installed():
        return None
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "toymodels" / "jax" / host_name()


def host_name() -> str:
    """The machine type and a hash of its CPU's model and flags (Linux: /proc/cpuinfo)."""
    import hashlib
    import platform

    identity = platform.machine() + platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags", "Features")):
                identity += line
            if line.strip() == "":  # the first processor says it for all
                break
    except OSError:
        pass
    return f"{platform.machine()}-{hashlib.sha1(identity.encode()).hexdigest()[:12]}"


def configure() -> None:
    """Turn the cache on (once per process, before the first compile)."""
    global _configured
    if _configured:
        return
    _configured = True
    import jax

    if jax.config.jax_compilation_cache_dir:  # the user chose one for JAX: theirs
        return
    path = cache_dir()
    if path is None:
        return
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:  # a read-only home: run without the cache rather than fail
        return
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
