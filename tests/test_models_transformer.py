"""Toy transformers: exported heads reproduce the model's attention, masks, RoPE, each task's
hand-built solution, determinism, bad input, and a tiny run end to end."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from toymodels import load_run
from toymodels.cli import main
from toymodels.configs import TRANSFORMER_PRESETS, TransformerConfig, make_instances
from toymodels.errors import ConfigError
from toymodels.families import transformer as family
from toymodels.models.transformer import (Transformer, export_heads, rope_angles, rotate,
                                          rope_offset_queries)
from toymodels.tasks.retrieval import sample, task_loss
from toymodels.training.loop import train

TINY = TRANSFORMER_PRESETS["transformer-retrieval"].replace(
    batch_size=32, steps=40, chunk_steps=20, record_points=3)


def build(cfg, seed=0):
    return family.build(cfg, nnx.Rngs(seed))


def randomize(model, seed=1, scale=0.5):
    """Give every parameter (biases too) random values, so no test passes by zeros."""
    graphdef, state = nnx.split(model)
    pure = nnx.to_pure_dict(state)
    keys = jax.random.split(jax.random.key(seed), len(pure))
    pure = {k: scale * jax.random.normal(key, v.shape) for key, (k, v) in zip(keys, pure.items())}
    nnx.replace_by_pure_dict(state, pure)
    return nnx.merge(graphdef, state)


@pytest.mark.parametrize("layernorm,bias,positions", [(False, False, "none"),
                                                      (True, True, "learned"),
                                                      (True, True, "rope")])
def test_logits_from_exported_heads_equal_the_models_own(layernorm, bias, positions):
    cfg = TINY.replace(n_layers=2, mlp=True, layernorm=layernorm, bias=bias,
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
    cfg = TINY.replace(n_layers=2, layernorm=True)
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


def hand_built(cfg, logit_gain=60.0):
    """A one-layer solution of cfg's task, written down from its ground truth."""
    model = build(cfg.replace(n_heads=1, n_layers=1))
    E = family.fixed_frame(cfg, 0)
    H = cfg.H
    W_Q = np.zeros((1, 1, H, cfg.D))
    W_K = np.zeros((1, 1, H, cfg.D))
    W_V = np.zeros((1, 1, H, cfg.D))
    W_O = np.zeros((1, 1, cfg.D, H))
    if cfg.task != "control":
        scale = math.sqrt(logit_gain * math.sqrt(H))
        for p, (i, j, _) in enumerate(cfg.pairs):
            W_Q[0, 0, p] = scale * E[:, i]
            W_K[0, 0, p] = scale * E[:, j]
        if cfg.task == "rope":  # store W_K so that Ω_δ at the task's offset is the pairing
            W_K[0, 0] = np.asarray(rope_offset_queries(jnp.asarray(W_K[0, 0]), [cfg.offset],
                                                       cfg.rope_base))[0]
    for c, (v, g) in enumerate(zip(cfg.value_features, cfg.value_gains)):
        W_V[0, 0, c] = E[:, v]
        W_O[0, 0, :, c] = g * E[:, v]
    for name, value in (("E", E), ("W_Q", W_Q), ("W_K", W_K), ("W_V", W_V), ("W_O", W_O)):
        getattr(model, name)[...] = jnp.asarray(value, jnp.float32)
    return model


@pytest.mark.parametrize("task", ["retrieval", "multi", "control"])
def test_hand_built_solution_reaches_near_zero_loss(task):
    base = TRANSFORMER_PRESETS["transformer-retrieval"]
    cfg = {"retrieval": base.replace(p_query=1.0),
           "multi": TRANSFORMER_PRESETS["transformer-multi-pair"].replace(p_query=1.0),
           "control": TRANSFORMER_PRESETS["transformer-control"]}[task].replace(batch_size=512)
    model = hand_built(cfg)
    batch = sample(jax.random.key(0), cfg, cfg.p_active)
    out, _ = model(batch["f"])
    loss = float(task_loss(model.readout(out[:, -1], cfg.value_features), batch["target"]))
    # Against what the target itself weighs (the loss of answering 0).
    assert loss < 1e-4 * float(jnp.mean(jnp.sum(batch["target"] ** 2, -1)))


def test_hand_built_rope_solution_needs_the_offset():
    cfg = TRANSFORMER_PRESETS["transformer-rope"].replace(p_query=1.0, batch_size=512)
    # RoPE angles repeat slowly: the gain must beat the closest offset's score.
    model = hand_built(cfg, logit_gain=400.0)
    batch = sample(jax.random.key(0), cfg, cfg.p_active)
    out, cache = model(batch["f"])
    loss = float(task_loss(model.readout(out[:, -1], cfg.value_features), batch["target"]))
    assert loss < 1e-3 * float(jnp.mean(jnp.sum(batch["target"] ** 2, -1)))
    # Decoys carry the same key feature, so only the offset singles out the right token.
    decoys = (batch["f"][:, :-1, cfg.keys[0]] > 0).sum(1)
    assert float(decoys.mean()) > 2


