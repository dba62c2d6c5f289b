"""`toymodels sad`: inputs from a pretrained model or a run, decomposed and written (the
library behind the command is analysis/sad.py, tested in test_analysis_sad.py)."""

import json

import numpy as np
import pytest

from helpers import cli
from toymodels.analysis import sad
from toymodels.pretrained.prompts import read_prompts


def test_cli_gpt2_end_to_end(tmp_path, capsys):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("safetensors")
    from pretrained_fixtures import write_gpt2
    ckpt = write_gpt2(tmp_path / "gpt2")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("When Mary and John went to the store , John gave a drink to Mary .\n"
                       "When Alice and Bob went to the park , Bob gave a book to Alice .\n")
    out = tmp_path / "out"
    code, _, err = cli(["sad", ckpt, "--prompts", prompts, "--out", out, "--prepend-bos",
                        "--no-progress"], capsys)
    assert code == 0, err
    assert {p.name for p in out.iterdir()} == {"firings.parquet", "heads.parquet", "sad.json",
                                                "prompts.txt", "timing.json", "nrecon.png",
                                                "heads.png", ".toymodels-files"}
    assert set(json.loads((out / ".toymodels-files").read_text())["files"]) == \
        {p.name for p in out.iterdir()} - {".toymodels-files"}
    record = json.loads((out / "sad.json").read_text())
    assert record["layernorm_folded"] is False and record["architecture"] == "gpt2"
    firings = pd.read_parquet(out / "firings.parquet")
    assert record["overall"]["firings"] == len(firings) > 0
    assert (firings["s"] < firings["d"]).all() and (firings["s"] > 0).all()  # causal, no BOS
    # folding LayerNorm into W_Q, W_K changes x and Ω̃ but no logit: the same firings and rel
    from toymodels.pretrained import load_pretrained
    from toymodels.sad import pretrained_inputs
    model = load_pretrained(ckpt)
    inputs = pretrained_inputs(model, model.encode(read_prompts(prompts), prepend_bos=True), True)
    assert inputs.meta["layernorm_folded"] is True
    folded = sad.decompose(inputs.x, inputs.mask, inputs.W_Q, inputs.W_K, inputs.b_Q,
                           inputs.b_K, special=inputs.special)
    np.testing.assert_allclose(folded.firings["rel"], firings["rel"], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist"), ("malformed", "not a readable safetensors"),
    ("unknown", "unknown architecture"), ("empty_prompts", "is empty"),
    ("too_long", "positions"), ("run_dir", "its own task")])
def test_cli_bad_input_one_line_exit_2(tmp_path, capsys, case, message):
    pytest.importorskip("safetensors")
    from pretrained_fixtures import write_gpt2
    ckpt = write_gpt2(tmp_path / "gpt2", n_positions=8 if case == "too_long" else 24)
    prompts = tmp_path / "prompts.txt"
    text = {"empty_prompts": "\n",  # 16 tokens > 8 positions:
            "too_long": "When Mary and John went to the store , John gave a drink to Mary .\n"}
    prompts.write_text(text.get(case, "Mary went to the store .\n"))
    if case == "missing":
        ckpt = tmp_path / "nowhere"
    elif case == "malformed":
        (ckpt / "model.safetensors").write_bytes(b"garbage")
    elif case == "unknown":
        (ckpt / "config.json").write_text('{"model_type": "llama"}')
    elif case == "run_dir":
        ckpt = tmp_path / "run"
        ckpt.mkdir()
        (ckpt / "summary.json").write_text("{}")
    out = tmp_path / "out"
    code, printed, err = cli(["sad", ckpt, "--prompts", prompts, "--out", out, "--no-progress"],
                             capsys)
    assert code == 2
    assert err.count("\n") == 1 and message in err and printed == ""
    assert not out.exists() and not list(tmp_path.glob(".out*"))  # nothing written


def test_sparseness_over_training_figure(tmp_path):
    from toymodels.plots.sad import plot_sparseness_over_training
    table = {"step": [0, 100, 200], "median_sparseness": [0.6, 0.4, 0.2],
             "median_sparseness_rot": [0.6, 0.6, 0.6]}
    plot_sparseness_over_training(table, tmp_path / "fig7.png", title="planted head")
    assert (tmp_path / "fig7.png").stat().st_size > 0


def test_sad_cli_on_a_transformer_run(transformer_run, tmp_path, capsys):
    sad_out = tmp_path / "sad"  # transformer_run: the session's seed-0, 20-step run
    code, _, err = cli(["sad", transformer_run, "--prompts", "task:8", "--out", sad_out,
                        "--no-progress"], capsys)
    assert code == 0, err
    record = json.loads((sad_out / "sad.json").read_text())
    assert record["architecture"] == "toymodels-transformer" and record["prompts"]["count"] == 8
    assert (sad_out / "firings.parquet").stat().st_size > 0


