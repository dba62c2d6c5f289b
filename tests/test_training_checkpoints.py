"""Checkpoints inside a run (issue 12): killed anywhere, the same command resumes to the
same numbers; a damaged or half-written checkpoint falls back to the one before it.

Every run here has one config (ARGS, 12 chunks of 10 steps), so the compiled program is
shared; real kills (SIGKILL of a subprocess) are used twice, elsewhere a run is stopped
in-process right after a save, which is what a kill there leaves on disk.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import TRANSFORMER, one_line_exit_2, subprocess_env
from toymodels import load_run
from toymodels.cli import main
from toymodels.configs import make_instances, preset
from toymodels.training.checkpoints import DIGEST_FILE, Session, read_checkpoints
from toymodels.training.loop import train

ARGS = ["--seeds", "0-2", "--steps", "120", "--set", "batch_size=32", "--set",
        "chunk_steps=10", "--no-progress"]
SPEC = """
preset = "single-pair"
seeds = "0-2"
[set]
steps = 120
chunk_steps = 10
batch_size = 32
"""


def run_argv(out, *extra):
    return ["run", "single-pair", "--out", str(out), *ARGS, *extra]


def results(out: Path) -> dict:
    """What a run stores that is a result: summary numbers, arrays and tables."""
    summary = json.loads((out / "summary.json").read_text())
    got = {"summary": json.dumps({k: summary[k] for k in ("preset", "config", "instances")},
                                 sort_keys=True)}
    for name in ("params", "curves", "dynamics", "analysis"):
        if (out / f"{name}.npz").exists():
            with np.load(out / f"{name}.npz") as f:
                got[name] = {k: f[k] for k in f.files}
    for name in ("heads", "pairs", "features"):
        got[name] = (out / "analysis" / f"{name}.csv").read_text()
    return got


def assert_same_results(a: Path, b: Path, context=""):
    ra, rb = results(a), results(b)
    assert ra.keys() == rb.keys()
    for key in ra:
        if isinstance(ra[key], dict):
            assert ra[key].keys() == rb[key].keys(), key
            for name in ra[key]:
                np.testing.assert_array_equal(ra[key][name], rb[key][name],
                                              err_msg=f"{key}/{name} {context}")
        else:
            assert ra[key] == rb[key], f"{key} {context}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, with no checkpoints at all."""
    out = tmp_path_factory.mktemp("ref") / "run"
    assert main(run_argv(out, "--checkpoint-every", "0")) == 0
    return out


def files(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def stop_after_save(monkeypatch, argv, at: int, capsys=None) -> None:
    """Run main(argv) until its checkpoint at step `at` is written, then stop it there."""
    save = Session.save

    def save_then_stop(self, step, state):
        save(self, step, state)
        if step == at:
            raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(Session, "save", save_then_stop)
        assert main(argv) == 130
    if capsys is not None:
        capsys.readouterr()


def kill_after_first_checkpoint(cmd, pattern_root: Path, pattern: str) -> float:
    """Start cmd, wait until a checkpoint is complete, SIGKILL it a random moment later
    (inside a later save, as often as not). Returns that moment, for messages."""
    delay = random.Random(os.urandom(8)).uniform(0.0, 0.15)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=subprocess_env())
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None \
                and not list(pattern_root.glob(pattern)):
            time.sleep(0.005)
        time.sleep(delay)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return delay


# ---- a real kill, then the same command ------------------------------------------------


