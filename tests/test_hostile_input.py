"""Hostile input, round 2 (issue 21): each section is one item of the issue, and every
test here failed before its fix. Items 2-4 end with the user's files intact in every
variant: a plain directory, a link to a result, a link to an empty directory, a dangling
link.

toy_run and transformer_run are the session's tiny runs (conftest.py), read-only."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from helpers import REPO, TOY_ARGS, copy_run, one_line_exit_2, snapshot
from toymodels import AnalysisInputError, ConfigError, RunDirError, load_run
from toymodels.cli import main
from toymodels.configs import make_instances, preset
from toymodels import store
from toymodels.sweep import SweepSpec, load_spec, plan, run_sweep

# ---- 1. every shipped sweep spec plans and runs ----------------------------------------

SPECS = sorted((REPO / "experiments" / "sweeps").glob("*.toml"))


def tiny(spec: SweepSpec) -> SweepSpec:
    """The spec at tiny size: one seed, 2 steps, each grid axis at its first value and each
    zip axis at its last (the realism spec's richest model), so every field of the spec is
    typed and trained (the full spec is planned and hashed as it is)."""
    small = {"steps": 2, "chunk_steps": 2, "batch_size": 8, "record_points": 0}
    grid = {k: [2] if k == "steps" else v[:1] for k, v in spec.grid.items()}
    zipped = {k: v[-1:] for k, v in spec.zip.items()}
    sets = {**spec.set, **{k: v for k, v in small.items() if k not in grid}}
    return SweepSpec(preset=spec.preset, seeds=spec.seeds[:1], set=sets, grid=grid, zip=zipped)


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_every_shipped_spec_plans_hashes_and_runs_tiny(path, tmp_path):
    spec = load_spec(path)
    assert plan(spec) and len(spec.canonical_hash()) == 16  # the full spec, not only tiny
    small = tiny(spec)
    out = tmp_path / "sweep"
    manifest = run_sweep(small, out, progress=False)
    assert manifest["spec_hash"] == small.canonical_hash()
    import pyarrow.parquet as pq
    rows = pq.read_table(out / "results.parquet").num_rows
    assert rows == sum(len(g.instances) for g in plan(small)) >= 1


# ---- 2. analyze --out never replaces without --overwrite --------------------------------


@pytest.fixture
def weights(tmp_path):
    W_Q = np.random.default_rng(0).normal(size=(2, 4, 6))
    np.savez(tmp_path / "w.npz", W_Q=W_Q, W_K=W_Q[:, :, ::-1])
    np.save(tmp_path / "f.npy", np.eye(6))
    return [str(tmp_path / "w.npz"), "--features", str(tmp_path / "f.npy")]


def test_analyze_out_refuses_an_existing_analysis_without_overwrite(weights, tmp_path,
                                                                     capsys):
    out = tmp_path / "A"
    assert main(["analyze", *weights, "--out", str(out)]) == 0
    before = snapshot(out)
    one_line_exit_2(["analyze", *weights, "--out", str(out)], capsys, "--overwrite")
    assert snapshot(out) == before
    assert main(["analyze", *weights, "--out", str(out), "--overwrite"]) == 0


def test_analyze_never_replaces_a_runs_own_analysis_with_other_weights(
        toy_run, weights, tmp_path, capsys):
    toy_run = copy_run(toy_run, tmp_path / "run")
    before = snapshot(toy_run)
    one_line_exit_2(["analyze", *weights, "--out", str(toy_run / "analysis")], capsys,
                    "already exists")
    (toy_run / "analysis" / "mine.txt").write_text("notes")
    one_line_exit_2(["analyze", *weights, "--out", str(toy_run / "analysis"), "--overwrite"],
                    capsys, "mine.txt")
    # re-analysing the run itself recomputes analysis/, but not over the user's file
    one_line_exit_2(["analyze", str(toy_run)], capsys, "mine.txt")
    assert snapshot(toy_run) == {**before, "analysis/mine.txt": b"notes"}
    (toy_run / "analysis" / "mine.txt").unlink()
    assert main(["analyze", str(toy_run)]) == 0


# ---- 3. --overwrite replaces what toymodels wrote, never the user's files --------------


def test_overwrite_refuses_a_run_holding_a_users_file(toy_run, tmp_path, capsys):
    out = copy_run(toy_run, tmp_path / "R")  # `run single-pair --seeds 0-1` at tiny size
    argv = ["run", "single-pair", "--seeds", "0-1", "--out", str(out), *TOY_ARGS, "--overwrite"]
    (out / "notes.txt").write_text("my notes")
    (out / "analysis" / "deep.txt").write_text("deeper notes")
    before = snapshot(out)
    err = one_line_exit_2(argv, capsys, "toymodels did not write")
    assert "notes.txt" in err and "deep.txt" in err
    assert snapshot(out) == before
    (out / "notes.txt").unlink(), (out / "analysis" / "deep.txt").unlink()
    assert main(argv) == 0
    assert (out / store.OWNED_FILES).is_file()


def test_overwrite_refuses_a_result_that_records_no_files(tmp_path, capsys):
    out = tmp_path / "old"
    out.mkdir()
    (out / "summary.json").write_text("{}")  # as an older version left it
    one_line_exit_2(["run", "single-pair", "--out", str(out), *TOY_ARGS, "--overwrite"], capsys,
                    "did not record its files")
    assert snapshot(out) == {"summary.json": b"{}"}


def test_commit_keeps_files_that_appear_during_the_run(tmp_path):
    out = tmp_path / "R"
    with store.claim(out), store.staged(out) as staging:
        (staging / "summary.json").write_text("{}")
    (out / "late.txt").write_text("written while the next run trained")
    staging = store.stage_dir(out)  # a run that passed its checks before late.txt came
    (staging / "summary.json").write_text('{"new": 1}')
    with pytest.raises(RunDirError, match="late.txt"):
        store.commit_dir(staging, out, overwrite=True)
    assert (out / "late.txt").read_text().startswith("written")
    assert (out / "summary.json").read_text() == "{}"
    assert len(list(tmp_path.glob("R.conflict-*"))) == 1


# ---- 4. a symbolic link at --out is refused up front, and again at commit --------------


def link_variants(tmp_path, result: Path):
    """{name: (link path, what it points to)} for the three kinds of link."""
    empty = tmp_path / "empty"
    empty.mkdir()
    variants = {"to-result": result, "to-empty": empty, "dangling": tmp_path / "nowhere"}
    links = {}
    for name, target in variants.items():
        link = tmp_path / f"link-{name}"
        link.symlink_to(target)
        links[name] = link
    return links


def commands(out: Path, weights, transformer_run):
    return {"run": ["run", "single-pair", "--out", str(out), *TOY_ARGS, "--overwrite"],
            "analyze": ["analyze", *weights, "--out", str(out), "--overwrite"],
            "theory": ["theory", "--quick", "--only", "isotropy", "--out", str(out),
                       "--overwrite"],
            "sad": ["sad", str(transformer_run), "--prompts", "task:4", "--out", str(out),
                    "--overwrite", "--no-progress"],
            "sweep": ["sweep", str(REPO / "experiments/sweeps/robustness.toml"), "--out",
                      str(out)]}


@pytest.mark.parametrize("command", ["run", "analyze", "theory", "sad", "sweep"])
def test_a_link_at_out_is_refused_and_nothing_moves(command, toy_run, transformer_run,
                                                     weights, tmp_path, capsys):
    result = tmp_path / "result"
    shutil.copytree(toy_run, result)
    for name, link in link_variants(tmp_path, result).items():
        before = {"tree": snapshot(tmp_path), "target": os.readlink(link)}
        one_line_exit_2(commands(link, weights, transformer_run)[command], capsys,
                        "is a symbolic link")
        assert link.is_symlink() and os.readlink(link) == before["target"], name
        assert snapshot(tmp_path) == before["tree"], name
        assert not list(tmp_path.glob(".link-*")), name  # no stray lock or staging folder


def test_commit_refuses_an_out_that_became_a_link(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    out = tmp_path / "R"
    staging = store.stage_dir(out)
    (staging / "summary.json").write_text("{}")
    out.symlink_to(target)
    with pytest.raises(RunDirError, match="symbolic link"):
        store.commit_dir(staging, out, overwrite=True)
    assert out.is_symlink() and not any(target.iterdir())
    assert len(list(tmp_path.glob("R.conflict-*"))) == 1


# ---- 5. prompt counts are bounded before any prompt is built ---------------------------


def test_sad_refuses_ten_million_ioi_prompts_at_once(tmp_path, capsys):
    one_line_exit_2(["sad", "minilm", "--prompts", "ioi:10000000", "--out",
                     str(tmp_path / "s")], capsys, "must be in [1, 1,000,000]")
    assert not (tmp_path / "s").exists()


def test_sad_refuses_a_task_prompt_set_that_cannot_fit(transformer_run, tmp_path, capsys,
                                                        monkeypatch):
    one_line_exit_2(["sad", str(transformer_run), "--prompts", "task:100000000", "--out",
                     str(tmp_path / "s")], capsys, "must be in [1, 1,000,000]")
    import toymodels.configs
    monkeypatch.setattr(toymodels.configs, "machine_bytes", lambda: 10**8)  # a 100 MB machine
    one_line_exit_2(["sad", str(transformer_run), "--prompts", "task:1000000", "--out",
                     str(tmp_path / "s")], capsys, "GB of memory")
    assert not (tmp_path / "s").exists()


def test_sad_memory_estimate_counts_inputs_and_pair_arrays():
    from toymodels.analysis.sad import estimate_bytes
    # x and its padded copy, 4 bytes each, plus firing (1) + attn (4) + rel (4) per pair
    assert estimate_bytes(L=2, n=3, P=5, T=7, D=11) == 2 * 5 * 7 * (2 * 4 * 11 + 3 * 7 * 9)


# ---- 6. untyped failures become typed ones --------------------------------------------


def huge_header_npy(path: Path, shape=(10**6, 10**6)):
    """A valid .npy header claiming a huge float64 array, followed by 16 bytes."""
    header = {"descr": "<f8", "fortran_order": False, "shape": shape}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(b"\0" * 16)


def test_a_lying_npy_header_is_refused_before_allocating(weights, tmp_path, capsys):
    huge_header_npy(tmp_path / "huge.npy")
    one_line_exit_2(["analyze", weights[0], "--features", str(tmp_path / "huge.npy"),
                     "--out", str(tmp_path / "A")], capsys, "claims a float64 array")
    member = tmp_path / "W_Q.npy"
    huge_header_npy(member, (10**5, 10**5, 4))
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as z:
        z.write(member, "W_Q.npy")
        z.write(member, "W_K.npy")
    one_line_exit_2(["analyze", str(tmp_path / "huge.npz"), "--features", weights[2],
                     "--out", str(tmp_path / "B")], capsys, "claims a float64 array")
    assert not (tmp_path / "A").exists() and not (tmp_path / "B").exists()


def test_load_run_and_make_instances_refuse_non_paths_and_non_seeds():
    for bad in (None, 123):
        with pytest.raises(RunDirError, match="path"):
            load_run(bad)
    cfg = preset("single-pair")
    for seeds in (None, 3, "0-3"):
        with pytest.raises(ConfigError, match="list of integers"):
            make_instances(cfg, seeds)
    with pytest.raises(ConfigError, match="needs a config"):
        make_instances("single-pair", [0])
    with pytest.raises(ConfigError, match="list of values"):
        make_instances(cfg, [0], {"lam": 2.0})


def test_a_link_among_checkpoint_steps_is_refused_and_nothing_claims_removal(
        tmp_path, capsys):
    from toymodels.training.checkpoints import run_checkpoint_dir
    out = tmp_path / "R"
    args = ["run", "single-pair", "--seeds", "0-1", "--out", str(out), *TOY_ARGS,
            "--checkpoint-every", "15"]
    import toymodels.run as run_module
    real = run_module.discard
    run_module.discard = lambda plan: None  # keep the checkpoints, as a killed run does
    try:
        assert main(args) == 0
    finally:
        run_module.discard = real
    steps = run_checkpoint_dir(out) / "steps"
    last = max((p for p in steps.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    elsewhere = tmp_path / "elsewhere"
    shutil.move(last, elsewhere)
    last.symlink_to(elsewhere)
    shutil.rmtree(out)
    capsys.readouterr()
    err = one_line_exit_2(args, capsys, "is a symbolic link")
    assert "removed it" not in err
    assert last.is_symlink() and elsewhere.is_dir()


# ---- 7. validation gaps ----------------------------------------------------------------


def test_boolean_weights_are_refused(tmp_path, capsys):
    np.savez(tmp_path / "w.npz", W_Q=np.ones((4, 6), bool), W_K=np.ones((4, 6), bool))
    np.save(tmp_path / "f.npy", np.eye(6))
    one_line_exit_2(["analyze", str(tmp_path / "w.npz"), "--features",
                     str(tmp_path / "f.npy")], capsys, "holds bool values")


def test_a_run_whose_params_disagree_with_its_summary_is_refused(transformer_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(transformer_run, run)
    params = dict(np.load(run / "params.npz"))
    params = {k: np.concatenate([v, v], axis=2) if k.startswith("W_") else v
              for k, v in params.items()}  # a second head that the config does not have
    np.savez(run / "params.npz", **params)
    with pytest.raises(RunDirError, match="different runs"):
        load_run(run)


@pytest.mark.parametrize("argv,message", [
    (["--seed", "-1"], "--seed -1 must be an integer in [0, 4294967295]"),
    (["--seed", str(2**32)], "must be an integer in [0, 4294967295]"),
])
def test_sad_seed_is_checked_as_seeds_are(argv, message, transformer_run, tmp_path, capsys):
    one_line_exit_2(["sad", str(transformer_run), "--prompts", "task:4", "--out",
                     str(tmp_path / "s"), *argv], capsys, message)


@pytest.mark.parametrize("prompts", ["task:4:-5", "ioi:4:-5", "task:0", "ioi:0"])
def test_prompt_seeds_and_counts_are_checked(prompts, transformer_run, tmp_path, capsys):
    model = str(transformer_run) if prompts.startswith("task") else "minilm"
    one_line_exit_2(["sad", model, "--prompts", prompts, "--out", str(tmp_path / "s")],
                    capsys, "must be in")


def test_analyze_seed_is_checked(weights, capsys):
    from toymodels import analyze
    with pytest.raises(AnalysisInputError, match="seed -1"):
        analyze(np.eye(6), W_Q=np.ones((4, 6)), W_K=np.ones((4, 6)), seed=-1)
    one_line_exit_2(["analyze", *weights, "--seed", "-1"], capsys, "--seed -1")


def test_params_at_needs_an_integer_step(tmp_path):
    out = tmp_path / "R"
    assert main(["run", "single-pair", "--seeds", "0-1", "--out", str(out), *TOY_ARGS,
                 "--keep-checkpoints", "--checkpoint-every", "15"]) == 0
    run = load_run(out)
    assert 30 in run.checkpoint_steps
    assert run.params_at(np.int64(30))["W"].shape == run.params["W"].shape
    for bad in (30.0, "30", True):
        with pytest.raises(RunDirError, match="must be an integer"):
            run.params_at(bad)


# ---- 8. messages that say what is wrong ------------------------------------------------


@pytest.mark.parametrize("changes,message", [
    ({"D": 1}, "a fixed frame needs D >= 2"),
    ({"value_features": (2, 3, 4, 5.0)}, "must be an integer feature index"),
    ({"pairs": "not pairs"}, "pairs must be a tuple of (query_feature, key_feature, weight)"),
    ({"pairs": [(0, 1, 1.0)]}, "pairs must be a tuple of (query_feature, key_feature, weight)"),
    ({"value_features": [4, 5]}, "value_features must be a tuple of feature indices"),
])
def test_transformer_messages_name_the_real_problem(changes, message):
    with pytest.raises(ConfigError) as e:
        preset("transformer-retrieval").replace(**changes)
    assert message in str(e.value)


def test_pairs_as_strings_in_a_sweep_grid_are_taken():
    spec = SweepSpec(preset="transformer-retrieval", grid={"pairs": ["0:1:1.0",
                                                                     "0:1:1.0,6:7:0.5"]})
    assert [g.cfg.pairs for g in plan(spec)] == [((0, 1, 1.0),), ((0, 1, 1.0), (6, 7, 0.5))]


def test_sad_without_firings_prints_no_numpy_warnings(transformer_run, tmp_path, capsys):
    # a threshold of 1 asks for attention weight 1: no trained head fires
    assert main(["sad", str(transformer_run), "--prompts", "task:4", "--out",
                 str(tmp_path / "s"), "--threshold", "1", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "no firings" in captured.out
    assert "Warning" not in captured.err and "All-NaN" not in captured.err


def test_cli_errors_are_one_line_in_a_fresh_process(tmp_path):
    """Item 6's reproduction as a user runs it: one line, exit 2, no traceback."""
    np.save(tmp_path / "f.npy", np.eye(6))
    huge_header_npy(tmp_path / "W_Q.npy", (10**5, 10**5, 4))
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as z:
        z.write(tmp_path / "W_Q.npy", "W_Q.npy")
    result = subprocess.run([sys.executable, "-m", "toymodels", "analyze",
                             str(tmp_path / "huge.npz"), "--features", str(tmp_path / "f.npy")],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr


# ---- the review's findings (issue 21, second pass) -------------------------------------


def test_a_result_copied_inside_another_is_not_taken_as_its_own(toy_run, tmp_path, capsys):
    out = tmp_path / "R"
    shutil.copytree(toy_run, out)
    shutil.copytree(out / "analysis", out / "analysis_kept")  # its own record, not listed
    one_line_exit_2(["run", "single-pair", "--out", str(out), *TOY_ARGS, "--overwrite"], capsys,
                    "analysis_kept/")
    assert (out / "analysis_kept" / "heads.csv").is_file()


@pytest.mark.parametrize("record", ['{"files": null}', '{"files": 3}', "[1]", "not json"])
def test_a_damaged_record_refuses_overwrite_in_one_line(record, toy_run, tmp_path, capsys):
    out = tmp_path / "R"
    shutil.copytree(toy_run, out)
    (out / store.OWNED_FILES).write_text(record)
    one_line_exit_2(["run", "single-pair", "--out", str(out), *TOY_ARGS, "--overwrite"], capsys,
                    "toymodels did not write")
    assert (out / "summary.json").is_file()


def test_a_sweep_directory_without_a_manifest_holds_only_groups(tmp_path, capsys):
    out = tmp_path / "S"
    (out / "groups").mkdir(parents=True)
    (out / "results.parquet").write_text("mine")
    one_line_exit_2(["sweep", str(REPO / "experiments/sweeps/robustness.toml"), "--out",
                     str(out)], capsys, "not a sweep directory")
    assert (out / "results.parquet").read_text() == "mine"


def test_an_npz_whose_zip_directory_lies_is_refused(weights, tmp_path, capsys, monkeypatch):
    import toymodels.arrays

    def never(*args, **kwargs):
        raise AssertionError("the array was allocated before its size was checked")

    monkeypatch.setattr(toymodels.arrays.npy_format, "read_array", never)
    member = tmp_path / "W_Q.npy"
    huge_header_npy(member, (10**4, 10**4))  # 800 MB claimed, under the directory's lie
    with zipfile.ZipFile(tmp_path / "lie.npz", "w") as z:
        z.write(member, "W_Q.npy")
    data = bytearray((tmp_path / "lie.npz").read_bytes())
    # the central directory's uncompressed size (offset 24 of its entry) claims 4.3 GB
    entry = data.rindex(b"PK\x01\x02")
    data[entry + 24:entry + 28] = (0xFFFFFFFF).to_bytes(4, "little")
    (tmp_path / "lie.npz").write_bytes(bytes(data))
    one_line_exit_2(["analyze", str(tmp_path / "lie.npz"), "--features", weights[2], "--out",
                     str(tmp_path / "A")], capsys, "claims a float64 array")


def test_a_link_or_file_where_checkpoints_go_is_refused(tmp_path, capsys):
    from toymodels.training.checkpoints import run_checkpoint_dir
    out = tmp_path / "R"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    run_checkpoint_dir(out).symlink_to(mine)
    one_line_exit_2(["run", "single-pair", "--out", str(out), *TOY_ARGS], capsys, "link or a file")
    run_checkpoint_dir(out).unlink()
    run_checkpoint_dir(out).write_text("a file")
    one_line_exit_2(["run", "single-pair", "--out", str(out), *TOY_ARGS, "--overwrite"], capsys,
                    "link or a file")
    assert (mine / "keep.txt").read_text() == "mine"
