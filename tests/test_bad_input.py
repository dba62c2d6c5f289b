"""Hostile and concurrent use (issue 13): nothing lost, nothing half-done, one clear line.

Each section is one item of the issue. Runs are tiny; training is stubbed out with
`no_work` wherever the point is that bad input is refused before any work starts.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import TOY_ARGS, one_line_exit_2, subprocess_env
from toymodels import AnalysisInputError, ConfigError, RunDirError, ToyConfig, load_run
from toymodels.cli import main
from toymodels.configs import apply_overrides, make_instances, parse_seeds, preset
from toymodels import store
from toymodels.store import staged
from toymodels.sweep import SweepSpec, load_spec

MAX_SEED = 2**32 - 1
SPEC = """
preset = "single-pair"
seeds = "0-1"
[set]
steps = 30
chunk_steps = 15
batch_size = 32
record_points = 0
"""


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if training, a sweep group or a theory check starts."""
    import toymodels.run
    import toymodels.sweep
    import toymodels.theory.runner

    def refuse(*args, **kwargs):
        raise AssertionError("work started although the input should have been refused")

    monkeypatch.setattr(toymodels.run, "train", refuse)
    monkeypatch.setattr(toymodels.sweep, "run_group", refuse)
    monkeypatch.setattr(toymodels.theory.runner, "run_checks", refuse)


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# ---- 1. nothing is removed that the run did not create, unless --overwrite ----------


def test_files_that_appear_in_out_during_a_run_are_never_deleted(tmp_path):
    out = tmp_path / "X"
    with pytest.raises(RunDirError, match="conflict"):
        with staged(out) as staging:
            (staging / "summary.json").write_text("{}")
            out.mkdir()  # someone else writes into X while the run works
            (out / "notes.txt").write_text("data")
    assert (out / "notes.txt").read_text() == "data" and len(list(out.iterdir())) == 1
    (kept,) = tmp_path.glob("X.conflict-*")  # the finished results are not lost either
    assert (kept / "summary.json").exists()


def test_overwrite_replaces_only_a_directory_that_still_holds_a_run(tmp_path):
    out = tmp_path / "X"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    with pytest.raises(RunDirError, match="conflict"):
        with staged(out, overwrite=True) as staging:
            (staging / "summary.json").write_text('{"new": 1}')
            (out / "summary.json").unlink()  # X stops being a run: not ours to replace
            (out / "notes.txt").write_text("data")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert len(list(tmp_path.glob("X.conflict-*"))) == 1


def test_a_second_writer_is_refused_at_start_and_a_killed_one_blocks_nothing(
        tmp_path, capsys, no_work):
    out = tmp_path / "X"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from toymodels.store import claim\n"
         f"with claim({str(out)!r}):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env=subprocess_env())
    try:
        assert holder.stdout.readline().strip() == "held"
        one_line_exit_2(["run", "no-head", "--out", str(out), *TOY_ARGS], capsys,
                        f"another toymodels process (pid {holder.pid})")
        spec = tmp_path / "spec.toml"
        spec.write_text(SPEC)
        one_line_exit_2(["sweep", str(spec), "--out", str(out)], capsys, "another toymodels")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert not out.exists()
    with store.claim(out):  # the kernel dropped the dead holder's lock
        pass


# ---- 2. NaN and inf are refused; a run reports divergence like a sweep ---------------


@pytest.mark.parametrize("args", [
    ["--set", "lam=nan"], ["--set", "learning_rate=inf"], ["--set", "init_scale=nan"],
    ["--set", "weight_decay=inf"], ["--set", "importance_decay=nan"],
    ["--set", "target_scale=-inf"], ["--set", "template=0:1:nan"], ["--set", "p_active=nan"],
    ["--vary", "lam=1,nan"], ["--vary", "target_scale=inf"],
])
def test_non_finite_values_are_refused(args, tmp_path, capsys, no_work):
    one_line_exit_2(["run", "single-pair", "--out", str(tmp_path / "r"), *args], capsys,
                    "finite")
    assert not (tmp_path / "r").exists()


