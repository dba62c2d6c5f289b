"""Tiny random Hugging Face-format checkpoints (BERT, GPT-2) written by tests, and
independent NumPy (float64) forward passes that read the raw Hugging Face tensors."""

import json
from pathlib import Path

import numpy as np

WORDS = ("when and went to the store park gave a drink book mary john alice bob , . "
         "When Mary John Alice Bob").split()


def _word_tokenizer(path: Path, specials, template=None):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from tokenizers.processors import TemplateProcessing
    vocab = {w: i for i, w in enumerate(list(specials) + sorted(set(WORDS)))}
    tok = Tokenizer(WordLevel(vocab, unk_token=specials[-1]))
    tok.pre_tokenizer = Whitespace()
    if template:
        tok.post_processor = TemplateProcessing(
            single=template, special_tokens=[(s, vocab[s]) for s in ("[CLS]", "[SEP]")])
    tok.save(str(path / "tokenizer.json"))
    return len(vocab)


def write_gpt2(path, D=16, n_head=2, n_layer=2, n_positions=24, seed=0, prefix="") -> Path:
    from safetensors.numpy import save_file
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    V = _word_tokenizer(path, ["<bos>", "<unk>"])
    rng = np.random.default_rng(seed)

    def r(*shape, scale=0.3):
        return (rng.normal(size=shape) * scale).astype(np.float32)

    t = {"wte.weight": r(V, D, scale=1.0), "wpe.weight": r(n_positions, D),
         "ln_f.weight": 1 + r(D, scale=0.1), "ln_f.bias": r(D, scale=0.1)}
    for l in range(n_layer):
        p = f"h.{l}."
        t.update({p + "ln_1.weight": 1 + r(D, scale=0.1), p + "ln_1.bias": r(D, scale=0.1),
                  p + "attn.c_attn.weight": r(D, 3 * D), p + "attn.c_attn.bias": r(3 * D),
                  p + "attn.c_proj.weight": r(D, D), p + "attn.c_proj.bias": r(D),
                  p + "attn.bias": np.tril(np.ones((n_positions, n_positions), np.float32)),
                  p + "ln_2.weight": 1 + r(D, scale=0.1), p + "ln_2.bias": r(D, scale=0.1),
                  p + "mlp.c_fc.weight": r(D, 4 * D), p + "mlp.c_fc.bias": r(4 * D),
                  p + "mlp.c_proj.weight": r(4 * D, D), p + "mlp.c_proj.bias": r(D)})
    save_file({prefix + k: v for k, v in t.items()}, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(
        {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_embd": D,
         "n_head": n_head, "n_layer": n_layer, "n_positions": n_positions, "vocab_size": V,
         "bos_token_id": 0, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5}))
    return path


def write_bert(path, D=16, n_head=2, n_layer=2, F=32, max_pos=32, seed=0, prefix="bert.") -> Path:
    from safetensors.numpy import save_file
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    V = _word_tokenizer(path, ["[PAD]", "[CLS]", "[SEP]", "[UNK]"], "[CLS] $A [SEP]")
    rng = np.random.default_rng(seed)

    def r(*shape, scale=0.3):
        return (rng.normal(size=shape) * scale).astype(np.float32)

    e = "embeddings."
    t = {e + "word_embeddings.weight": r(V, D, scale=1.0),
         e + "position_embeddings.weight": r(max_pos, D),
         e + "token_type_embeddings.weight": r(2, D),
         e + "LayerNorm.weight": 1 + r(D, scale=0.1), e + "LayerNorm.bias": r(D, scale=0.1)}
    for l in range(n_layer):
        p = f"encoder.layer.{l}."
        for part in ("query", "key", "value"):
            t[f"{p}attention.self.{part}.weight"] = r(D, D)
            t[f"{p}attention.self.{part}.bias"] = r(D)
        t.update({p + "attention.output.dense.weight": r(D, D),
                  p + "attention.output.dense.bias": r(D),
                  p + "attention.output.LayerNorm.weight": 1 + r(D, scale=0.1),
                  p + "attention.output.LayerNorm.bias": r(D, scale=0.1),
                  p + "intermediate.dense.weight": r(F, D), p + "intermediate.dense.bias": r(F),
                  p + "output.dense.weight": r(D, F), p + "output.dense.bias": r(D),
                  p + "output.LayerNorm.weight": 1 + r(D, scale=0.1),
                  p + "output.LayerNorm.bias": r(D, scale=0.1)})
    save_file({prefix + k: v for k, v in t.items()}, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(
        {"model_type": "bert", "architectures": ["BertModel"], "hidden_size": D,
         "num_attention_heads": n_head, "num_hidden_layers": n_layer, "intermediate_size": F,
         "vocab_size": V, "max_position_embeddings": max_pos, "type_vocab_size": 2,
         "hidden_act": "gelu", "layer_norm_eps": 1e-12, "pad_token_id": 0}))
    return path


