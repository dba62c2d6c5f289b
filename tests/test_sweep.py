"""Sweeps: grouping and compile counts, resume after SIGKILL, divergence, sharding, Ray."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import one_line_exit_2
from toymodels.cli import main
from toymodels.configs import Instance, preset
from toymodels.errors import ConfigError
from toymodels.sweep import Group, SweepSpec, expand, group_points, load_spec, run_group, run_sweep

SMALL = """
preset = "single-pair"
seeds = "0-1"
[set]
steps = 40
chunk_steps = 20
batch_size = 32
record_points = 0
"""


def write_spec(tmp_path, text, name="spec.toml"):
    path = tmp_path / name
    path.write_text(SMALL + text)
    return path


def test_grid_and_zip_expand_in_spec_order():
    spec = SweepSpec(preset="single-pair", seeds=(0, 1), grid={"lam": [1, 2]},
                     zip={"N": [20, 30], "D": [10, 12]})
    points = expand(spec)
    assert len(points) == 2 * 2 * 2
    assert [(c.lam, c.N, c.D, i.seed) for c, i in points[:4]] == [
        (1.0, 20, 10, 0), (1.0, 20, 10, 1), (1.0, 30, 12, 0), (1.0, 30, 12, 1)]
    groups = group_points(points)
    assert len(groups) == 2  # λ is batched; (N, D) splits
    assert sorted(len(g.instances) for g in groups) == [4, 4]


def test_shape_groups_compile_once_each(tmp_path):
    spec = write_spec(tmp_path, "[grid]\nH = [3, 6]\nN = [20, 24]\nlam = [1, 5]\n")
    out = tmp_path / "out"
    # A fresh process, as a user runs it (this one may hold compiled programs already).
    subprocess.run([sys.executable, "-m", "toymodels", "sweep", str(spec), "--out", str(out),
                    "--no-progress"], check=True, capture_output=True, timeout=300)
    manifest = pd.read_json(out / "manifest.json", typ="series")
    assert manifest["compiles"] == 4 and len(manifest["group_order"]) == 4
    assert all(g["compiles"] == 1 for g in manifest["groups"].values())
    table = pd.read_parquet(out / "results.parquet")  # one line of pandas
    assert len(table) == 2 * 2 * 2 * 2 and not table.duplicated(["group", "seed", "lam"]).any()
    assert {"N", "H", "lam", "seed", "final_recon", "min_matched_cos", "diverged"} <= set(table)
    pairs = pd.read_parquet(out / "pairs.parquet")
    assert len(pairs) == len(table) and set(pairs.query_feature) == {0}
    # Rerunning finds every group done: nothing retrains.
    before = (out / "results.parquet").read_bytes()
    assert main(["sweep", str(spec), "--out", str(out), "--no-progress"]) == 0
    assert (out / "results.parquet").read_bytes() == before


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    spec = write_spec(tmp_path, "[grid]\nH = [3, 4, 5, 6]\n")
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    cmd = [sys.executable, "-m", "toymodels", "sweep", str(spec), "--no-progress", "--out"]
    subprocess.run(cmd + [str(clean)], check=True, capture_output=True, timeout=300)
    proc = subprocess.Popen(cmd + [str(killed)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not list((killed / "groups").glob("*[0-9a-f].parquet")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = list((killed / "groups").glob("*[0-9a-f].parquet"))
    assert 1 <= len(done) < 4, "the kill should land part-way"
    subprocess.run(cmd + [str(killed)], check=True, capture_output=True, timeout=300)
    for name in ("results.parquet", "pairs.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(clean / name),
                                      pd.read_parquet(killed / name))
    assert not list(killed.rglob(".*tmp*"))


def test_a_diverging_instance_is_flagged_and_leaves_the_others_alone():
    cfg = preset("single-pair").replace(steps=100, chunk_steps=50, batch_size=64,
                                        record_points=0)

    def inst(seed, lr=1e-3):
        return Instance(seed=seed, lam=cfg.lam, learning_rate=lr, p_active=cfg.p_active,
                        target_scale=cfg.target_scale)

    calm = run_group(Group(cfg, [inst(s) for s in range(8)]), progress=False)["rows"]
    wild = run_group(Group(cfg, [inst(s) for s in range(7)] + [inst(7, lr=10.0)]),
                     progress=False)["rows"]
    assert wild[7]["diverged"] and wild[7]["diverged_step"] >= 1
    assert wild[7]["final_recon"] is None and wild[7]["min_matched_cos"] is None
    assert not any(r["diverged"] for r in calm)
    for a, b in zip(calm[:7], wild[:7]):
        assert not b["diverged"]
        for key in ("final_recon", "final_attn", "sigma_1", "min_matched_cos"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), key


@pytest.mark.parametrize("text,message", [
    ("[grid]\nbogus = [1, 2]\n", "unknown config field 'bogus'"),
    ("[grid]\nlam = []\n", "[grid] lam must be a non-empty list"),
    ("[grid]\nN = [\"ten\"]\n", "N must be an integer"),
    ("[grid]\nlam = [\"high\"]\n", "lam must be a number"),
    ("[zip]\nN = [20, 30]\nD = [10]\n", "[zip] axes must have equal lengths"),
    ("[grid]\nH = [0]\n", "H must be > 0"),
])
def test_invalid_specs_are_rejected_before_training(tmp_path, capsys, text, message):
    spec = write_spec(tmp_path, text)
    out = tmp_path / "out"
    one_line_exit_2(["sweep", str(spec), "--out", str(out)], capsys, message)
    assert not out.exists()
    with pytest.raises(ConfigError):
        load_spec(spec)


def test_unknown_top_level_key_is_rejected(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text("bogus = 1\n" + SMALL)
    with pytest.raises(ConfigError, match="unknown key 'bogus'"):
        load_spec(spec)


def test_instances_shard_across_devices(tmp_path):
    """The same sweep on 4 (forced) host devices: 6 instances padded to 8, split 2 a device."""
    spec = write_spec(tmp_path, "[grid]\nlam = [1, 2, 4]\n")
    one, four = tmp_path / "one", tmp_path / "four"
    cmd = [sys.executable, "-m", "toymodels", "sweep", str(spec), "--no-progress", "--out"]
    subprocess.run(cmd + [str(one)], check=True, capture_output=True, timeout=300)
    env = os.environ | {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    check = subprocess.run([sys.executable, "-c", "import jax; print(jax.local_device_count())"],
                           env=env, capture_output=True, text=True, check=True)
    assert check.stdout.strip() == "4"
    subprocess.run(cmd + [str(four)], check=True, capture_output=True, timeout=300, env=env)
    a, b = pd.read_parquet(one / "results.parquet"), pd.read_parquet(four / "results.parquet")
    assert len(a) == len(b) == 6
    numeric = a.select_dtypes("number").columns
    np.testing.assert_allclose(a[numeric].to_numpy(float), b[numeric].to_numpy(float),
                               rtol=1e-4, atol=1e-6)


def test_ray_backend_on_a_local_ray_instance(tmp_path):
    ray = pytest.importorskip("ray")
    spec = load_spec(write_spec(tmp_path, "[grid]\nH = [3, 4]\n"))
    run_sweep(spec, tmp_path / "local", progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).parents[1])}})
    try:
        manifest = run_sweep(spec, tmp_path / "ray", backend="ray")
    finally:
        ray.shutdown()
    assert manifest["compiles"] == 2
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "local" / "results.parquet"),
                                  pd.read_parquet(tmp_path / "ray" / "results.parquet"))