def test_tasks_export_their_ground_truth():
    cfg = TRANSFORMER_PRESETS["transformer-multi-pair"]
    assert cfg.qk_template == tuple((i, i + 6, w) for i, _, w in
                                    zip(range(6), range(6), (1.0, 0.85, 0.7, 0.55, 0.4, 0.25)))
    assert cfg.ov_template == tuple((v, v, g) for v, g in zip(cfg.value_features,
                                                              cfg.value_gains))
    batch = sample(jax.random.key(1), cfg, 0.3)
    f, pos = np.asarray(batch["f"]), np.asarray(batch["key_pos"])
    asked = np.asarray(batch["asked"])
    rows = np.arange(len(pos))
    # The token the query should read carries the key feature of the query's pair.
    assert np.all(f[rows, pos, np.asarray(cfg.keys)[np.asarray(batch["pair"])]] == 1.0)
    assert np.all(f[asked, -1][:, list(cfg.queries)].sum(1) == 1.0)
    assert np.all(f[:, -1][:, list(cfg.value_features)] == 0)  # no values on the query


def test_determinism_by_seed_across_instance_counts():
    cfg = TINY.replace(record_points=0)
    alone = train(cfg, make_instances(cfg, [3]), progress=False)
    crowd = train(cfg, make_instances(cfg, [0, 3, 5]), progress=False)
    for name, value in alone.params.items():
        np.testing.assert_allclose(value[0], crowd.params[name][1], rtol=1e-5, atol=1e-6,
                                   err_msg=name)
    again = train(cfg, make_instances(cfg, [3]), progress=False)
    for name, value in alone.params.items():
        np.testing.assert_array_equal(value, again.params[name])


def test_fixed_embedding_stays_and_is_the_seeds_frame():
    result = train(TINY, make_instances(TINY, [0, 1]), progress=False)
    for n in range(2):
        np.testing.assert_array_equal(result.params["E"][n], family.fixed_frame(TINY, n))
    assert result.dynamics["accuracy"].shape == (2, 3, 1, 2)


@pytest.mark.parametrize("changes,words", [
    ({"n_layers": 0}, "n_layers"), ({"n_heads": 0}, "n_heads"),
    ({"positions": "rope", "H": 7}, "H must be even"),
    ({"pairs": ((0, 99, 1.0),)}, "outside the features"),
    ({"pairs": ((2, 1, 1.0),)}, "both a query and a value"),
    ({"value_features": (1, 3, 4, 5)}, "both a key and a value"),
    ({"task": "rope", "positions": "rope", "offset": 9}, "too short"),
    ({"lam": 1.0}, "unknown config field"),
    ({"learning_rate": float("nan")}, "finite"),
    ({"positions": "rope"}, "RoPE goes with task 'rope'"),
    ({"value_gains": [1.0, 0.8, 0.6, 0.4]}, "tuple"),
    ({"value_gains": (1.0, 0.0, 0.6, 0.4)}, "> 0"),
    ({"p_query": 0.0}, "never asks"),
    ({"embedding": "learned", "anisotropy": 1.0}, "ignores it"),
])
def test_bad_config_is_refused(changes, words):
    with pytest.raises(ConfigError, match=words):
        TINY.replace(**changes)