def test_non_finite_values_are_refused_in_specs_and_the_api(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC + "[grid]\nlam = [1.0, nan]\n")
    with pytest.raises(ConfigError, match="lam must be a finite number"):
        load_spec(spec)
    with pytest.raises(ConfigError, match="finite"):
        ToyConfig(p_active=(float("inf"),) + (0.1,) * 19)


def test_run_marks_a_diverged_instance_and_nulls_its_metrics(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["run", "single-pair", "--out", str(out), "--vary",
                 "learning_rate=0.001,10", *TOY_ARGS]) == 0
    calm, wild = json.loads((out / "summary.json").read_text())["instances"]
    assert calm["diverged_step"] is None and calm["final_loss"]["recon"] > 0
    assert wild["diverged_step"] >= 1
    assert wild["final_loss"] == {"recon": None, "attn": None}
    assert wild["singular_values"] is None and wild["pairs"][0]["cos_query_u"] is None
    assert wild["pairs"][0]["query_feature"] == 0
    import pandas as pd
    heads = pd.read_csv(out / "analysis" / "heads.csv")  # the zeroed head measures nothing
    assert heads.loc[1, ["mmcs_query_u", "principal_cos_query_min"]].isna().all()
    assert heads.loc[0, ["mmcs_query_u", "principal_cos_query_min"]].notna().all()
    printed = capsys.readouterr().out
    assert f"diverged at step {wild['diverged_step']}" in printed
    assert "1 of 2 instances diverged" in printed


# ---- 3. a sweep directory belongs to one spec -------------------------------------------


def test_another_spec_into_a_sweep_directory_is_refused(tmp_path, capsys):
    spec, other, same = tmp_path / "a.toml", tmp_path / "b.toml", tmp_path / "c.toml"
    spec.write_text(SPEC)
    other.write_text(SPEC + "[grid]\nH = [3, 4]\n")
    same.write_text(SPEC.replace('"0-1"', "[0, 1]").replace("steps = 30", "steps = 30\n"))
    out = tmp_path / "sweep"
    assert main(["sweep", str(spec), "--out", str(out), "--no-progress"]) == 0
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    one_line_exit_2(["sweep", str(other), "--out", str(out)], capsys, "another spec")
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # The same spec written differently is the same sweep: it resumes (nothing to do).
    assert main(["sweep", str(same), "--out", str(out), "--no-progress"]) == 0
    assert (out / "results.parquet").read_bytes() == before["results.parquet"]


# ---- 4. sizes: counted and estimated before anything is built ---------------------------


def test_a_huge_grid_is_refused_before_it_is_built(tmp_path):
    values = "[" + ", ".join(str(0.5 + i) for i in range(100)) + "]"
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC + f"[grid]\nlam = {values}\ntarget_scale = {values}\n"
                    f"init_scale = {values}\nweight_decay = {values}\n")
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="200,000,000 points"):
        load_spec(spec)
    assert time.perf_counter() - t0 < 2


@pytest.mark.parametrize("args,message", [
    (["--set", "batch_size=1000000000"], "needs about"),
    (["--set", "N=100000000", "--set", "template="], "needs about"),
    (["--steps", "10000000000000"], "needs about"),
    (["--set", "record_points=1000000000000"], "needs about"),
    (["--seeds", "0-99999999999"], "at most 1,000,000"),
    (["--seeds", str(MAX_SEED + 1)], "must be an integer in [0, 4294967295]"),
])
def test_oversized_runs_are_refused_instantly_without_loading_jax(args, message, tmp_path):
    script = ("import sys; from toymodels.cli import main\n"
              f"rc = main(['run', 'single-pair', '--out', {str(tmp_path / 'r')!r}] + {args!r})\n"
              "assert 'jax' not in sys.modules\nsys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, env=subprocess_env())
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "r").exists()