def test_a_run_killed_at_a_random_point_resumes_to_identical_results(
        tmp_path, reference, capsys):
    out = tmp_path / "run"
    argv = run_argv(out, "--checkpoint-every", "10")
    delay = kill_after_first_checkpoint([sys.executable, "-m", "toymodels", *argv], tmp_path,
                                        f".run.ckpt/steps/*/{DIGEST_FILE}")
    assert not out.exists(), f"the kill {delay:.3f} s after the first save came too late"
    assert main(argv) == 0  # the same command, in this process (same code, compiled once)
    err = capsys.readouterr().err
    assert "resuming from step " in err and " of 120 (checkpoint in " in err, err
    assert_same_results(out, reference, f"(killed {delay:.3f} s after the first save)")
    assert not (tmp_path / ".run.ckpt").exists() and not (out / "checkpoints").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_killed_sweep_group_resumes_to_identical_tables_and_keeps_its_steps(
        tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    assert main(["sweep", str(spec), "--out", str(clean), "--no-progress",
                 "--checkpoint-every", "0"]) == 0
    argv = ["sweep", str(spec), "--out", str(killed), "--no-progress",
            "--checkpoint-every", "10", "--keep-checkpoints"]
    delay = kill_after_first_checkpoint([sys.executable, "-m", "toymodels", *argv], killed,
                                        f".checkpoints/*/steps/*/{DIGEST_FILE}")
    assert not (killed / "results.parquet").exists(), f"killed {delay:.3f} s too late"
    capsys.readouterr()
    assert main(argv) == 0
    assert "resuming from step " in capsys.readouterr().err
    for name in ("results.parquet", "pairs.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(clean / name),
                                      pd.read_parquet(killed / name))
    assert not (killed / ".checkpoints").exists()
    (group,) = (killed / "checkpoints").iterdir()
    kept = read_checkpoints(group)
    assert kept.steps == list(range(10, 121, 10))  # across the kill, none lost
    final = kept.state_at(120)
    assert final["curves"]["recon"].shape == (3, 120)


# ---- damaged checkpoints ---------------------------------------------------------------


def _largest_file(step_dir: Path) -> Path:
    return max((p for p in step_dir.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def truncate(step_dir: Path):
    path = _largest_file(step_dir)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_byte(step_dir: Path):  # orbax reads this back without complaint
    path = _largest_file(step_dir)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def unfinished(step_dir: Path):  # as orbax leaves a save it did not finalize
    step_dir.rename(step_dir.with_name(step_dir.name + ".orbax-checkpoint-tmp"))


@pytest.mark.parametrize("damage,message,resumed_at", [
    (truncate, "is damaged (", 50), (flip_a_byte, "does not match its digest", 50),
    (unfinished, "was never finished", 50),
    ("both", "starting from step 0", None),
])
def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(
        damage, message, resumed_at, tmp_path, reference, monkeypatch, capsys):
    out = tmp_path / "run"
    argv = run_argv(out, "--checkpoint-every", "10")
    stop_after_save(monkeypatch, argv, at=60, capsys=capsys)
    steps = tmp_path / ".run.ckpt" / "steps"
    assert sorted(int(p.name) for p in steps.iterdir() if p.name.isdigit()) == [50, 60]
    if damage == "both":
        truncate(steps / "60")
        flip_a_byte(steps / "50")
    else:
        damage(steps / "60")
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert message in err, err
    lines = [line for line in err.splitlines() if "checkpoint" in line]
    assert all(line.startswith("toymodels: ") for line in lines), err
    if resumed_at is not None:
        assert f"resuming from step {resumed_at} of 120" in err, err
    else:
        assert "resuming" not in err
    assert_same_results(out, reference)
    assert not (tmp_path / ".run.ckpt").exists()


# ---- one out dir, one run ---------------------------------------------------------------


def test_another_config_into_the_same_out_is_refused_in_one_line(
        tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    stop_after_save(monkeypatch, run_argv(out, "--checkpoint-every", "10"), at=20,
                    capsys=capsys)
    before = files(tmp_path)
    assert any(name.startswith(".run.ckpt/steps/20/") for name in before)
    for extra, words in ((["--steps", "130"], "steps=120 there, 130 now"),
                         (["--seeds", "0-3"], "seeds 0-2 there, 0-3 now"),
                         (["--set", "lam=2"], "lam=10.0 there, 2.0 now")):
        err = one_line_exit_2(run_argv(out, *extra), capsys, words)
        assert "--overwrite" in err, err
        assert files(tmp_path) == before  # nothing on disk changed
    # --overwrite discards them and trains the new config from step 0
    assert main(run_argv(out, "--steps", "130", "--overwrite", "--checkpoint-every",
                         "10")) == 0
    err = capsys.readouterr().err
    assert "discarded the checkpoints" in err and "resuming" not in err
    assert load_run(out).config.steps == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # none left on success


def test_checkpoint_every_is_checked_before_any_work(tmp_path):
    script = ("import sys; from toymodels.cli import main\n"
              f"rc = main(['run', 'single-pair', '--out', {str(tmp_path / 'r')!r}, "
              "'--set', 'chunk_steps=10', '--checkpoint-every', '25'])\n"
              "assert 'jax' not in sys.modules\nsys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, env=subprocess_env())
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "multiple of chunk_steps (10)" in proc.stderr
    assert not list(tmp_path.iterdir())


# ---- kept checkpoints ---------------------------------------------------------------------


def test_kept_checkpoints_give_the_params_at_each_step(tmp_path, reference):
    out = tmp_path / "run"
    assert main(run_argv(out, "--checkpoint-every", "40", "--keep-checkpoints")) == 0
    assert_same_results(out, reference)  # keeping them changes no number
    run = load_run(out)
    assert run.checkpoint_steps == [40, 80, 120]
    for name, value in run.params_at(120).items():
        np.testing.assert_array_equal(value, run.params[name], err_msg=name)
    # The constant schedule makes the first 40 steps of this run a 40-step run.
    cfg = run.config.replace(steps=40)
    assert cfg.lr_schedule == "constant"
    short = train(cfg, make_instances(cfg, [0, 1, 2]), progress=False)
    for name, value in run.params_at(40).items():
        np.testing.assert_array_equal(value, short.params[name], err_msg=name)
    assert not (tmp_path / ".run.ckpt").exists()
    from toymodels.errors import RunDirError
    with pytest.raises(RunDirError, match="kept steps: 40, 80, 120"):
        run.params_at(50)
    assert load_run(reference).checkpoint_steps == []


# ---- the transformer family ---------------------------------------------------------------


def test_a_transformer_resumes_to_identical_training(tmp_path, monkeypatch):
    from toymodels.training.checkpoints import CheckpointPlan, identity_of
    cfg = TRANSFORMER  # as in test_families_transformer.py: one compiled program for both
    instances = make_instances(cfg, [0, 1])
    clean = train(cfg, instances, progress=False)
    plan = CheckpointPlan(tmp_path / "ck", identity_of("t", cfg, instances), every=20)
    save = Session.save

    def save_then_stop(self, step, state):
        save(self, step, state)
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(Session, "save", save_then_stop)
        with pytest.raises(KeyboardInterrupt):
            train(cfg, instances, progress=False, checkpoints=plan)
    resumed = train(cfg, instances, progress=False, checkpoints=plan)
    for part in ("params", "curves", "dynamics"):
        a, b = getattr(clean, part), getattr(resumed, part)
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=f"{part}/{name}")
    assert any(name.startswith("param_") for name in resumed.dynamics)


def test_train_resumes_under_the_api_too(tmp_path):
    from toymodels.training.checkpoints import CheckpointPlan, identity_of
    cfg = preset("single-pair").replace(steps=40, chunk_steps=10, batch_size=32)
    instances = make_instances(cfg, [0, 1, 2])  # as ARGS: its compiled program
    plan = CheckpointPlan(tmp_path / "ck", identity_of(None, cfg, instances), every=20,
                          keep=True)
    first = train(cfg, instances, progress=False, checkpoints=plan)
    assert read_checkpoints(plan.path).steps == [20, 40]
    again = train(cfg, instances, progress=False, checkpoints=plan)  # resumes at the end
    for name in first.params:
        np.testing.assert_array_equal(first.params[name], again.params[name])
    for name in first.curves:
        np.testing.assert_array_equal(first.curves[name], again.curves[name])
    other = make_instances(cfg, [0, 1, 5])
    from toymodels.errors import RunDirError
    with pytest.raises(RunDirError, match="seeds 0-2 there, 0,1,5 now"):
        train(cfg, other, progress=False,
              checkpoints=CheckpointPlan(plan.path, identity_of(None, cfg, other), every=20))
