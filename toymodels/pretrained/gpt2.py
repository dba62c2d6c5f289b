"""GPT-2 family (pre-LayerNorm causal decoder) from Hugging Face safetensors.

The attention input of layer l is LN_1(residual), so x_normalized, ln_gain, ln_bias are
ln_1's. Attention is causal (query d sees keys 0..d). Q, K, V come fused in one Conv1D,
`h.{l}.attn.c_attn.weight` [D, 3D] applied as x @ W (transposed against nn.Linear), and
`attn.c_proj.weight` [D, D] likewise; names with or without `transformer.`.

Canonical params: wte [V, D], wpe [Tmax, D]; per layer stacked [L, ...]: ln1_g/b [D],
b_O [D], ln2_g/b [D], W_in [F, D], b_in [F], W_out [D, F], b_out [D]; lnf_g/b [D].
"""

from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from toymodels.pretrained.common import (AttentionInputs, PretrainedModel, Encoded, stack_layers,
                                          attention_mask, config_int, load_tokenizer,
                                          read_safetensors, take)
from toymodels.pretrained.layers import (ACTIVATIONS, activation, attention, dense,
                                          layer_norm)
from toymodels.errors import PretrainedError


def load(path: Path, config: dict, name: str) -> PretrainedModel:
    hint = f"{path} (gpt2)"
    D = config_int(config, "n_embd", "hidden_size", file_hint=hint)
    n = config_int(config, "n_head", "num_attention_heads", file_hint=hint)
    L = config_int(config, "n_layer", "num_hidden_layers", file_hint=hint)
    V = config_int(config, "vocab_size", file_hint=hint)
    Tmax = config_int(config, "n_positions", "max_position_embeddings", file_hint=hint)
    F = config.get("n_inner") or 4 * D
    if D % n:
        raise PretrainedError(f"{hint}: n_embd {D} is not a multiple of n_head {n}")
    if config.get("activation_function", "gelu_new") not in ACTIVATIONS:
        raise PretrainedError(f"{hint}: activation_function "
                              f"{config.get('activation_function')!r} is not supported")
    if config.get("scale_attn_by_inverse_layer_idx") or config.get("scale_attn_weights") is False:
        raise PretrainedError(f"{hint}: only the standard 1/sqrt(H) attention scale is supported")
    H = D // n
    t = read_safetensors(path, strip_prefixes=("transformer.",))
    params = {"wte": take(t, "wte.weight", (V, D), hint),
              "wpe": take(t, "wpe.weight", (Tmax, D), hint),
              "lnf_g": take(t, "ln_f.weight", (D,), hint),
              "lnf_b": take(t, "ln_f.bias", (D,), hint)}
    per_layer = {k: [] for k in ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O",
                                 "ln1_g", "ln1_b", "ln2_g", "ln2_b", "W_in", "b_in",
                                 "W_out", "b_out")}
    for l in range(L):
        p = f"h.{l}."
        W_qkv = take(t, f"{p}attn.c_attn.weight", (D, 3 * D), hint).T  # [3D, D], Linear layout
        b_qkv = take(t, f"{p}attn.c_attn.bias", (3 * D,), hint)
        for i, key in enumerate("QKV"):
            per_layer[f"W_{key}"].append(W_qkv[i * D:(i + 1) * D].reshape(n, H, D))
            per_layer[f"b_{key}"].append(b_qkv[i * D:(i + 1) * D].reshape(n, H))
        W_O = take(t, f"{p}attn.c_proj.weight", (D, D), hint).T  # [D, n·H]
        per_layer["W_O"].append(W_O.reshape(D, n, H).transpose(1, 0, 2))
        per_layer["b_O"].append(take(t, f"{p}attn.c_proj.bias", (D,), hint))
        for ln in ("ln_1", "ln_2"):
            per_layer[f"ln{ln[-1]}_g"].append(take(t, f"{p}{ln}.weight", (D,), hint))
            per_layer[f"ln{ln[-1]}_b"].append(take(t, f"{p}{ln}.bias", (D,), hint))
        per_layer["W_in"].append(take(t, f"{p}mlp.c_fc.weight", (D, F), hint).T)
        per_layer["b_in"].append(take(t, f"{p}mlp.c_fc.bias", (F,), hint))
        per_layer["W_out"].append(take(t, f"{p}mlp.c_proj.weight", (F, D), hint).T)
        per_layer["b_out"].append(take(t, f"{p}mlp.c_proj.bias", (D,), hint))
    heads, stacked = stack_layers(per_layer)
    params.update(stacked)
    return PretrainedModel(name=name, path=path, architecture="gpt2", config=config, heads=heads,
                      params=params, tokenizer=load_tokenizer(path, "gpt2"),
                      max_positions=Tmax, causal=True,
                      x_meaning="ln_1(residual stream) of layer l, gain and bias applied, "
                                "as the layer sees it",
                      forward_fn=forward)


def forward(ckpt: PretrainedModel, encoded: Encoded) -> AttentionInputs:
    mask = attention_mask(encoded.valid, causal=True)
    act = ckpt.config.get("activation_function", "gelu_new")
    eps = float(ckpt.config.get("layer_norm_epsilon", 1e-5))
    out = _forward_jit(ckpt.params, ckpt.heads.__dict__, jnp.asarray(encoded.ids),
                       jnp.asarray(mask), act=act, eps=eps)
    return AttentionInputs(mask=mask, **jax.tree.map(np.asarray, out))


@partial(jax.jit, static_argnames=("act", "eps"))
def _forward_jit(params, heads, ids, mask, *, act, eps):
    with jax.default_matmul_precision("highest"):
        T = ids.shape[1]
        r = params["wte"][ids] + params["wpe"][:T][None]
        f = activation(act)
        xs, ns, probs = [], [], []
        for l in range(heads["W_Q"].shape[0]):
            x, x_n = layer_norm(r, params["ln1_g"][l], params["ln1_b"][l], eps)
            xs.append(x), ns.append(x_n)
            a, p = attention(x, mask, *(heads[k][l] for k in ("W_Q", "W_K", "W_V", "W_O",
                                                               "b_Q", "b_K", "b_V")),
                             params["b_O"][l])
            probs.append(p)
            r = r + a
            y, _ = layer_norm(r, params["ln2_g"][l], params["ln2_b"][l], eps)
            r = r + dense(f(dense(y, params["W_in"][l], params["b_in"][l])),
                          params["W_out"][l], params["b_out"][l])
        hidden, _ = layer_norm(r, params["lnf_g"], params["lnf_b"], eps)
        return {"x": jnp.stack(xs), "x_normalized": jnp.stack(ns),
                "ln_gain": params["ln1_g"], "ln_bias": params["ln1_b"],
                "probs": jnp.stack(probs), "hidden": hidden}
