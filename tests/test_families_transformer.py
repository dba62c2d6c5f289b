"""The transformer family (families/transformer/): its training (determinism by seed, the
fixed embedding), the run it writes, the analysis and SAD inputs of hand-built heads, and
the gaps issue 19 found in its analysis' tests (item 8): the dictionary a layer's heads
see (seen_features), the random-rotation baseline range (baseline_range), the sign of the
RoPE planted logit, and that a short trained toy transformer aligns."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from helpers import TRANSFORMER, build, hand_built
from toymodels import load_run
from toymodels.configs import TRANSFORMER_PRESETS, TransformerConfig, make_instances
from toymodels.families import transformer as family
from toymodels.models.layers import layer_norm
from toymodels.training.loop import train

RETRIEVAL = TRANSFORMER_PRESETS["transformer-retrieval"]


def test_determinism_by_seed_across_instance_counts():
    cfg = TRANSFORMER.replace(record_points=0)
    alone = train(cfg, make_instances(cfg, [3]), progress=False)
    crowd = train(cfg, make_instances(cfg, [0, 3, 5]), progress=False)
    for name, value in alone.params.items():
        np.testing.assert_allclose(value[0], crowd.params[name][1], rtol=1e-5, atol=1e-6,
                                   err_msg=name)
    again = train(cfg, make_instances(cfg, [3]), progress=False)
    for name, value in alone.params.items():
        np.testing.assert_array_equal(value, again.params[name])


def test_fixed_embedding_stays_and_is_the_seeds_frame():
    result = train(TRANSFORMER, make_instances(TRANSFORMER, [0, 1]), progress=False)
    for n in range(2):
        np.testing.assert_array_equal(result.params["E"][n], family.fixed_frame(TRANSFORMER, n))
    assert result.dynamics["accuracy"].shape == (2, 3, 1, 2)


def test_run_end_to_end_and_load_run(transformer_pair_run):
    out = transformer_pair_run  # `run transformer-retrieval --seeds 0-1 --steps 40 ...`
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
    from toymodels.analysis import sad
    from toymodels.families.transformer import attention_inputs, task_sequences

    cfg = TRANSFORMER_PRESETS["transformer-retrieval"].replace(n_heads=1)
    model = hand_built(cfg, logit_gain=8.0)
    params = {k: np.asarray(v) for k, v in nnx.to_pure_dict(nnx.state(model)).items()}
    batch = task_sequences(cfg, 64, seed=0)
    result = sad.decompose(**attention_inputs(cfg, params, batch["f"]))
    where = (0, np.arange(64), 0, cfg.T - 1, np.asarray(batch["key_pos"]))
    top, n_recon = result.lookup("top_k", *where), result.lookup("n_recon", *where)
    assert np.all(n_recon >= 0)  # every planted pair fires
    assert np.all(top == 0) and np.all(n_recon == 1)
    assert np.mean(result.lookup("n_recon_rot", *where)) > 1.5


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


# ---- gaps issue 19 found (item 8) --------------------------------------------------


def test_seen_features_without_layernorm_are_the_embedding_in_every_layer():
    cfg = RETRIEVAL.replace(n_layers=3)
    E = np.random.default_rng(0).standard_normal((2, cfg.D, cfg.N)).astype(np.float32)
    seen = np.asarray(family.seen_features(cfg, E))
    assert seen.shape == (2, 3, cfg.D, cfg.N)
    for layer in range(3):
        np.testing.assert_array_equal(seen[:, layer], E)


def test_seen_features_with_layernorm_are_the_directions_a_head_reads():
    """A token holding feature i reaches layer l's heads as LN_l(E_i) = g_l ⊙ (E_i −
    mean(E_i)) / std(E_i) + b_l: after the bias, parallel to seen_features' column i."""
    cfg = RETRIEVAL.replace(n_layers=2, layernorm=True)
    rng = np.random.default_rng(1)
    E = rng.standard_normal((cfg.D, cfg.N)).astype(np.float32)
    g = (1 + 0.5 * rng.standard_normal((2, cfg.D))).astype(np.float32)
    b = rng.standard_normal((2, cfg.D)).astype(np.float32)
    seen = np.asarray(family.seen_features(cfg, E, g), np.float64)  # [L, D, N]
    for layer in range(2):
        read = np.asarray(layer_norm(jnp.asarray(E.T), jnp.asarray(g[layer]),
                                     jnp.asarray(b[layer])), np.float64) - b[layer]  # [N, D]
        cos = np.sum(read.T * seen[layer], 0) / (np.linalg.norm(read, axis=1) *
                                                 np.linalg.norm(seen[layer], axis=0))
        np.testing.assert_allclose(cos, 1, atol=1e-5)
    # the raw embedding is not that direction once LN centres and scales it
    raw = np.sum(E * seen[0], 0) / (np.linalg.norm(E, axis=0) * np.linalg.norm(seen[0], axis=0))
    assert raw.min() < 0.99


