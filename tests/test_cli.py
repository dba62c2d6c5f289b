"""The command line end to end on tiny runs, and every bad-input case.

toy_run and no_head_run are the session's tiny runs (conftest.py), read-only."""

import json
import subprocess
import sys

import numpy as np
import pytest

from helpers import TOY_ARGS, copy_run, one_line_exit_2
from toymodels import load_run
from toymodels.analysis.svd import dense_qk_svd
from toymodels.cli import main


def numbers(summary):
    """Everything in summary.json that is a result, not provenance."""
    return {k: summary[k] for k in ("preset", "config", "instances")}


def test_run_writes_a_complete_summary(toy_run, capsys):
    summary = json.loads((toy_run / "summary.json").read_text())
    assert summary["preset"] == "single-pair"
    assert summary["config"]["steps"] == 30 and summary["config"]["batch_size"] == 32
    assert set(summary["versions"]) >= {"jax", "flax", "optax", "numpy", "python"}
    assert "git_commit" in summary
    assert [inst["seed"] for inst in summary["instances"]] == [0, 1]
    for inst in summary["instances"]:
        assert set(inst["overrides"]) == {"lam", "learning_rate", "p_active", "target_scale"}
        assert set(inst["final_loss"]) == {"recon", "attn"}
        s = inst["singular_values"]
        assert len(s) == 10 and s == sorted(s, reverse=True)
        (pair,) = inst["pairs"]
        assert (pair["query_feature"], pair["key_feature"], pair["target"]) == (0, 1, 1.0)
        assert set(pair) == {"query_feature", "key_feature", "target", "sv_index",
                             "cos_query_u", "cos_key_v", "sigma", "significant"}
        assert set(inst["dynamics"]) >= {"step_alignment_above", "step_interference_below"}
        assert pair["sigma"] == s[pair["sv_index"]]
    for name in ("params.npz", "curves.npz", "analysis.npz", "dynamics.npz", "alignment.png",
                 "analysis/heads.csv", "analysis/pairs.csv", "analysis/features.csv"):
        assert (toy_run / name).stat().st_size > 0
    assert not list(toy_run.parent.glob(".*staging*"))  # staging folder renamed away
    meta = json.loads((toy_run / "analysis" / "analysis.json").read_text())
    assert meta["run"] == toy_run.name  # the run's name, not its staging folder's


def test_load_run_reproduces_the_summary(toy_run):
    run = load_run(toy_run)
    assert run.config.steps == 30
    assert run.params["W_Q"].shape == (2, 10, 10) and run.curves["recon"].shape == (2, 30)
    S = np.asarray(dense_qk_svd(run.params["W_Q"], run.params["W_K"])[1])
    for n, inst in enumerate(run.summary["instances"]):
        np.testing.assert_allclose(S[n], inst["singular_values"], rtol=1e-4, atol=1e-7)


def test_same_command_twice_gives_identical_numbers(toy_run, tmp_path):
    again = tmp_path / "again"
    assert main(["run", "single-pair", "--seeds", "0-1", "--out", str(again), *TOY_ARGS]) == 0
    first = json.loads((toy_run / "summary.json").read_text())
    second = json.loads((again / "summary.json").read_text())
    assert numbers(first) == numbers(second)


def test_existing_run_is_kept_unless_overwrite(toy_run, tmp_path, capsys):
    run = copy_run(toy_run, tmp_path / "run")
    before = (run / "summary.json").read_bytes()
    assert main(["run", "single-pair", "--seeds", "5", "--out", str(run), *TOY_ARGS]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (run / "summary.json").read_bytes() == before


def test_overwrite_replaces_a_run(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "no-head", "--seeds", "0", "--out", str(out), *TOY_ARGS]) == 0
    assert main(["run", "no-head", "--seeds", "1", "--out", str(out), "--overwrite",
                 *TOY_ARGS]) == 0
    assert [i["seed"] for i in json.loads((out / "summary.json").read_text())["instances"]] == [1]


def test_no_head_claims_no_alignment(no_head_run):
    out = no_head_run  # `run no-head --seeds 0-1` at tiny size
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["lam"] == 0 and summary["config"]["template"] == []
    assert all(inst["pairs"] == [] for inst in summary["instances"])


def test_vary_gives_instances_their_own_values(tmp_path):
    out = tmp_path / "vary"
    assert main(["run", "single-pair", "--seeds", "0", "--vary", "target_scale=0.5,4",
                 "--out", str(out), *TOY_ARGS]) == 0
    insts = json.loads((out / "summary.json").read_text())["instances"]
    assert [i["overrides"]["target_scale"] for i in insts] == [0.5, 4.0]


