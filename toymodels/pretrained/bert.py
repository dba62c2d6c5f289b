"""BERT family (post-LayerNorm encoder, e.g. all-MiniLM-L6-v2) from Hugging Face safetensors.

The attention input of layer l is the previous layer's output (the embeddings' LayerNorm
output for l = 0), so x_normalized, ln_gain, ln_bias are that LayerNorm's. Every token sees
every real token (no causal mask); padding is masked. Tensor names are Hugging Face's
(`encoder.layer.{l}.attention.self.query.weight` [n·H, D], ...), with or without `bert.`.

Canonical params: word_emb [V, D], pos_emb [Tmax, D], type_emb [2, D], emb_ln_g/b [D];
per layer stacked [L, ...]: b_O [D], ln1_g/b [D] (after attention), W_in [F, D], b_in [F],
W_out [D, F], b_out [D], ln2_g/b [D] (after the MLP).
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
    hint = f"{path} (bert)"
    D = config_int(config, "hidden_size", file_hint=hint)
    n = config_int(config, "num_attention_heads", file_hint=hint)
    L = config_int(config, "num_hidden_layers", file_hint=hint)
    F = config_int(config, "intermediate_size", file_hint=hint)
    V = config_int(config, "vocab_size", file_hint=hint)
    Tmax = config_int(config, "max_position_embeddings", file_hint=hint)
    n_types = config_int(config, "type_vocab_size", file_hint=hint, default=2)
    if D % n:
        raise PretrainedError(f"{hint}: hidden_size {D} is not a multiple of "
                              f"num_attention_heads {n}")
    if config.get("hidden_act", "gelu") not in ACTIVATIONS:
        raise PretrainedError(f"{hint}: hidden_act {config.get('hidden_act')!r} is not "
                              f"supported ({', '.join(ACTIVATIONS)})")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise PretrainedError(f"{hint}: only absolute position embeddings are supported")
    H = D // n
    t = read_safetensors(path, strip_prefixes=("bert.",))

    def ln(prefix):
        g = t.get(f"{prefix}.weight", t.get(f"{prefix}.gamma"))
        b = t.get(f"{prefix}.bias", t.get(f"{prefix}.beta"))
        if g is None or b is None:
            raise PretrainedError(f"{hint}: tensor {prefix!r}.weight/.bias is missing")
        return take({"g": g}, "g", (D,), hint), take({"b": b}, "b", (D,), hint)

    params = {"word_emb": take(t, "embeddings.word_embeddings.weight", (V, D), hint),
              "pos_emb": take(t, "embeddings.position_embeddings.weight", (Tmax, D), hint),
              "type_emb": take(t, "embeddings.token_type_embeddings.weight", (n_types, D), hint)}
    params["emb_ln_g"], params["emb_ln_b"] = ln("embeddings.LayerNorm")
    per_layer = {k: [] for k in ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O",
                                 "ln1_g", "ln1_b", "W_in", "b_in", "W_out", "b_out",
                                 "ln2_g", "ln2_b")}
    for l in range(L):
        p = f"encoder.layer.{l}."
        for key, part in (("Q", "query"), ("K", "key"), ("V", "value")):
            W = take(t, f"{p}attention.self.{part}.weight", (D, D), hint)  # [n·H, D]
            per_layer[f"W_{key}"].append(W.reshape(n, H, D))
            per_layer[f"b_{key}"].append(take(t, f"{p}attention.self.{part}.bias", (D,),
                                              hint).reshape(n, H))
        W_O = take(t, f"{p}attention.output.dense.weight", (D, D), hint)  # [D, n·H]
        per_layer["W_O"].append(W_O.reshape(D, n, H).transpose(1, 0, 2))
        per_layer["b_O"].append(take(t, f"{p}attention.output.dense.bias", (D,), hint))
        g, b = ln(f"{p}attention.output.LayerNorm")
        per_layer["ln1_g"].append(g), per_layer["ln1_b"].append(b)
        per_layer["W_in"].append(take(t, f"{p}intermediate.dense.weight", (F, D), hint))
        per_layer["b_in"].append(take(t, f"{p}intermediate.dense.bias", (F,), hint))
        per_layer["W_out"].append(take(t, f"{p}output.dense.weight", (D, F), hint))
        per_layer["b_out"].append(take(t, f"{p}output.dense.bias", (D,), hint))
        g, b = ln(f"{p}output.LayerNorm")
        per_layer["ln2_g"].append(g), per_layer["ln2_b"].append(b)
    heads, stacked = stack_layers(per_layer)
    params.update(stacked)
    return PretrainedModel(name=name, path=path, architecture="bert", config=config, heads=heads,
                      params=params, tokenizer=load_tokenizer(path, "bert"),
                      max_positions=Tmax, causal=False,
                      x_meaning="layer 0: LayerNorm(embeddings); layer l > 0: output of "
                                "layer l-1 (after its output LayerNorm), as the layer sees it",
                      forward_fn=forward)


def forward(ckpt: PretrainedModel, encoded: Encoded) -> AttentionInputs:
    mask = attention_mask(encoded.valid, causal=False)
    act = ckpt.config.get("hidden_act", "gelu")
    eps = float(ckpt.config.get("layer_norm_eps", 1e-12))
    out = _forward_jit(ckpt.params, ckpt.heads.__dict__, jnp.asarray(encoded.ids),
                       jnp.asarray(mask), act=act, eps=eps)
    out = jax.tree.map(np.asarray, out)
    return AttentionInputs(mask=mask, **out)


@partial(jax.jit, static_argnames=("act", "eps"))
def _forward_jit(params, heads, ids, mask, *, act, eps):
    with jax.default_matmul_precision("highest"):
        T = ids.shape[1]
        h = params["word_emb"][ids] + (params["pos_emb"][:T] + params["type_emb"][0][None])[None]
        x, x_n = layer_norm(h, params["emb_ln_g"], params["emb_ln_b"], eps)
        xs, ns, gains, biases, probs = [], [], [], [], []
        gain, bias = params["emb_ln_g"], params["emb_ln_b"]
        f = activation(act)
        for l in range(heads["W_Q"].shape[0]):
            xs.append(x), ns.append(x_n), gains.append(gain), biases.append(bias)
            a, p = attention(x, mask, *(heads[k][l] for k in ("W_Q", "W_K", "W_V", "W_O",
                                                               "b_Q", "b_K", "b_V")),
                             params["b_O"][l])
            probs.append(p)
            x1, _ = layer_norm(x + a, params["ln1_g"][l], params["ln1_b"][l], eps)
            m = dense(f(dense(x1, params["W_in"][l], params["b_in"][l])), params["W_out"][l],
                      params["b_out"][l])
            gain, bias = params["ln2_g"][l], params["ln2_b"][l]
            x, x_n = layer_norm(x1 + m, gain, bias, eps)
        return {"x": jnp.stack(xs), "x_normalized": jnp.stack(ns), "ln_gain": jnp.stack(gains),
                "ln_bias": jnp.stack(biases), "probs": jnp.stack(probs), "hidden": x}