def _orthonormal_pairs(D, N, P, seed=0):
    rng = np.random.default_rng(seed)
    E = rng.standard_normal((D, N))
    Q, _ = np.linalg.qr(rng.standard_normal((D, 2 * P)))
    E[:, :2 * P] = Q
    return E, tuple((p, P + p, 1.0) for p in range(P))


def test_baseline_range_puts_an_aligned_head_above_its_rotations():
    """Rank 4, four planted pairs: the head's own matched alignment is 1; rotations of
    its singular bases inside their span fall well below (the range the verdict uses)."""
    D, N, P = 16, 24, 4
    E, template = _orthonormal_pairs(D, N, P)
    W_Q = np.stack([np.sqrt(4 - p) * E[:, p] for p in range(P)])  # distinct σ
    W_K = np.stack([np.sqrt(4 - p) * E[:, P + p] for p in range(P)])
    low, high = family.baseline_range(E, W_Q, W_K, template, n_rotations=100, seed=0)
    assert 0 <= low <= high < 0.9
    assert (low, high) == family.baseline_range(E, W_Q, W_K, template, n_rotations=100, seed=0)
    own = family.matched_alignment(
        np.abs((E / np.linalg.norm(E, axis=0)).T @ np.linalg.svd(W_Q.T @ W_K)[0][:, :P]),
        np.abs((E / np.linalg.norm(E, axis=0)).T @ np.linalg.svd(W_Q.T @ W_K)[2][:P].T),
        np.ones(P, bool), template)
    assert own == pytest.approx(1) and own > high


def test_baseline_range_cannot_judge_a_rank_one_head():
    """With one significant σ a rotation of the singular basis is ±1: the range collapses
    onto the head's own alignment, so 'above the baseline' says nothing for rank one."""
    D, N = 16, 24
    E, _ = _orthonormal_pairs(D, N, 1)
    W_Q, W_K = 2 * E[:, :1].T, 2 * E[:, 1:2].T
    low, high = family.baseline_range(E, W_Q, W_K, ((0, 1, 1.0),), n_rotations=50)
    assert low == pytest.approx(1) and high == pytest.approx(1)


@pytest.mark.parametrize("gain", [8.0, -8.0])
def test_rope_planted_logit_carries_the_heads_sign(gain):
    """The hand-built RoPE head scores the planted pair E_0ᵀ Ω_δ E_1/√H > 0 at the task's
    offset (it attends there); negating W_Q makes it avoid the pair: the logit turns
    negative there, while |cos|-based alignment, blind to the sign, stays 1."""
    cfg = TRANSFORMER_PRESETS["transformer-rope"].replace(n_heads=1)
    model = hand_built(cfg, logit_gain=8.0)
    params = {k: np.asarray(v)[None] for k, v in nnx.to_pure_dict(nnx.state(model)).items()}
    params["W_Q"] = params["W_Q"] * np.sign(gain)
    out = family.rope_offsets(cfg, params)
    logit = out["planted_logit"][0, 0, 0]  # [T]
    assert np.sign(logit[cfg.offset]) == np.sign(gain)
    assert abs(logit[cfg.offset]) == pytest.approx(abs(gain), rel=1e-3)
    assert int(np.argmax(np.sign(gain) * logit)) == cfg.offset
    assert out["qk_cos"][0, 0, 0, cfg.offset] > 0.999


def test_a_short_trained_transformer_aligns():
    """Trained, not hand-built: a one-layer, one-head retrieval transformer trained for
    200 steps solves the task and its QK singular pair finds (E_0, E_1); at its starting
    values it does not."""
    cfg = RETRIEVAL.replace(n_heads=1, steps=200, batch_size=64, chunk_steps=100,
                            learning_rate=1e-2, record_points=0)
    instances = make_instances(cfg, [0, 1])
    res = train(cfg, instances, progress=False)
    acc = family.evaluate(cfg, res.params, instances)["accuracy"]
    analysis = family.analyze(cfg, res.params)
    qk = {r["instance"]: r for r in analysis.pairs if r["circuit"] == "qk"}
    for n in range(2):
        assert acc[n, 0, 0] > family.SOLVED_ACCURACY
        assert min(qk[n]["cos_query_u"], qk[n]["cos_key_v"]) > 0.9
    start = {k: np.asarray(v[...])[None] for k, v in
             nnx.to_pure_dict(nnx.state(build(cfg))).items()}
    start["E"] = family.fixed_frame(cfg, 0)[None]
    before = {r["instance"]: r for r in family.analyze(cfg, start).pairs
              if r["circuit"] == "qk"}
    assert min(before[0]["cos_query_u"] or 0, before[0]["cos_key_v"] or 0) < 0.9