def test_multi_pair_smoke(tmp_path):
    out = tmp_path / "multi"
    assert main(["run", "multi-pair", "--seeds", "0-1", "--out", str(out), "--steps", "20",
                 "--set", "chunk_steps=20", "--set", "batch_size=64", "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert all(len(i["pairs"]) == 20 and len(i["singular_values"]) == 50
               for i in summary["instances"])


BAD_INPUT = [
    (["run", "nosuch"], "unknown preset 'nosuch'"),
    (["run", "single-pair", "--set", "bogus=1"], "unknown config field 'bogus'"),
    (["run", "single-pair", "--set", "lam=high"], "lam='high': expected a number"),
    (["run", "single-pair", "--set", "N=2.5"], "N='2.5': expected an integer"),
    (["run", "single-pair", "--set", "N=0"], "N must be > 0"),
    (["run", "single-pair", "--set", "D=0"], "D must be > 0"),
    (["run", "single-pair", "--set", "H=-2"], "H must be > 0"),
    (["run", "single-pair", "--set", "p_active=0"], "p_active must be in (0, 1]"),
    (["run", "single-pair", "--set", "p_active=1.01"], "p_active must be in (0, 1]"),
    (["run", "single-pair", "--set", "template=0:25:1"], "template index 25 is out of range"),
    (["run", "single-pair", "--set", "N=1"], "template index 1 is out of range for N=1"),
    (["run", "single-pair", "--seeds", "3-1"], "--seeds '3-1' is malformed"),
    (["run", "single-pair", "--seeds", "x"], "--seeds 'x' is malformed"),
    (["run", "single-pair", "--steps", "0"], "steps must be > 0"),
    (["run", "single-pair", "--steps", "many"], "invalid int value: 'many'"),
    (["run", "single-pair", "--vary", "N=1,2"], "only lam, learning_rate"),
]


@pytest.mark.parametrize("argv,message", BAD_INPUT)
def test_bad_input_is_one_line_exit_2_and_touches_nothing(argv, message, tmp_path, capsys):
    fresh = tmp_path / "fresh" / "run"
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "summary.json").write_text('{"kept": true}')
    for out in (fresh, existing):
        with pytest.raises(SystemExit) as exc:
            sys.exit(main(argv + ["--out", str(out)]))
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "fresh").exists()
    assert [p.name for p in existing.iterdir()] == ["summary.json"]
    assert (existing / "summary.json").read_text() == '{"kept": true}'


def test_module_entry_point_reports_errors(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "toymodels", "run", "nosuch", "--out",
                           str(tmp_path / "x")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "unknown preset" in proc.stderr
    assert not (tmp_path / "x").exists()
    help_text = subprocess.run([sys.executable, "-m", "toymodels", "run", "--help"],
                               capture_output=True, text=True).stdout
    assert "--seeds" in help_text and "examples:" in help_text


def test_analyze_a_run_rewrites_its_metrics_without_retraining(toy_run, tmp_path, capsys):
    run = copy_run(toy_run, tmp_path / "run")
    heads = run / "analysis" / "heads.csv"
    before = heads.read_text()
    params_before = (run / "params.npz").read_bytes()
    heads.unlink()
    assert main(["analyze", str(run)]) == 0
    assert heads.read_text() == before
    assert (run / "params.npz").read_bytes() == params_before
    assert "mmcs_query_u" in capsys.readouterr().out


def test_analyze_weights_file(tmp_path, capsys):
    rng = np.random.default_rng(0)
    weights = tmp_path / "heads.npz"
    np.savez(weights, W_Q=rng.normal(size=(2, 3, 4, 16)), W_K=rng.normal(size=(2, 3, 4, 16)),
             W_V=rng.normal(size=(2, 3, 4, 16)), W_O=rng.normal(size=(2, 3, 16, 4)))
    np.save(tmp_path / "features.npy", rng.normal(size=(16, 30)))
    assert main(["analyze", str(weights), "--features", str(tmp_path / "features.npy"),
                 "--template", "0:1:1,2:3:0.5"]) == 0
    out = tmp_path / "heads_analysis"
    heads = (out / "heads.csv").read_text().splitlines()
    assert heads[0].startswith("layer,head,circuit,")
    assert len(heads) == 1 + 2 * 3 * 2  # layers × heads × {qk, ov}
    assert len((out / "pairs.csv").read_text().splitlines()) == 1 + 2 * 3 * 2
    meta = json.loads((out / "analysis.json").read_text())
    assert meta["axes"] == ["layer", "head"] and meta["template"] == [[0, 1, 1.0], [2, 3, 0.5]]


@pytest.mark.parametrize("extra,message", [
    ([], "needs --features"),
    (["--features", "missing.npy"], "does not exist"),
    (["--features", "features.npy", "--template", "0:99:1"], "out of range for N=30"),
    (["--features", "wrong_d.npy"], "its D axis is 16"),
    (["--features", "features.npy", "--axes", "layer,head"], "name them with axes"),
    (["--features", "features.npy", "--rel-tol", "2"], "--rel-tol must be in [0, 1)"),
])
def test_analyze_bad_input(tmp_path, monkeypatch, capsys, extra, message):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    np.savez("heads.npz", W_Q=rng.normal(size=(3, 4, 16)), W_K=rng.normal(size=(3, 4, 16)))
    np.save("features.npy", rng.normal(size=(16, 30)))
    np.save("wrong_d.npy", rng.normal(size=(12, 30)))
    one_line_exit_2(["analyze", "heads.npz", *extra], capsys, message)
    assert not (tmp_path / "heads_analysis").exists()


def test_analyze_rejects_a_path_that_is_neither(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "nothing")]) == 2
    assert "neither a run directory nor an .npz" in capsys.readouterr().err


@pytest.mark.parametrize("args,words", [
    (["--set", "n_layers=0"], "n_layers"),
    (["--set", "positions=rope", "--set", "H=7"], "even"),
    (["--set", "pairs=0:99:1.0"], "outside"),
    (["--set", "pairs=0:2:1.0"], "both a key and a value"),
    (["--set", "T=1"], "too short"),
])
def test_transformer_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args,
                                                                     words):
    out = tmp_path / "run"
    one_line_exit_2(["run", "transformer-retrieval", "--out", str(out), *args], capsys, words)
    assert not out.exists() and not list(tmp_path.iterdir())
