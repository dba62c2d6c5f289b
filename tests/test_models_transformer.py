"""The toy transformer model (models/transformer.py): exported heads reproduce the model's
attention, the causal mask, and RoPE scores that depend only on the offset."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from helpers import TRANSFORMER, build, randomize
from toymodels.models.transformer import export_heads, rope_angles, rope_offset_queries, rotate
from toymodels.tasks.retrieval import sample


@pytest.mark.parametrize("layernorm,bias,positions", [(False, False, "none"),
                                                      (True, True, "learned"),
                                                      (True, True, "rope")])
def test_logits_from_exported_heads_equal_the_models_own(layernorm, bias, positions):
    cfg = TRANSFORMER.replace(n_layers=2, mlp=True, layernorm=layernorm, bias=bias,
                       positions=positions, task="rope" if positions == "rope" else "retrieval")
    model = randomize(build(cfg))
    f = sample(jax.random.key(3), cfg, 0.3)["f"]
    _, cache = model(f)
    heads = export_heads(nnx.to_pure_dict(nnx.state(model)))
    T, H = cfg.T, cfg.H
    for layer in range(cfg.n_layers):
        x = np.asarray(cache["inputs"][layer], np.float64)  # [B, T, D], as the layer sees it
        for h in range(cfg.n_heads):
            W_Q = np.asarray(heads["W_Q"][layer, h], np.float64)
            W_K = np.asarray(heads["W_K"][layer, h], np.float64)
            q, k = x @ W_Q.T, x @ W_K.T
            if bias:
                q, k = q + np.asarray(heads["b_Q"][layer, h]), k + np.asarray(heads["b_K"][layer, h])
            if positions == "rope":
                # Per-offset Ω_δ from the exported W_Q^(δ) = R_δ W_Q (and R_t on absolute
                # positions only through the offset t − s).
                logits = np.zeros((x.shape[0], T, T))
                for t in range(T):
                    for s in range(t + 1):
                        Wq_d = np.asarray(rope_offset_queries(jnp.asarray(W_Q), [t - s],
                                                              cfg.rope_base))[0]
                        qd = x[:, t] @ Wq_d.T + (0 if not bias else _rot(heads["b_Q"][layer, h],
                                                                         t - s, cfg))
                        logits[:, t, s] = np.sum(qd * k[:, s], -1) / math.sqrt(H)
            else:
                logits = np.einsum("bth,bsh->bts", q, k) / math.sqrt(H)
            attn = np.asarray(cache["attn"][layer][:, h], np.float64)
            mine = np.where(np.tril(np.ones((T, T), bool)), logits, -np.inf)
            mine = np.exp(mine - mine.max(-1, keepdims=True))
            np.testing.assert_allclose(mine / mine.sum(-1, keepdims=True), attn, atol=2e-5)


def _rot(b_Q, delta, cfg):
    return np.asarray(rope_offset_queries(jnp.asarray(b_Q)[:, None], [delta], cfg.rope_base))[0, :, 0]


def test_causal_mask_no_token_reads_a_later_one():
    cfg = TRANSFORMER.replace(n_layers=2, layernorm=True)
    model = randomize(build(cfg))
    f = sample(jax.random.key(0), cfg, 0.3)["f"]
    out, cache = model(f)
    for attn in cache["attn"]:
        assert np.all(np.triu(np.asarray(attn), k=1) == 0)
    # Changing the last token changes no earlier position's output.
    g = f.at[:, -1].add(1.0)
    out2, _ = model(g)
    np.testing.assert_allclose(out[:, :-1], out2[:, :-1], atol=1e-6)
    assert np.abs(out[:, -1] - out2[:, -1]).max() > 1e-3


def test_rope_scores_depend_only_on_the_offset(getkey):
    H, T = 8, 10
    q = jax.random.normal(getkey(), (H,))
    k = jax.random.normal(getkey(), (H,))
    angles = rope_angles(T, H, base=10.0)
    Rq = rotate(jnp.broadcast_to(q, (T, H)), angles)
    Rk = rotate(jnp.broadcast_to(k, (T, H)), angles)
    scores = np.asarray(Rq @ Rk.T)  # [t, s]
    for delta in range(-T + 1, T):
        diag = np.diagonal(scores, offset=-delta)
        np.testing.assert_allclose(diag, diag[0], rtol=1e-5, atol=1e-5)
    assert np.ptp([scores[5, 5 - d] for d in range(5)]) > 1e-2  # and do depend on it