@pytest.mark.parametrize("args,words", [
    (["--set", "n_layers=0"], "n_layers"),
    (["--set", "positions=rope", "--set", "H=7"], "even"),
    (["--set", "pairs=0:99:1.0"], "outside"),
    (["--set", "pairs=0:2:1.0"], "both a key and a value"),
    (["--set", "T=1"], "too short"),
])
def test_cli_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, args, words):
    out = tmp_path / "run"
    assert main(["run", "transformer-retrieval", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
    assert not out.exists() and not list(tmp_path.iterdir())


def test_run_end_to_end_and_load_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "transformer-retrieval", "--seeds", "0-1", "--out", str(out),
                 "--steps", "40", "--set", "batch_size=32", "--set", "chunk_steps=20",
                 "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["family"] == "transformer"
    for inst in summary["instances"]:
        assert len(inst["heads"]) == 2 and set(inst["final_loss"]) == set(family.CURVES)
        assert {"qk_matched", "ov_matched", "accuracy", "qk_baseline_low"} <= set(inst["heads"][0])
        best = max(inst["heads"], key=lambda h: h["accuracy"])
        assert inst["best_head"] == {"layer": best["layer"], "head": best["head"]}
        assert inst["solving_head"] in (None, inst["best_head"])
    run = load_run(out)
    assert isinstance(run.config, TransformerConfig) and run.config.steps == 40
    assert run.params["W_Q"].shape == (2, 1, 2, 8, 16)
    assert run.analysis["accuracy"].shape == (2, 1, 2)
    assert (out / "alignment.png").stat().st_size > 0
    heads = (out / "analysis" / "heads.csv").read_text().splitlines()
    assert len(heads) == 1 + 2 * 2 * 2  # instance × head × circuit


def test_sad_of_a_hand_built_head_puts_each_planted_firing_on_its_pair():
    """Known answer for the decomposition on a toy transformer: Ω = g E_0 E_1ᵀ, so every
    planted firing (query -> the token with key feature 1) is carried by singular index 0
    alone; the rotated control needs more terms."""
    from flax import nnx as _nnx

    from toymodels.analysis import sad
    from toymodels.families.transformer import attention_inputs, task_sequences

    cfg = TRANSFORMER_PRESETS["transformer-retrieval"].replace(n_heads=1)
    model = hand_built(cfg, logit_gain=8.0)
    params = {k: np.asarray(v) for k, v in _nnx.to_pure_dict(_nnx.state(model)).items()}
    batch = task_sequences(cfg, 64, seed=0)
    result = sad.decompose(**attention_inputs(cfg, params, batch["f"]))
    where = (0, np.arange(64), 0, cfg.T - 1, np.asarray(batch["key_pos"]))
    top, n_recon = result.lookup("top_k", *where), result.lookup("n_recon", *where)
    assert np.all(n_recon >= 0)  # every planted pair fires
    assert np.all(top == 0) and np.all(n_recon == 1)
    assert np.mean(result.lookup("n_recon_rot", *where)) > 1.5


def test_sad_cli_on_a_transformer_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "transformer-retrieval", "--seeds", "0", "--out", str(out),
                 "--steps", "20", "--set", "batch_size=16", "--set", "chunk_steps=10",
                 "--no-progress"]) == 0
    sad_out = tmp_path / "sad"
    assert main(["sad", str(out), "--prompts", "task:8", "--out", str(sad_out),
                 "--no-progress"]) == 0
    record = json.loads((sad_out / "sad.json").read_text())
    assert record["architecture"] == "toymodels-transformer" and record["prompts"]["count"] == 8
    assert (sad_out / "firings.parquet").stat().st_size > 0


def test_control_sees_the_same_tokens_as_retrieval_but_is_asked_for_the_average():
    retrieval = TRANSFORMER_PRESETS["transformer-retrieval"].replace(batch_size=256)
    control = retrieval.replace(task="control")
    a, b = sample(jax.random.key(5), retrieval, 0.3), sample(jax.random.key(5), control, 0.3)
    np.testing.assert_array_equal(a["f"], b["f"])  # the query feature included
    assert float(np.asarray(a["f"])[:, -1, 0].mean()) > 0.3
    assert not np.asarray(b["asked"]).any() and np.asarray(a["asked"]).any()
    values = np.asarray(b["f"])[..., list(control.value_features)]
    np.testing.assert_allclose(b["target"], values.sum(1) / control.T
                               * np.asarray(control.value_gains)[None, :], rtol=1e-6)


def test_hand_built_rope_solution_at_another_offset_fails():
    cfg = TRANSFORMER_PRESETS["transformer-rope"].replace(p_query=1.0, batch_size=512)
    target = sample(jax.random.key(0), cfg, cfg.p_active)
    wrong = hand_built(cfg.replace(offset=cfg.offset + 1), logit_gain=400.0)
    out, _ = wrong(target["f"])
    loss = float(task_loss(wrong.readout(out[:, -1], cfg.value_features), target["target"]))
    assert loss > 0.3 * float(jnp.mean(jnp.sum(target["target"] ** 2, -1)))


@pytest.mark.parametrize("preset", ["transformer-retrieval", "transformer-rope"])
def test_analysis_of_a_hand_built_head_finds_the_planted_pairs(preset):
    """Known answer through the transformer's analysis path: the hand-built head's QK pairs
    E_0 with E_1 (at the task's offset for RoPE) and its OV carries each value feature."""
    from toymodels.families.transformer import head_records

    cfg = TRANSFORMER_PRESETS[preset].replace(n_heads=1)
    model = hand_built(cfg, logit_gain=8.0)
    params = {k: np.asarray(v)[None] for k, v in nnx.to_pure_dict(nnx.state(model)).items()}
    analysis = family.analyze(cfg, params)
    (head,) = head_records(cfg, params, analysis, np.ones((1, 1, 1)))[0]
    assert head["qk_matched"] > 0.999 and head["ov_matched"] > 0.999
    if cfg.task == "rope":
        logit = family.rope_offsets(cfg, params)["planted_logit"][0, 0, 0]
        assert int(np.argmax(logit)) == cfg.offset
