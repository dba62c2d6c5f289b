"""TransformerLens and SAELens in and out (issue 24): named layouts, TransformerLens state
dicts read without torch, SAELens dictionaries as features, exports that reproduce the
toy transformer, and blocks of near-equal singular values.

Heads are planted: Ω = Σ_p value_p · a_p b_pᵀ from orthonormal directions a_p, b_p, so the
singular pairs are known exactly. The optional test at the end loads an export into
TransformerLens' HookedTransformer (TransformerLens 3.x; it runs where torch and
transformer-lens are installed, see the README)."""

import json
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import save_file

from helpers import one_line_exit_2, orthonormal
from toymodels import analyze
from toymodels.cli import main
from toymodels.configs import TRANSFORMER_PRESETS
from toymodels.errors import AnalysisInputError, LayoutError
from toymodels.families import transformer as family
from toymodels.interop.layouts import check_layout
from toymodels.interop.saelens import read_features
from toymodels.interop.transformer_lens import (hooked_config, read_head_weights,
                                                read_tensors, state_dict_of)


def planted(directions, pairs, H):
    """toymodels-layout W_Q, W_K [H, D] with W_Qᵀ W_K = Σ_p value_p d_i d_jᵀ from the columns
    of directions [D, *]."""
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
    assert check_layout("transformer-lens") == "transformer_lens"
    assert check_layout("transformer_lens") == "transformer_lens"
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
    err = one_line_exit_2(argv, capsys, "D = H = 8; name it")
    assert "--layout" in err, err
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
    one_line_exit_2(["analyze", str(path), "--features", str(tmp_path / "W.npy"),
                     "--layout", "transformer_lens"], capsys, message)
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    err = one_line_exit_2(["analyze", str(tmp_path / "bad.safetensors"), "--features",
                           str(tmp_path / "W.npy"), "--layout", "transformer_lens"], capsys,
                          "cannot read")
    assert "as safetensors" in err, err


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
    one_line_exit_2(["analyze", str(tmp_path / "heads.npz"), "--features",
                     str(tmp_path / "sae")], capsys, message)


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


# ---- 3. toy transformers out --------------------------------------------------------------


@pytest.fixture
def tiny_run(transformer_pair_run):
    """The session's two-instance toy-transformer run (1 layer, 2 heads, D = 16, H = 8),
    40 steps (conftest.transformer_pair_run); read-only."""
    return transformer_pair_run


@pytest.fixture(scope="module")
def exported(transformer_pair_run, tmp_path_factory):
    tiny_run = transformer_pair_run
    out = tmp_path_factory.mktemp("interop") / "export"
    assert main(["export", str(tiny_run), "--to", "transformer-lens", "--out", str(out)]) == 0
    return out


FULL = TRANSFORMER_PRESETS["transformer-full"].replace(batch_size=4)  # LN, MLP, biases, positions
ROPE = TRANSFORMER_PRESETS["transformer-rope"].replace(batch_size=4, layernorm=True, bias=True,
                                                      n_layers=2, n_heads=2)


def random_params(cfg, seed=1, scale=0.3):
    """A toy transformer's parameters, every one random (biases and gains too), with a
    leading instance axis, as params.npz holds them."""
    shapes = nnx.to_pure_dict(nnx.state(nnx.eval_shape(lambda: family.build(cfg, nnx.Rngs(0)))))
    rng = np.random.default_rng(seed)
    return {k: (scale * rng.standard_normal((1,) + v.shape)).astype(np.float32)
            for k, v in shapes.items()}


def toy_forward(cfg, params, n, f):
    """toymodels' own forward pass of instance n: per-layer attention logits and patterns
    [B, n, T, T], and the output of the value features at the query [B, V]."""
    graphdef, state = nnx.split(nnx.eval_shape(lambda: family.build(cfg, nnx.Rngs(0))))
    nnx.replace_by_pure_dict(state, {k: jnp.asarray(v[n]) for k, v in params.items()})

    @jax.jit
    def forward(state, f):
        model = nnx.merge(graphdef, state)
        out, cache = model(f)
        logits = [model.attention_logits(x, layer) for layer, x in enumerate(cache["inputs"])]
        return logits, cache["attn"], model.readout(out[:, -1], cfg.value_features)

    logits, attn, out = forward(state, jnp.asarray(f))
    return [np.asarray(a) for a in logits], [np.asarray(a) for a in attn], np.asarray(out)


