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
