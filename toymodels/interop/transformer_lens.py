"""TransformerLens state dicts without PyTorch: read, and written from a toy transformer.

Shapes (TransformerLens' names; L layers, n heads, D = d_model, H = d_head, N = d_vocab,
T = n_ctx, F = d_mlp):
  blocks.{l}.attn.W_Q, W_K, W_V [n, D, H]   W_O [n, H, D]   b_Q, b_K, b_V [n, H]   b_O [D]
  (grouped-query attention: _W_K, _W_V [n_kv, D, H], _b_K, _b_V [n_kv, H], each kv head
  shared by n / n_kv consecutive query heads, as TransformerLens' repeat_interleave)
  blocks.{l}.ln1.w, ln1.b, ln2.w, ln2.b [D]   blocks.{l}.mlp.W_in [D, F]  b_in [F]
  blocks.{l}.mlp.W_out [F, D]  b_out [D]      embed.W_E [N, D]   pos_embed.W_pos [T, D]
  ln_final.w, ln_final.b [D]   unembed.W_U [D, N]   unembed.b_U [N]

TransformerLens multiplies from the right (q = x W_Q + b_Q, out = z W_O + b_O), toymodels
from the left (q = W_Q x): the same numbers, the last two axes swapped (layouts.py).
"""

import re
from pathlib import Path

import numpy as np

from toymodels.errors import AnalysisInputError, LayoutError
from toymodels.interop.layouts import HEAD_WEIGHTS, check_layout

ATTN_KEY = re.compile(r"^blocks\.(\d+)\.attn\.(_?[Wb]_[QKVO])$")
"""blocks.{l}.attn.W_Q etc.; a leading underscore marks grouped-query key/value weights."""
HEAD_BIASES = ("b_Q", "b_K", "b_V", "b_O")


