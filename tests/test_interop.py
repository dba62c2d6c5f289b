"""TransformerLens and SAELens in and out (issue 24): named layouts, TransformerLens state
dicts read without torch, SAELens dictionaries as features, exports that reproduce the
toy transformer, and blocks of near-equal singular values.

Heads are planted: Ω = Σ_p value_p · a_p b_pᵀ from orthonormal directions a_p, b_p, so the
singular pairs are known exactly. The optional test at the end loads an export into
TransformerLens' HookedTransformer (TransformerLens 3.x; it runs where torch and
transformer-lens are installed, see the README)."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import save_file

from toymodels import analyze
from toymodels.cli import main
from toymodels.config_transformer import TRANSFORMER_PRESETS
from toymodels.errors import AnalysisInputError, LayoutError
from toymodels.families import transformer as family
from toymodels.interop.layouts import check_layout
from toymodels.interop.saelens import read_features
from toymodels.interop.transformer_lens import (hooked_config, read_head_weights,
                                                read_tensors, state_dict_of)
from toymodels.tasks.retrieval import sample


def orthonormal(rng, D, n):
    q, _ = np.linalg.qr(rng.normal(size=(D, D)))
    return q[:, :n]


def planted(directions, pairs, H):
    """toymodels-layout W_Q, W_K [H, D] with W_Qᵀ W_K = Σ_p value_p d_i d_jᵀ, directions [D, *]."""
    D = directions.shape[0]
    W_Q, W_K = np.zeros((H, D)), np.zeros((H, D))
    for row, (i, j, value) in enumerate(pairs):
        W_Q[row] = math.sqrt(value) * directions[:, i]
        W_K[row] = math.sqrt(value) * directions[:, j]
    return W_Q.astype(np.float32), W_K.astype(np.float32)


def tl(a):
    """toymodels layout -> TransformerLens layout (and back): the last two axes swapped."""
    return np.ascontiguousarray(np.swapaxes(a, -1, -2))


PAIRS = ((0, 1, 3.0), (2, 3, 2.0), (4, 5, 1.0))


def d_equals_h_head(D=8):
    rng = np.random.default_rng(0)
    W = orthonormal(rng, D, D).astype(np.float32)  # N = D features
    W_Q, W_K = planted(W, PAIRS, H=D)
    W_O, W_Vt = planted(W, ((6, 7, 1.5),), H=D)  # OV = W_O W_V = 1.5 w_6 w_7ᵀ
    return W, {"W_Q": W_Q, "W_K": W_K, "W_V": W_Vt, "W_O": W_O.T.copy()}


def matched(result, circuit="qk"):
    return [min(p["cos_query_u"], p["cos_key_v"]) for p in result.pairs
            if p["circuit"] == circuit]


# ---- 1. layouts named, never guessed ----------------------------------------------------


def test_layout_names():
    assert check_layout("transformer-lens") == check_layout("transformer_lens") == "transformer_lens"
    assert check_layout(None) is None and check_layout("toymodels") == "toymodels"
    with pytest.raises(LayoutError, match="unknown layout 'hf'"):
        check_layout("hf")


def test_d_equals_h_transformer_lens_weights_need_the_layout_named():
    W, toy = d_equals_h_head()
    lens = {k: tl(v) for k, v in toy.items()}
    kwargs = dict(template=PAIRS, ov_template=((6, 7, 1.5),), axes=())
    with pytest.raises(LayoutError, match="fit both the toymodels .* D = H = 8; name it"):
        analyze(W, **lens, **kwargs)
    right = analyze(W, **lens, layout="transformer_lens", **kwargs)
    assert right.layout == "transformer_lens"
    assert min(matched(right)) > 0.9999 and min(matched(right, "ov")) > 0.9999
    assert [p["sv_index"] for p in right.pairs if p["circuit"] == "qk"] == [0, 1, 2]
    np.testing.assert_allclose(right.arrays["qk_S"][:3], [3.0, 2.0, 1.0], rtol=1e-5)
    # The same numbers as toymodels' own layout gives for its own arrays.
    own = analyze(W, **toy, layout="toymodels", **kwargs)
    assert own.pairs == right.pairs
    # Read in the wrong layout, the head decomposes W_Q W_Kᵀ: no error, wrong answer.
    wrong = analyze(W, **lens, layout="toymodels", **kwargs)
    assert np.mean(matched(wrong)) < 0.9


def test_unnamed_layout_is_taken_only_where_it_is_the_only_fit():
    rng = np.random.default_rng(1)
    W = orthonormal(rng, 16, 8).astype(np.float32)
    W_Q, W_K = planted(W, PAIRS, H=4)  # [4, 16]: only toymodels' layout fits
    assert min(matched(analyze(W, W_Q=W_Q, W_K=W_K, template=PAIRS, axes=()))) > 0.9999
    with pytest.raises(LayoutError, match="weights are in the TransformerLens layout"):
        analyze(W, W_Q=tl(W_Q), W_K=tl(W_K), template=PAIRS, axes=())
    named = analyze(W, W_Q=tl(W_Q), W_K=tl(W_K), template=PAIRS, axes=(),
                    layout="transformer-lens")
    assert min(matched(named)) > 0.9999


def test_cli_d_equals_h_without_layout_is_one_line_exit_2_nothing_written(tmp_path, capsys):
    W, toy = d_equals_h_head()
    np.savez(tmp_path / "heads.npz", **{k: tl(v) for k, v in toy.items()})
    np.save(tmp_path / "W.npy", W)
    argv = ["analyze", str(tmp_path / "heads.npz"), "--features", str(tmp_path / "W.npy"),
            "--template", "0:1:3,2:3:2,4:5:1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "D = H = 8; name it" in err and "--layout" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["W.npy", "heads.npz"]
    assert main(argv + ["--layout", "transformer_lens"]) == 0
    pairs = (tmp_path / "heads_analysis" / "pairs.csv").read_text().splitlines()
    assert len(pairs) == 1 + 3  # the CLI's template is QK's
    meta = json.loads((tmp_path / "heads_analysis" / "analysis.json").read_text())
    assert meta["layout"] == "transformer_lens"
    import csv
    rows = list(csv.DictReader(open(tmp_path / "heads_analysis" / "pairs.csv")))
    assert all(float(r["cos_query_u"]) > 0.9999 and float(r["cos_key_v"]) > 0.9999 for r in rows
               if r["circuit"] == "qk")


def write_state_dict(path, W_Q, W_K, W_V, W_O, biases=True, grouped=False):
    """TransformerLens keys: W_* [L, n, ...] in its layout, written layer by layer."""
    rng = np.random.default_rng(5)
    state = {}
    for layer in range(W_Q.shape[0]):
        pre = f"blocks.{layer}.attn."
        state |= {pre + "W_Q": W_Q[layer], pre + "W_O": W_O[layer]}
        if grouped:  # one key/value head shared by all query heads
            state |= {pre + "_W_K": W_K[layer, :1], pre + "_W_V": W_V[layer, :1]}
        else:
            state |= {pre + "W_K": W_K[layer], pre + "W_V": W_V[layer]}
        if biases:
            n, _, H = W_Q.shape[1:]
            state |= {pre + "b_Q": rng.normal(size=(n, H)), pre + "b_K": rng.normal(size=(n, H)),
                      pre + "b_V": np.zeros((n, H)), pre + "b_O": np.zeros(W_Q.shape[2])}
        state[f"blocks.{layer}.ln1.w"] = np.ones(W_Q.shape[2])
    state = {k: np.asarray(v, np.float32) for k, v in state.items()}
    if path.suffix == ".npz":
        np.savez(path, **state)
    else:
        save_file(state, path)
    return path


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_a_transformer_lens_state_dict_is_read_without_torch(tmp_path, capsys, suffix):
    W, toy = d_equals_h_head()
    L, n = 2, 3  # every head the same planted head
    stacked = {k: np.broadcast_to(tl(v), (L, n) + v.shape[::-1]).copy() for k, v in toy.items()}
    path = write_state_dict(tmp_path / f"model{suffix}", **stacked)
    weights, info = read_head_weights(path, "transformer_lens")
    assert weights["W_Q"].shape == (L, n, 8, 8) and weights["W_O"].shape == (L, n, 8, 8)
    assert info == {"kind": "transformer_lens state dict", "biases": ["b_Q", "b_K"]}
    np.save(tmp_path / "W.npy", W)
    argv = ["analyze", str(path), "--features", str(tmp_path / "W.npy"),
            "--template", "0:1:3,2:3:2,4:5:1", "--out", str(tmp_path / "out")]
    assert main(argv) == 2  # D = H: the layout must be named
    assert "name it" in capsys.readouterr().err and not (tmp_path / "out").exists()
    assert main(argv + ["--layout", "toymodels"]) == 2
    assert "is a TransformerLens state dict" in capsys.readouterr().err
    assert main(argv + ["--layout", "transformer_lens"]) == 0
    import csv
    rows = list(csv.DictReader(open(tmp_path / "out" / "pairs.csv")))
    assert len(rows) == L * n * 3  # QK pairs of every head
    assert {(r["layer"], r["head"]) for r in rows} == {(str(a), str(b)) for a in range(L)
                                                       for b in range(n)}
    assert all(float(r["cos_query_u"]) > 0.9999 for r in rows if r["circuit"] == "qk")
    meta = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert meta["axes"] == ["layer", "head"] and meta["weights"]["biases"] == ["b_Q", "b_K"]


def test_grouped_query_state_dict_shares_key_value_heads(tmp_path):
    rng = np.random.default_rng(2)
    W_Q, W_K, W_V, W_O = (rng.normal(size=(1, 4) + s).astype(np.float32)
                          for s in ((16, 4), (16, 4), (16, 4), (4, 16)))
    path = write_state_dict(tmp_path / "gqa.safetensors", W_Q, W_K, W_V, W_O, grouped=True)
    weights, _ = read_head_weights(path, "transformer_lens")
    for head in range(4):  # every query head reads key/value head 0
        np.testing.assert_array_equal(weights["W_K"][0, head], W_K[0, 0])
        np.testing.assert_array_equal(weights["W_V"][0, head], W_V[0, 0])


@pytest.mark.parametrize("drop,message", [
    ("blocks.1.attn.W_K", "blocks.1.attn lacks W_K"),
    ("blocks.0.attn.W_Q", "blocks.0.attn lacks W_Q"),
    ("blocks.0.attn.", "attention weights for layers [1]; expected blocks.0 .. blocks.0"),
])
def test_a_broken_state_dict_is_one_line(tmp_path, capsys, drop, message):
    rng = np.random.default_rng(3)
    arrays = [rng.normal(size=(2, 2) + s).astype(np.float32)
              for s in ((16, 4), (16, 4), (16, 4), (4, 16))]
    path = write_state_dict(tmp_path / "m.safetensors", *arrays)
    state = {k: v for k, v in read_tensors(path).items() if not k.startswith(drop)}
    save_file(state, path)
    np.save(tmp_path / "W.npy", rng.normal(size=(16, 20)))
    assert main(["analyze", str(path), "--features", str(tmp_path / "W.npy"),
                 "--layout", "transformer_lens"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    assert main(["analyze", str(tmp_path / "bad.safetensors"), "--features",
                 str(tmp_path / "W.npy"), "--layout", "transformer_lens"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot read" in err and "as safetensors" in err, err


# ---- 2. SAE dictionaries as features -----------------------------------------------------


SAE_PAIRS = ((10, 37, 2.0), (50, 3, 1.0))


def write_sae(folder, cfg_changes=(), d_sae=64, d_model=16, dead=20):
    """An SAE directory as SAELens' save_model writes it: random W_dec rows, the planted
    directions (orthonormal, stored at assorted norms) in rows 10, 37, 50, 3, one dead row."""
    rng = np.random.default_rng(7)
    W_dec = rng.normal(size=(d_sae, d_model))
    planted_dirs = orthonormal(rng, d_model, 4)
    for col, (row, norm) in enumerate(zip((10, 37, 50, 3), (2.5, 0.3, 1.0, 7.0))):
        W_dec[row] = norm * planted_dirs[:, col]
    W_dec[dead] = 0.0
    folder.mkdir()
    save_file({"W_dec": W_dec.astype(np.float32),
               "W_enc": W_dec.T.astype(np.float32).copy(),
               "b_enc": np.zeros(d_sae, np.float32), "b_dec": np.zeros(d_model, np.float32)},
              folder / "sae_weights.safetensors")
    cfg = {"architecture": "standard", "d_in": d_model, "d_sae": d_sae, "dtype": "float32",
           "device": "cpu", "apply_b_dec_to_input": True, "normalize_activations": "none",
           "reshape_activations": "none",
           "metadata": {"model_name": "toy", "hook_name": "blocks.0.hook_resid_pre",
                        "sae_lens_version": "6.5.0"}} | dict(cfg_changes)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    directions = np.zeros((d_model, d_sae))
    directions[:, [10, 37, 50, 3]] = planted_dirs
    return directions


def test_an_saelens_dictionary_scores_planted_heads(tmp_path, capsys):
    directions = write_sae(tmp_path / "sae")
    W, info = read_features(tmp_path / "sae")
    assert W.shape == (16, 64) and info["d_sae"] == 64 and info["dead"] == 1
    assert info["hook_name"] == "blocks.0.hook_resid_pre"
    norms = np.linalg.norm(W, axis=0)
    np.testing.assert_allclose(np.delete(norms, 20), 1.0, rtol=1e-6)  # rows normalised
    assert norms[20] == 0.0  # the dead row stays zero
    np.testing.assert_allclose(W[:, [10, 37, 50, 3]], directions[:, [10, 37, 50, 3]], atol=1e-6)

    W_Q, W_K = planted(directions, SAE_PAIRS, H=4)
    result = analyze(W, W_Q=W_Q[None], W_K=W_K[None], template=SAE_PAIRS, axes=("head",))
    assert [p["sv_index"] for p in result.pairs] == [0, 1]
    assert min(matched(result)) > 0.9999
    dead = [f for f in result.features if f["dead"]]
    assert [f["feature"] for f in dead] == [20]

    # The CLI takes the directory and its .safetensors file alike.
    np.savez(tmp_path / "heads.npz", W_Q=W_Q[None], W_K=W_K[None])
    for features in (tmp_path / "sae", tmp_path / "sae" / "sae_weights.safetensors"):
        out = tmp_path / f"out_{features.name}"
        assert main(["analyze", str(tmp_path / "heads.npz"), "--features", str(features),
                     "--template", "10:37:2,50:3:1", "--axes", "head", "--out", str(out)]) == 0
        import csv
        rows = list(csv.DictReader(open(out / "pairs.csv")))
        assert [r["sv_index"] for r in rows] == ["0", "1"]
        assert all(float(r["cos_query_u"]) > 0.9999 for r in rows)
        assert json.loads((out / "analysis.json").read_text())["features_info"]["kind"] == \
            "saelens"


@pytest.mark.parametrize("change,message", [
    ({"d_in": 32}, "says d_in=32 but W_dec is [64, 16]"),
    ({"d_sae": 10}, "says d_sae=10"),
])
def test_an_sae_that_does_not_fit_is_one_line(tmp_path, capsys, change, message):
    write_sae(tmp_path / "sae", change)
    np.savez(tmp_path / "heads.npz", W_Q=np.ones((4, 16)), W_K=np.ones((4, 16)))
    assert main(["analyze", str(tmp_path / "heads.npz"), "--features",
                 str(tmp_path / "sae")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_sae_files_missing_or_without_a_decoder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(AnalysisInputError, match="lacks cfg.json and sae_weights.safetensors"):
        read_features(tmp_path / "empty")
    save_file({"W_enc": np.ones((4, 8), np.float32)}, tmp_path / "enc.safetensors")
    with pytest.raises(AnalysisInputError, match="holds no W_dec"):
        read_features(tmp_path / "enc.safetensors")


# ---- 4. degenerate spectra: blocks ------------------------------------------------------


def test_pairs_on_equal_singular_values_are_flagged_as_in_a_block():
    rng = np.random.default_rng(4)
    W = orthonormal(rng, 8, 8).astype(np.float32)
    pairs = ((0, 1, 2.0), (2, 3, 2.0), (4, 5, 1.0))
    W_Q, W_K = planted(W, pairs, H=8)
    result = analyze(W, W_Q=W_Q, W_K=W_K, template=pairs, axes=(), layout="toymodels")
    head = result.heads[0]
    assert head["sv_blocks"] == "0 0 1 2 2 2 2 2" and head["n_degenerate"] == 2
    assert result.arrays["qk_block"].tolist() == [0, 0, 1, 2, 2, 2, 2, 2]
    flags = [(p["in_block"], p["block_size"], p["sv_block"]) for p in result.pairs]
    assert flags == [(True, 2, 0), (True, 2, 0), (False, 1, 1)]
    # Split the tie by more than the gap and the block goes away.
    pairs = ((0, 1, 2.0), (2, 3, 1.9), (4, 5, 1.0))
    W_Q, W_K = planted(W, pairs, H=8)
    result = analyze(W, W_Q=W_Q, W_K=W_K, template=pairs, axes=(), layout="toymodels")
    assert result.heads[0]["sv_blocks"] == "0 1 2 3 3 3 3 3"
    assert [p["in_block"] for p in result.pairs] == [False, False, False]
    # A wider gap joins them again (σ 2.0 and 1.9 are 5% apart).
    wide = analyze(W, W_Q=W_Q, W_K=W_K, template=pairs, axes=(), layout="toymodels",
                   block_gap=0.06)
    assert [p["in_block"] for p in wide.pairs] == [True, True, False]
    with pytest.raises(AnalysisInputError, match="block_gap must be in"):
        analyze(W, W_Q=W_Q, W_K=W_K, axes=(), layout="toymodels", block_gap=1.0)