# ---- independent NumPy forward passes on the raw tensors (one prompt, no padding) ----

def _ln(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * g + b


def _gelu_exact(x):
    from scipy.special import erf
    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def _mha(x, Wq, bq, Wk, bk, Wv, bv, n_head, causal):
    """x [T, D]; W* [D_out, D_in] Linear layout. Returns (context [T, D], probs [n, T, T])."""
    T, D = x.shape
    H = D // n_head
    q = (x @ Wq.T + bq).reshape(T, n_head, H).transpose(1, 0, 2)
    k = (x @ Wk.T + bk).reshape(T, n_head, H).transpose(1, 0, 2)
    v = (x @ Wv.T + bv).reshape(T, n_head, H).transpose(1, 0, 2)
    s = q @ k.transpose(0, 2, 1) / np.sqrt(H)
    if causal:
        s = np.where(np.tril(np.ones((T, T), bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return (p @ v).transpose(1, 0, 2).reshape(T, D), p


def bert_numpy(tensors, config, ids, prefix="bert."):
    t = {k[len(prefix):] if k.startswith(prefix) else k: v.astype(np.float64)
         for k, v in tensors.items()}
    eps, n = config["layer_norm_eps"], config["num_attention_heads"]
    T = len(ids)
    h = (t["embeddings.word_embeddings.weight"][ids] + t["embeddings.position_embeddings.weight"][:T]
         + t["embeddings.token_type_embeddings.weight"][0])
    x = _ln(h, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"], eps)
    xs, probs = [], []
    for l in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{l}."
        xs.append(x)
        a = p + "attention.self."
        ctx, pr = _mha(x, t[a + "query.weight"], t[a + "query.bias"], t[a + "key.weight"],
                       t[a + "key.bias"], t[a + "value.weight"], t[a + "value.bias"], n, False)
        probs.append(pr)
        o = ctx @ t[p + "attention.output.dense.weight"].T + t[p + "attention.output.dense.bias"]
        x1 = _ln(x + o, t[p + "attention.output.LayerNorm.weight"],
                 t[p + "attention.output.LayerNorm.bias"], eps)
        m = _gelu_exact(x1 @ t[p + "intermediate.dense.weight"].T + t[p + "intermediate.dense.bias"])
        m = m @ t[p + "output.dense.weight"].T + t[p + "output.dense.bias"]
        x = _ln(x1 + m, t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"], eps)
    return np.stack(xs), np.stack(probs), x


def gpt2_numpy(tensors, config, ids, prefix=""):
    t = {k[len(prefix):] if k.startswith(prefix) else k: v.astype(np.float64)
         for k, v in tensors.items()}
    eps, n, D = config["layer_norm_epsilon"], config["n_head"], config["n_embd"]
    T = len(ids)
    r = t["wte.weight"][ids] + t["wpe.weight"][:T]
    xs, probs = [], []
    for l in range(config["n_layer"]):
        p = f"h.{l}."
        x = _ln(r, t[p + "ln_1.weight"], t[p + "ln_1.bias"], eps)
        xs.append(x)
        qkv = x @ t[p + "attn.c_attn.weight"] + t[p + "attn.c_attn.bias"]  # Conv1D: x @ W
        q, k, v = np.split(qkv, 3, axis=-1)
        H = D // n
        q, k, v = (z.reshape(T, n, H).transpose(1, 0, 2) for z in (q, k, v))
        s = np.where(np.tril(np.ones((T, T), bool)), q @ k.transpose(0, 2, 1) / np.sqrt(H),
                     -np.inf)
        pr = np.exp(s - s.max(-1, keepdims=True))
        pr /= pr.sum(-1, keepdims=True)
        probs.append(pr)
        ctx = (pr @ v).transpose(1, 0, 2).reshape(T, D)
        r = r + ctx @ t[p + "attn.c_proj.weight"] + t[p + "attn.c_proj.bias"]
        y = _ln(r, t[p + "ln_2.weight"], t[p + "ln_2.bias"], eps)
        r = r + _gelu_tanh(y @ t[p + "mlp.c_fc.weight"] + t[p + "mlp.c_fc.bias"]) \
            @ t[p + "mlp.c_proj.weight"] + t[p + "mlp.c_proj.bias"]
    return np.stack(xs), np.stack(probs), _ln(r, t["ln_f.weight"], t["ln_f.bias"], eps)
