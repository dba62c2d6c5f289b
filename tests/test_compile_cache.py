"""The persistent compilation cache: where it lives, how it is turned off, and that a
command fills it (its effect on time is measured by benchmarks/bench_compile_cache.py)."""

import os
import subprocess
import sys

from toymodels import compile_cache


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(compile_cache.ENV, str(tmp_path / "c"))
    assert compile_cache.cache_dir() == tmp_path / "c"
    for off in ("off", "0", "false", "no", "OFF"):
        monkeypatch.setenv(compile_cache.ENV, off)
        assert compile_cache.cache_dir() is None
    monkeypatch.delenv(compile_cache.ENV)
    monkeypatch.setattr(compile_cache, "accelerator_installed", lambda: False)
    assert compile_cache.cache_dir() is None  # CPU-only JAX: off unless asked for
    monkeypatch.setenv(compile_cache.ENV, "on")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    default = compile_cache.cache_dir()
    # one folder per CPU kind: a shared home never hands programs to another instruction set
    assert default.parent == tmp_path / "xdg" / "toymodels" / "jax"
    assert default.name == compile_cache.host_name() and "-" in default.name
    monkeypatch.delenv(compile_cache.ENV)
    monkeypatch.setattr(compile_cache, "accelerator_installed", lambda: True)
    assert compile_cache.cache_dir() == default  # with an accelerator plugin: on


def _run(tmp_path, out: str, cache: str):
    env = os.environ | {compile_cache.ENV: cache, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    subprocess.run([sys.executable, "-m", "toymodels", "run", "single-pair", "--seeds", "0",
                    "--steps", "250", "--no-progress", "--out", str(tmp_path / out)],
                   env=env, check=True, capture_output=True, timeout=300)


def test_a_command_fills_the_cache(tmp_path):
    _run(tmp_path, "run-on", str(tmp_path / "cache"))
    assert any((tmp_path / "cache").iterdir())  # compiled programs were stored
    assert not (tmp_path / "xdg" / "toymodels").exists()  # and nowhere else


def test_off_configures_no_cache(tmp_path):
    code = ("import jax\nfrom toymodels.compile_cache import configure; configure()\n"
            "print(repr(jax.config.jax_compilation_cache_dir))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=os.environ | {compile_cache.ENV: "off",
                                                       "XDG_CACHE_HOME": str(tmp_path)})
    assert out.stdout.strip() in ("None", "''") and not (tmp_path / "toymodels").exists()


def test_a_cache_the_user_gave_jax_is_kept(tmp_path):
    code = ("import jax; jax.config.update('jax_compilation_cache_dir', %r)\n"
            "from toymodels.compile_cache import configure; configure()\n"
            "print(jax.config.jax_compilation_cache_dir)" % str(tmp_path / "theirs"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=os.environ | {compile_cache.ENV: str(tmp_path / "x")})
    assert out.stdout.strip() == str(tmp_path / "theirs")