def read_tensors(path, what: str = "weights") -> dict[str, np.ndarray]:
    """Every array of an .npz (never unpickled) or a .safetensors file (through
    safetensors.numpy, no PyTorch); bfloat16 and float16 become float32. AnalysisInputError
    naming the file where it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise AnalysisInputError(f"{what} {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.numpy import load_file
        try:
            tensors = load_file(path)
        except (SafetensorError, OSError, ValueError, TypeError) as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise AnalysisInputError(f"cannot read {path} as safetensors: {first}") from None
    elif path.suffix == ".npz":  # headers checked against the stored bytes first
        from toymodels.arrays import read_npz
        tensors = read_npz(path, AnalysisInputError)
    else:
        raise AnalysisInputError(f"{what} {path}: expected an .npz or .safetensors file")
    return {k: (np.asarray(a, np.float32) if a.dtype.name in ("bfloat16", "float16") else a)
            for k, a in tensors.items()}


def is_state_dict(tensors: dict) -> bool:
    """Whether the arrays are named as a TransformerLens state dict (blocks.{l}.attn.W_Q..)."""
    return any(ATTN_KEY.match(k) for k in tensors)


def stack_heads(tensors: dict, source: str = "state dict") -> dict[str, np.ndarray]:
    """A TransformerLens state dict's attention weights stacked over layers, in its own
    layout: W_Q, W_K, W_V [L, n, D, H], W_O [L, n, H, D], b_Q, b_K, b_V [L, n, H], b_O [L, D]
    (biases absent from the file are zeros, as TransformerLens initialises them)."""
    found: dict[int, dict[str, np.ndarray]] = {}
    for key, value in tensors.items():
        m = ATTN_KEY.match(key)
        if m:
            found.setdefault(int(m.group(1)), {})[m.group(2)] = np.asarray(value)
    L = len(found)
    if sorted(found) != list(range(L)):
        raise AnalysisInputError(f"{source}: attention weights for layers {sorted(found)}; "
                                 f"expected blocks.0 .. blocks.{L - 1}")
    layers = []
    for layer in range(L):
        own = found[layer]
        for name in ("W_K", "W_V", "b_K", "b_V"):  # grouped-query: shared key/value heads
            if "_" + name in own and name not in own:
                own[name] = _ungroup(own.pop("_" + name), own.get("W_Q"), layer, name, source)
        missing = [w for w in HEAD_WEIGHTS if w not in own]
        if missing:
            raise AnalysisInputError(f"{source}: blocks.{layer}.attn lacks "
                                     f"{', '.join(missing)}")
        if own["W_Q"].ndim != 3:
            raise AnalysisInputError(f"{source}: blocks.{layer}.attn.W_Q has shape "
                                     f"{own['W_Q'].shape}; TransformerLens' is "
                                     "[n_heads, d_model, d_head]")
        n, D, H = own["W_Q"].shape
        expected = {"W_Q": (n, D, H), "W_K": (n, D, H), "W_V": (n, D, H), "W_O": (n, H, D),
                    "b_Q": (n, H), "b_K": (n, H), "b_V": (n, H), "b_O": (D,)}
        for name, shape in expected.items():
            if name not in own:
                own[name] = np.zeros(shape, np.float32)
            if own[name].shape != shape:
                raise AnalysisInputError(
                    f"{source}: blocks.{layer}.attn.{name} has shape {own[name].shape}; "
                    f"TransformerLens' is {_shape_text(name)} = {shape} here")
        layers.append(own)
    if len({own["W_Q"].shape for own in layers}) > 1:
        raise AnalysisInputError(f"{source}: layers have heads of different shapes")
    return {name: np.stack([own[name] for own in layers])
            for name in HEAD_WEIGHTS + HEAD_BIASES}


def _ungroup(shared, W_Q, layer, name, source):
    n_kv = shared.shape[0]
    n = W_Q.shape[0] if W_Q is not None and W_Q.ndim == 3 else None
    if n is None or n_kv == 0 or n % n_kv:
        raise AnalysisInputError(f"{source}: blocks.{layer}.attn._{name} has {n_kv} key/value "
                                 f"heads, which do not divide the {n} query heads")
    return np.repeat(shared, n // n_kv, axis=0)


def _shape_text(name: str) -> str:
    return {"W_O": "[n_heads, d_head, d_model]", "b_O": "[d_model]"}.get(
        name, "[n_heads, d_model, d_head]" if name.startswith("W") else "[n_heads, d_head]")


def read_head_weights(path, layout=None) -> tuple[dict, dict]:
    """(head weights {W_Q, W_K, W_V, W_O: array} as stored, info) from an .npz or
    .safetensors file: either plain arrays named W_Q, W_K, W_V, W_O (any layout: analyze's
    `layout` says which), or a TransformerLens state dict (blocks.{l}.attn.W_Q ..., stacked
    to [L, n, ...] in TransformerLens' layout). info: 'kind', and for a state dict its
    non-zero 'biases' (the analysis decomposes W_QᵀW_K and W_O W_V; biases do not enter)."""
    layout = check_layout(layout)
    tensors = read_tensors(path)
    if is_state_dict(tensors):
        if layout == "toymodels":
            raise LayoutError(f"{path} is a TransformerLens state dict (blocks.{{l}}.attn.W_Q "
                              "[n_heads, d_model, d_head]); read it with --layout "
                              "transformer_lens, not toymodels")
        stacked = stack_heads(tensors, str(path))
        biases = [b for b in HEAD_BIASES if np.any(stacked[b] != 0)]
        return ({k: stacked[k] for k in HEAD_WEIGHTS},
                {"kind": "transformer_lens state dict", "biases": biases})
    weights = {k: tensors[k] for k in HEAD_WEIGHTS if k in tensors}
    if not weights:
        raise AnalysisInputError(f"{path} holds none of W_Q, W_K, W_V, W_O (nor a "
                                 "TransformerLens state dict: blocks.{l}.attn.W_Q ...)")
    return weights, {"kind": "arrays", "biases": []}


# ---- a toy transformer as a TransformerLens model ----------------------------------------


def hooked_config(cfg, model_name: str = "toymodels") -> dict:
    """HookedTransformerConfig fields that rebuild the toy transformer cfg
    (toymodels.configs.TransformerConfig) in TransformerLens: features are
    the vocabulary (d_vocab = N), positions 'none' are standard positional embeddings
    that are zero, RoPE is rotary over the whole head on adjacent pairs (GPT-J style:
    toymodels rotates planes (2m, 2m+1) by t·rope_base^(−2m/H)), the MLP's GELU is the
    tanh form (gelu_new, as jax.nn.gelu)."""
    config = {
        "model_name": model_name, "n_layers": cfg.n_layers, "d_model": cfg.D,
        "d_head": cfg.H, "n_heads": cfg.n_heads, "n_ctx": cfg.T,
        "d_vocab": cfg.N, "d_vocab_out": cfg.N,
        "attn_only": not cfg.mlp, "d_mlp": 4 * cfg.D if cfg.mlp else None,
        "act_fn": "gelu_new", "normalization_type": "LN" if cfg.layernorm else None,
        "eps": 1e-5, "attention_dir": "causal", "use_attn_scale": True,
        "positional_embedding_type": "rotary" if cfg.positions == "rope" else "standard",
        "default_prepend_bos": False, "tokenizer_name": None,
    }
    if cfg.positions == "rope":
        config |= {"rotary_dim": cfg.H, "rotary_base": cfg.rope_base,
                   "rotary_adjacent_pairs": True}
    return config


def state_dict_of(cfg, params: dict, n: int) -> dict[str, np.ndarray]:
    """Instance n of a toy transformer's parameters (params.npz: [I, ...]) as a
    TransformerLens state dict (float32, contiguous): the planted-feature embedding E is
    the token embedding (W_E = Eᵀ, so token i is feature i's residual direction) and, tied
    as in toymodels, the unembedding (W_U = E, b_U = 0)."""
    p = {k: np.asarray(v[n], np.float32) for k, v in params.items()}
    L, n_heads, H, D = p["W_Q"].shape
    zeros = np.zeros
    state = {"embed.W_E": p["E"].T, "unembed.W_U": p["E"], "unembed.b_U": zeros(cfg.N)}
    if cfg.positions != "rope":
        state["pos_embed.W_pos"] = p["pos"] if "pos" in p else zeros((cfg.T, D))
    for layer in range(L):
        pre = f"blocks.{layer}."
        for name in ("W_Q", "W_K", "W_V", "W_O"):
            state[pre + "attn." + name] = np.swapaxes(p[name][layer], -1, -2)
        for name in ("b_Q", "b_K", "b_V"):
            state[pre + "attn." + name] = p[name][layer] if name in p else zeros((n_heads, H))
        state[pre + "attn.b_O"] = p["b_O"][layer] if "b_O" in p else zeros(D)
        if cfg.layernorm:
            state[pre + "ln1.w"], state[pre + "ln1.b"] = p["ln1_g"][layer], p["ln1_b"][layer]
            if cfg.mlp:
                state[pre + "ln2.w"], state[pre + "ln2.b"] = p["ln2_g"][layer], p["ln2_b"][layer]
        if cfg.mlp:
            state[pre + "mlp.W_in"], state[pre + "mlp.b_in"] = p["W_in"][layer].T, p["b_in"][layer]
            state[pre + "mlp.W_out"] = p["W_out"][layer].T
            state[pre + "mlp.b_out"] = p["b_out"][layer]
    if cfg.layernorm:
        state["ln_final.w"], state["ln_final.b"] = p["lnf_g"], p["lnf_b"]
    return {k: np.ascontiguousarray(v, np.float32) for k, v in state.items()}