@pytest.mark.parametrize("flags, message", [
    (["--rotations", "0"], "rotations must be 1"), (["--rotations", "7"], "at least 20"),
    (["--recon-fracs", "1.5"], "(0, 1]"), (["--recon-fracs", "0.9,x"], "comma-separated"),
    (["--recon-fracs", "0.9,0.9"], "repeat")])
def test_cli_bad_spread_options_one_line_exit_2(tmp_path, capsys, flags, message):
    out = tmp_path / "out"  # refused before the model is even looked up
    try:
        code, printed, err = cli(["sad", tmp_path / "nowhere", "--prompts", "ioi:4", "--out",
                                  out, "--no-progress", *flags], capsys)
    except SystemExit as e:  # argparse's own refusal (cli.main exits 2 there)
        code, (printed, err) = e.code, capsys.readouterr()
    assert code == 2 and printed == ""
    assert err.count("\n") == 1 and message in err, err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_cli_rotations_and_fractions(tmp_path, capsys):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("safetensors")
    from pretrained_fixtures import write_gpt2
    ckpt = write_gpt2(tmp_path / "gpt2")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("When Mary and John went to the store , John gave a drink to Mary .\n")
    outs = {}
    for name, flags in (("one", []), ("many", ["--rotations", "20", "--recon-fracs",
                                               "0.9,0.99,1"])):
        outs[name] = tmp_path / name
        code, printed, err = cli(["sad", ckpt, "--prompts", prompts, "--out", outs[name],
                                  "--no-progress", *flags], capsys)
        assert code == 0, err
    assert "rotated 5–95% over 20 draws" in printed and "median N_recon at 0.99" in printed
    one, many = (pd.read_parquet(outs[k] / "firings.parquet") for k in ("one", "many"))
    pd.testing.assert_frame_equal(many[one.columns], one)  # the default columns unchanged
    assert (many["n_recon_at_0.9"] <= many["n_recon_at_0.99"]).all()
    assert (many["n_recon_at_1"] == many["n_recon"]).all()
    assert not (outs["one"] / "rotations.parquet").exists()
    draws = pd.read_parquet(outs["many"] / "rotations.parquet")
    heads = pd.read_parquet(outs["many"] / "heads.parquet")
    assert len(draws) == 20 * len(heads) and {"median_n_recon_rot_q05",
                                              "median_n_recon_rot_q95"} <= set(heads.columns)
    record = json.loads((outs["many"] / "sad.json").read_text())
    assert record["rotations"]["draws"] == 20 and record["options"]["rotations"] == 20
    assert "rotations" not in json.loads((outs["one"] / "sad.json").read_text())


def test_toy_sad_inputs_keep_the_models_logits_and_plant_one_key(toy_run):
    import jax.numpy as jnp
    from toymodels.families import toy
    from toymodels.models.toy import ToyModel
    from toymodels.rundir import load_run
    from flax import nnx
    run = load_run(toy_run)
    cfg = run.config
    params = {k: v[0] for k, v in run.params.items()}
    seqs = toy.planted_sequences(cfg, 12, seed=0)
    f, key_pos = seqs["f"], seqs["key_pos"]
    q, k_feat = cfg.template[0][:2]
    assert (f[:, -1, q] > 0).all() and (f[np.arange(12), key_pos, k_feat] > 0).all()
    assert ((f[:, :-1, k_feat] > 0).sum(1) == 1).all()  # the planted key is the only one
    arrays, names, meta = toy.sad_inputs(cfg, params, 12, seed=0)
    model = ToyModel(cfg.N, cfg.D, cfg.H, init_scale=cfg.init_scale, rngs=nnx.Rngs(0))
    for name in ("W", "W_Q", "W_K"):
        getattr(model, name)[...] = jnp.asarray(params[name])
    want = np.asarray(model.attention_logits(jnp.asarray(f[:, -1]), jnp.asarray(f[:, :-1])))
    result = sad.decompose(**arrays)
    # rel = logit − mean of the other keys' logits: the decomposition sees the model's logits
    rel_want = want - (want.sum(1, keepdims=True) - want) / (cfg.m - 1)
    np.testing.assert_allclose(result.pairs["rel"][0, :, 0, -1, :cfg.m], rel_want, rtol=1e-3,
                               atol=1e-4)
    assert not result.pairs["firing"][0, :, 0, :-1].any()  # only the query attends
    assert len(names) == 12 and meta["architecture"] == "toymodels-toy"