def test_seeds_are_unsigned_32_bit(tmp_path):
    assert parse_seeds(f"{MAX_SEED - 1}-{MAX_SEED}") == (MAX_SEED - 1, MAX_SEED)
    with pytest.raises(ConfigError, match="4294967295"):
        make_instances(preset("single-pair"), [2**32])
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.replace('seeds = "0-1"', "seeds = [4294967296]"))
    with pytest.raises(ConfigError, match="4294967295"):
        load_spec(spec)


# ---- 5. unusable output paths are found before the work ---------------------------------


def test_an_output_path_under_a_file_is_refused_before_work(tmp_path, capsys, no_work):
    afile = tmp_path / "afile.txt"
    afile.write_text("x")
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    np.savez(tmp_path / "heads.npz", W_Q=np.ones((2, 4, 8)), W_K=np.ones((2, 4, 8)))
    np.save(tmp_path / "features.npy", np.ones((8, 5)))
    for argv in (["run", "single-pair", "--out", f"{afile}/sub", *TOY_ARGS],
                 ["sweep", str(spec), "--out", f"{afile}/sub"],
                 ["theory", "--only", "theorem1", "--out", str(tmp_path / "t"),
                  "--figures", f"{afile}/figs"],
                 ["analyze", str(tmp_path / "heads.npz"), "--features",
                  str(tmp_path / "features.npy"), "--out", f"{afile}/sub"]):
        one_line_exit_2(argv, capsys, "is a file")
    assert afile.read_text() == "x" and not (tmp_path / "t").exists()


def test_an_output_path_that_cannot_be_created_is_refused_before_work(capsys, no_work):
    one_line_exit_2(["run", "single-pair", "--out", "/proc/toymodels-test/run", *TOY_ARGS],
                    capsys, "/proc")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_an_output_path_under_a_read_only_directory_is_refused(tmp_path, capsys, no_work):
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o500)
    try:
        one_line_exit_2(["run", "single-pair", "--out", str(locked / "a" / "r"), *TOY_ARGS],
                        capsys, "not writable")
    finally:
        locked.chmod(0o700)


# ---- 6. degenerate features and weights in analyze -------------------------------------


def test_a_dead_feature_is_reported_and_left_out_of_matching():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(16, 30))
    W[:, 5] = 0.0
    from toymodels import analyze
    result = analyze(W, W_Q=rng.normal(size=(3, 4, 16)), W_K=rng.normal(size=(3, 4, 16)),
                     template=((0, 1, 1.0), (5, 6, 0.5)))
    assert all(np.isfinite(v).all() for v in result.arrays.values() if v.dtype.kind == "f")
    assert (result.arrays["qk_cos_u"][:, 5] == 0).all()
    dead = {row["feature"]: row["dead"] for row in result.features}
    assert dead[5] and not any(v for k, v in dead.items() if k != 5)
    for pair in result.pairs:
        if pair["query_feature"] == 5:
            assert pair["sv_index"] is None and pair["cos_query_u"] is None
        else:
            assert pair["sv_index"] is not None
    assert all(h["mmcs_query_u"] is not None for h in result.heads)


@pytest.mark.parametrize("bad,name", [("features", "features"), ("W_Q", "W_Q"),
                                      ("W_K", "W_K")])
def test_non_finite_features_or_weights_are_refused(bad, name):
    rng = np.random.default_rng(0)
    arrays = {"features": rng.normal(size=(16, 30)), "W_Q": rng.normal(size=(4, 16)),
              "W_K": rng.normal(size=(4, 16))}
    arrays[bad][0, 0] = np.nan if bad != "W_K" else np.inf
    from toymodels import analyze
    with pytest.raises(AnalysisInputError, match=f"{name} holds NaN or infinite"):
        analyze(arrays.pop("features"), **arrays)


# ---- 7. corrupt or malformed files: typed errors naming the file -----------------------


def fake_run(path: Path) -> Path:
    """A run directory as `run` writes it, without training."""
    cfg = ToyConfig()
    path.mkdir()
    (path / "summary.json").write_text(json.dumps({"config": cfg.to_dict(), "instances": [
        {"seed": 0, "diverged_step": None}]}))
    z = np.zeros
    np.savez(path / "params.npz", W=z((1, 10, 20)) + 1, b=z((1, 20)), W_Q=z((1, 10, 10)) + 1,
             W_K=z((1, 10, 10)) + 1)
    np.savez(path / "curves.npz", recon=z((1, 5)), attn=z((1, 5)))
    np.savez(path / "analysis.npz", singular_values=z((1, 10)))
    return path