def lens_forward(state, config, f):
    """TransformerLens' HookedTransformer forward pass, written from its source in float64
    NumPy on an exported state dict: tokens carrying features f [B, T, N] enter as the
    residual f W_E (+ W_pos). Returns per-layer attention scores (before the mask) and
    patterns [B, n, T, T], and logits [B, T, N]."""
    s = {k: np.asarray(v, np.float64) for k, v in state.items()}
    B, T, _ = f.shape
    H, eps = config["d_head"], config["eps"]
    x = f @ s["embed.W_E"] + (s["pos_embed.W_pos"][:T] if "pos_embed.W_pos" in s else 0.0)

    def ln(x, prefix):
        if config["normalization_type"] != "LN":
            return x
        x = x - x.mean(-1, keepdims=True)
        return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps) * s[prefix + ".w"] + \
            s[prefix + ".b"]

    def rotary(v):  # GPT-J: adjacent pairs, frequency base^(-2m/H) repeated twice
        freq = np.repeat(config["rotary_base"] ** (np.arange(H // 2) / (H / 2)), 2)
        angles = np.arange(T)[:, None] / freq[None, :]  # [T, H]
        turned = np.empty_like(v)
        turned[..., ::2], turned[..., 1::2] = -v[..., 1::2], v[..., ::2]
        return v * np.cos(angles)[None, :, None] + turned * np.sin(angles)[None, :, None]

    scores_per_layer, patterns = [], []
    causal = np.tril(np.ones((T, T), bool))
    for layer in range(config["n_layers"]):
        a = f"blocks.{layer}.attn."
        h = ln(x, f"blocks.{layer}.ln1")
        q, k, v = (np.einsum("btd,ndh->btnh", h, s[a + w]) + s[a + b]
                   for w, b in (("W_Q", "b_Q"), ("W_K", "b_K"), ("W_V", "b_V")))
        if config["positional_embedding_type"] == "rotary":
            q, k = rotary(q), rotary(k)
        scores = np.einsum("bqnh,bknh->bnqk", q, k) / math.sqrt(H)
        masked = np.where(causal, scores, -np.inf)
        pattern = np.exp(masked - masked.max(-1, keepdims=True))
        pattern /= pattern.sum(-1, keepdims=True)
        z = np.einsum("bnqk,bknh->bqnh", pattern, v)
        x = x + np.einsum("bqnh,nhd->bqd", z, s[a + "W_O"]) + s[a + "b_O"]
        if not config["attn_only"]:
            m = f"blocks.{layer}.mlp."
            pre = ln(x, f"blocks.{layer}.ln2") @ s[m + "W_in"] + s[m + "b_in"]
            post = 0.5 * pre * (1 + np.tanh(math.sqrt(2 / math.pi) * (pre + 0.044715 * pre ** 3)))
            x = x + post @ s[m + "W_out"] + s[m + "b_out"]
        scores_per_layer.append(scores)
        patterns.append(pattern)
    return scores_per_layer, patterns, ln(x, "ln_final") @ s["unembed.W_U"] + s["unembed.b_U"]


def expected_shapes(config):
    L, n, D, H, N = (config[k] for k in ("n_layers", "n_heads", "d_model", "d_head", "d_vocab"))
    shapes = {"embed.W_E": (N, D), "unembed.W_U": (D, N), "unembed.b_U": (N,)}
    if config["positional_embedding_type"] != "rotary":
        shapes["pos_embed.W_pos"] = (config["n_ctx"], D)
    for layer in range(L):
        a = f"blocks.{layer}.attn."
        shapes |= {a + "W_Q": (n, D, H), a + "W_K": (n, D, H), a + "W_V": (n, D, H),
                   a + "W_O": (n, H, D), a + "b_Q": (n, H), a + "b_K": (n, H),
                   a + "b_V": (n, H), a + "b_O": (D,)}
        if config["normalization_type"] == "LN":
            shapes |= {f"blocks.{layer}.ln1.{p}": (D,) for p in "wb"}
            if not config["attn_only"]:
                shapes |= {f"blocks.{layer}.ln2.{p}": (D,) for p in "wb"}
        if not config["attn_only"]:
            F = config["d_mlp"]
            m = f"blocks.{layer}.mlp."
            shapes |= {m + "W_in": (D, F), m + "b_in": (F,), m + "W_out": (F, D),
                       m + "b_out": (D,)}
    if config["normalization_type"] == "LN":
        shapes |= {"ln_final.w": (D,), "ln_final.b": (D,)}
    return shapes


def assert_reproduces(cfg, params, n, state, config, seed=3):
    """The exported arrays, run through TransformerLens' computation in NumPy, give the toy
    model's attention logits (where the causal mask lets them count), patterns and output."""
    rng = np.random.default_rng(seed)  # sparse features in [0, 1], as the tasks draw them
    f = ((rng.random((16, cfg.T, cfg.N)) < 0.3) * rng.random((16, cfg.T, cfg.N))
         ).astype(np.float32)
    toy_logits, toy_attn, toy_out = toy_forward(cfg, params, n, f)
    scores, patterns, logits = lens_forward(state, config, f)
    causal = np.tril(np.ones((cfg.T, cfg.T), bool))
    for layer in range(cfg.n_layers):
        np.testing.assert_allclose(scores[layer][..., causal], toy_logits[layer][..., causal],
                                   rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(patterns[layer], toy_attn[layer], atol=1e-5)
    np.testing.assert_allclose(logits[:, -1, list(cfg.value_features)], toy_out,
                               rtol=1e-4, atol=1e-5)


def test_export_writes_transformer_lens_keys_and_shapes_that_reproduce_the_run(tiny_run,
                                                                                  exported):
    record = json.loads((exported / "export.json").read_text())
    assert [i["folder"] for i in record["instances"]] == ["instance_0", "instance_1"]
    assert record["qk_template"] == [[0, 1, 1.0]] and record["skipped_diverged"] == []
    from toymodels import load_run
    run = load_run(tiny_run)
    for n in range(2):
        config = json.loads((exported / f"instance_{n}" / "config.json").read_text())
        assert config | {"model_name": None} == {
            "model_name": None, "n_layers": 1, "d_model": 16, "d_head": 8, "n_heads": 2,
            "n_ctx": 8, "d_vocab": 16, "d_vocab_out": 16, "attn_only": True, "d_mlp": None,
            "act_fn": "gelu_new", "normalization_type": None, "eps": 1e-5,
            "attention_dir": "causal", "use_attn_scale": True,
            "positional_embedding_type": "standard", "default_prepend_bos": False,
            "tokenizer_name": None}
        state = read_tensors(exported / f"instance_{n}" / "model.safetensors")
        assert {k: v.shape for k, v in state.items()} == expected_shapes(config)
        assert all(v.dtype == np.float32 for v in state.values())
        np.testing.assert_array_equal(state["embed.W_E"], run.params["E"][n].T)
        assert_reproduces(run.config, run.params, n, state, config)


@pytest.mark.parametrize("cfg", [FULL, ROPE], ids=["full", "rope"])
def test_exported_state_dict_reproduces_layernorm_mlp_biases_positions_and_rope(cfg):
    params = random_params(cfg)
    state, config = state_dict_of(cfg, params, 0), hooked_config(cfg)
    assert {k: v.shape for k, v in state.items()} == expected_shapes(config)
    if cfg.positions == "rope":
        assert config["rotary_dim"] == cfg.H and config["rotary_adjacent_pairs"]
    assert_reproduces(cfg, params, 0, state, config)


def test_round_trip_through_the_transformer_lens_reader_gives_the_runs_tables(tiny_run,
                                                                               exported,
                                                                               tmp_path):
    """Re-read each instance's export as TransformerLens weights (layout named), with the
    exported embedding as features: the analysis tables equal the run's own, byte for byte."""
    from toymodels.rundir import write_analysis
    record = json.loads((exported / "export.json").read_text())
    heads, embeddings = [], []
    for inst in record["instances"]:
        path = exported / inst["folder"] / "model.safetensors"
        weights, _ = read_head_weights(path, "transformer_lens")
        heads.append(weights)
        embeddings.append(read_tensors(path)["embed.W_E"].T)
    stacked = {k: np.stack([h[k] for h in heads]) for k in heads[0]}  # [I, L, n, ...]
    L = stacked["W_Q"].shape[1]
    E = np.stack(embeddings)  # [I, D, N]
    features = np.broadcast_to(E[:, None], (E.shape[0], L) + E.shape[1:])  # per layer, as runs
    result = analyze(features, **stacked, layout="transformer_lens",
                     template=[tuple(p) for p in record["qk_template"]],
                     ov_template=[tuple(p) for p in record["ov_template"]],
                     axes=("instance", "layer", "head"))
    write_analysis(tmp_path / "again", result, {})
    for table in ("heads.csv", "pairs.csv", "features.csv"):
        assert (tmp_path / "again" / table).read_text() == \
            (tiny_run / "analysis" / table).read_text(), table


def test_export_refuses_an_existing_out_and_never_deletes_user_files(tiny_run, exported,
                                                                     tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    for extra in ([], ["--overwrite"]):
        assert main(["export", str(tiny_run), "--to", "transformer-lens", "--out", str(mine),
                     *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(mine) in err, err
        assert ("not an earlier export" if extra else "already exists") in err, err
        assert [p.name for p in mine.iterdir()] == ["notes.txt"]
        assert (mine / "notes.txt").read_text() == "keep me"
    # An earlier export: kept without --overwrite, replaced with it.
    before = (exported / "export.json").read_text()
    assert main(["export", str(tiny_run), "--to", "transformer-lens", "--out",
                 str(exported)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (exported / "export.json").read_text() == before
    again = tmp_path / "again"
    assert main(["export", str(tiny_run), "--to", "transformer-lens", "--out", str(again)]) == 0
    stamp = (again / "instance_0" / "model.safetensors").stat().st_mtime_ns
    assert main(["export", str(tiny_run), "--to", "transformer-lens", "--out", str(again),
                 "--overwrite"]) == 0
    assert (again / "instance_0" / "model.safetensors").stat().st_mtime_ns >= stamp
    assert sorted(p.name for p in again.iterdir()) == [".toymodels-files", "export.json",
                                                        "instance_0", "instance_1"]
    assert not list(tmp_path.glob(".again*"))  # no staging or lock left behind


@pytest.mark.parametrize("argv,message", [
    (["--to", "onnx"], "invalid choice: 'onnx'"),
    ([], "the following arguments are required: --to"),
])
def test_export_bad_arguments_are_one_line(tiny_run, tmp_path, capsys, argv, message):
    out = tmp_path / "x"
    with pytest.raises(SystemExit) as stop:
        sys.exit(main(["export", str(tiny_run), "--out", str(out), *argv]))
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_export_refuses_a_toy_model_run(tmp_path, capsys):
    from toymodels import ToyConfig
    out = tmp_path / "toy"  # a toy-model run directory as `run` writes it, without training
    out.mkdir()
    (out / "summary.json").write_text(json.dumps({"preset": "single-pair",
                                                  "config": ToyConfig().to_dict(),
                                                  "instances": [{"seed": 0}]}))
    z = np.zeros
    np.savez(out / "params.npz", W=z((1, 10, 20)), b=z((1, 20)), W_Q=z((1, 10, 10)),
             W_K=z((1, 10, 10)))
    np.savez(out / "curves.npz", recon=z((1, 5)), attn=z((1, 5)))
    np.savez(out / "analysis.npz", singular_values=z((1, 10)))
    assert main(["export", str(out), "--to", "transformer-lens", "--out",
                 str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "toy-model run" in err, err
    assert not (tmp_path / "x").exists()


# ---- optional: the export in TransformerLens itself ---------------------------------------


def lens_missing() -> str:
    """Why the TransformerLens test cannot run here ('' where it can): torch or
    transformer-lens absent, or a TransformerLens (4.0 on) without HookedTransformer."""
    import importlib.util
    for package in ("torch", "transformer_lens"):
        if importlib.util.find_spec(package) is None:
            return f"{package} is not installed (README: the optional TransformerLens test)"
    try:
        from transformer_lens import HookedTransformer, HookedTransformerConfig  # noqa: F401
    except ImportError:
        return "this transformer-lens has no HookedTransformer (removed in 4.0): " \
            "pip install 'transformer-lens<4'"
    return ""


@pytest.mark.skipif(bool(lens_missing()), reason=lens_missing() or "-")
def test_transformer_lens_loads_the_export_and_matches_toymodels(tiny_run, exported, tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from toymodels import load_run
    run = load_run(tiny_run)
    cases = [(run.config, run.params, n, exported / f"instance_{n}") for n in range(2)]
    for name, cfg in (("full", FULL), ("rope", ROPE)):  # written as export_run writes them
        params, folder = random_params(cfg), tmp_path / name
        folder.mkdir()
        save_file(state_dict_of(cfg, params, 0), folder / "model.safetensors")
        (folder / "config.json").write_text(json.dumps(hooked_config(cfg)))
        cases.append((cfg, params, 0, folder))
    buffers = {"mask", "IGNORE", "rotary_sin", "rotary_cos"}
    for cfg, params, n, folder in cases:
        config = json.loads((folder / "config.json").read_text())
        model = HookedTransformer(HookedTransformerConfig(**config, device="cpu"))
        missing, unexpected = model.load_state_dict(load_file(folder / "model.safetensors"),
                                                    strict=False)
        assert not unexpected and {k.rsplit(".", 1)[-1] for k in missing} <= buffers, missing
        rng = np.random.default_rng(11)
        f = ((rng.random((16, cfg.T, cfg.N)) < 0.3) * rng.random((16, cfg.T, cfg.N))
             ).astype(np.float32)
        _, toy_attn, toy_out = toy_forward(cfg, params, n, f)
        with torch.no_grad():
            resid = torch.from_numpy(f) @ model.W_E  # feature vectors as the residual stream
            if config["positional_embedding_type"] != "rotary":
                resid = resid + model.W_pos[:cfg.T]
            logits, cache = model.run_with_cache(resid, start_at_layer=0)
        for layer in range(cfg.n_layers):
            np.testing.assert_allclose(cache["pattern", layer].numpy(), toy_attn[layer],
                                       atol=1e-5)
        np.testing.assert_allclose(logits[:, -1, list(cfg.value_features)].numpy(), toy_out,
                                   rtol=1e-5, atol=1e-5)


def test_a_run_directory_takes_no_foreign_layout(tiny_run, capsys):
    one_line_exit_2(["analyze", str(tiny_run), "--layout", "transformer_lens"], capsys,
                    "toymodels layout; --layout is for weight files")