def truncate(path: Path):
    path.write_bytes(path.read_bytes()[:40])


@pytest.mark.parametrize("damage,message", [
    (lambda run: truncate(run / "summary.json"), "summary.json is unreadable or corrupt"),
    (lambda run: (run / "summary.json").write_text("[1, 2]"), "not an object"),
    (lambda run: truncate(run / "params.npz"), "params.npz is unreadable or corrupt"),
    (lambda run: np.savez(run / "params.npz", W=np.array([{}], dtype=object)),
     "params.npz is unreadable or corrupt"),
    (lambda run: np.savez(run / "params.npz", W=np.ones((1, 10, 20)), b=np.ones((1, 20)),
                          W_K=np.ones((1, 10, 10))), "params.npz lacks W_Q"),
    (lambda run: np.savez(run / "curves.npz", recon=np.array(["a"]), attn=np.ones(2)),
     "curves.npz: recon holds"),
])
def test_a_damaged_run_gives_a_typed_error_naming_the_file(damage, message, tmp_path, capsys):
    run = fake_run(tmp_path / "run")
    load_run(run)  # intact, it loads
    damage(run)
    with pytest.raises(RunDirError, match=message):
        load_run(run)
    one_line_exit_2(["analyze", str(run)], capsys, message)


@pytest.mark.parametrize("text,message", [
    (b"preset = \"single-pair\"\nseeds = \"0\xff\"\n", "is not UTF-8"),
    (b"preset = 5\n", "preset must be a string"),
    (b"preset = [\"single-pair\"]\n", "preset must be a string"),
    (b"preset = \"single-pair\"\nset = 5\n", "[set] must be a table"),
    (b"preset = \"single-pair\"\ngrid = [1, 2]\n", "[grid] must be a table"),
    (b"preset = \"single-pair\"\nzip = \"N\"\n", "[zip] must be a table"),
    (b"preset = \"single-pair\"\n[grid]\np_active = [[\"a\"]]\n", "p_active has 1 values"),
])
def test_a_malformed_spec_is_one_line(text, message, tmp_path, capsys, no_work):
    spec = tmp_path / "spec.toml"
    spec.write_bytes(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_spec(spec)
    one_line_exit_2(["sweep", str(spec), "--out", str(tmp_path / "s")], capsys, message)
    assert not (tmp_path / "s").exists()


def test_a_corrupt_sweep_manifest_is_one_line(tmp_path, capsys, no_work):
    out = tmp_path / "s"
    (out / "groups").mkdir(parents=True)
    (out / "manifest.json").write_text('{"spec": {"preset": "sing')
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    one_line_exit_2(["sweep", str(spec), "--out", str(out)], capsys,
                    "manifest.json is unreadable or corrupt")


@pytest.mark.parametrize("weights,message", [
    (b"PK\x03\x04 truncated", "cannot read"),
    ({"W_Q": np.array(["a", "b"]), "W_K": np.ones((4, 16))}, "W_Q holds <U1 values"),
])
def test_analyze_malformed_weights_files(weights, message, tmp_path, capsys):
    path = tmp_path / "heads.npz"
    if isinstance(weights, bytes):
        path.write_bytes(weights)
    else:
        np.savez(path, **weights)
    np.save(tmp_path / "features.npy", np.ones((16, 30)))
    one_line_exit_2(["analyze", str(path), "--features", str(tmp_path / "features.npy")],
                    capsys, message)


# ---- 8. theory --only "" ------------------------------------------------------------


def test_theory_only_empty_is_refused(tmp_path, capsys, no_work):
    one_line_exit_2(["theory", "--only", "", "--out", str(tmp_path / "t")], capsys,
                    "--only: unknown check '(none)'")


# ---- 9. one validation path per kind of value ---------------------------------------


@pytest.mark.parametrize("seeds,message", [
    ("[0, 0]", "lists a seed twice"), ("[true]", "seed True must be an integer"),
    ("[-1]", "seed -1 must be an integer"), ("[]", "at least one seed"),
    ("\"0-1,1\"", "lists a seed twice"),
])
def test_sweep_seeds_are_checked_as_run_checks_them(seeds, message, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.replace('seeds = "0-1"', f"seeds = {seeds}"))
    with pytest.raises(ConfigError, match=message):
        load_spec(spec)
    with pytest.raises(ConfigError, match="seed"):
        make_instances(preset("single-pair"), [True])


@pytest.mark.parametrize("extra,message", [
    (["--template", "0:1:1,0:1:2"], "template lists the pair (0, 1) twice"),
    (["--template", "0:1:nan"], "template value must be a finite number"),
    (["--axes", "head,head"], "names an axis twice"),
    (["--axes", "layer,bogus"], "unknown name 'bogus'"),
    (["--axes", ""], "unknown name ''"),
])
def test_analyze_checks_templates_and_axes_like_everything_else(extra, message, tmp_path,
                                                                capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "heads.npz", W_Q=rng.normal(size=(2, 4, 16)),
             W_K=rng.normal(size=(2, 4, 16)))
    np.save(tmp_path / "features.npy", rng.normal(size=(16, 30)))
    one_line_exit_2(["analyze", str(tmp_path / "heads.npz"), "--features",
                     str(tmp_path / "features.npy"), *extra], capsys, message)
    assert not (tmp_path / "heads_analysis").exists()


def test_the_api_shares_the_checks():
    from toymodels import analyze
    rng = np.random.default_rng(0)
    W_Q = rng.normal(size=(2, 4, 16))
    with pytest.raises(AnalysisInputError, match="twice"):
        analyze(rng.normal(size=(16, 30)), W_Q=W_Q, W_K=W_Q, axes=("head", "head"))
    with pytest.raises(AnalysisInputError, match="twice"):
        analyze(rng.normal(size=(16, 30)), W_Q=W_Q, W_K=W_Q,
                template=[(0, 1, 1.0), (0, 1, 1.0)])
    with pytest.raises(ConfigError, match="finite"):
        apply_overrides(preset("single-pair"), ["lam=inf"])
    from toymodels.sweep import expand
    with pytest.raises(ConfigError, match="twice"):
        expand(SweepSpec(preset="single-pair", seeds=(0, 0)))


# ---- 10. stale staging, Ctrl-C, permissions -----------------------------------------


def test_a_killed_writers_leftovers_are_cleaned_on_the_next_run(tmp_path):
    out, pid = tmp_path / "X", dead_pid()
    stale = tmp_path / f".X.staging-{pid}-abc123"
    stale.mkdir()
    (stale / "params.npz").write_bytes(b"half")
    live = tmp_path / f".X.staging-{os.getpid()}-def456"  # a live writer's: kept
    live.mkdir()
    (tmp_path / ".X.lock").write_text(str(pid))  # a dead writer's lock file
    moved_aside = tmp_path / f".X.old-{pid}"  # killed while replacing X: X is put back
    moved_aside.mkdir()
    (moved_aside / "summary.json").write_text("{}")
    with store.claim(out):
        pass
    assert not stale.exists() and live.exists() and not moved_aside.exists()
    assert (out / "summary.json").exists()
    assert not (tmp_path / ".X.lock").exists()


def test_ctrl_c_is_one_line_exit_130_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    import toymodels.run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(toymodels.run, "train", interrupted)
    assert main(["run", "single-pair", "--out", str(tmp_path / "r"), *TOY_ARGS]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted" in err
    assert list(tmp_path.iterdir()) == []  # no run, no staging folder, no lock


def test_output_directories_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        with staged(tmp_path / "X") as staging:
            (staging / "summary.json").write_text("{}")
    finally:
        os.umask(old)
    assert (tmp_path / "X").stat().st_mode & 0o777 == 0o750
