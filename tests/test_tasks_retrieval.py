"""The toy transformers' tasks (retrieval, multi-pair, RoPE, control): each task's hand-built
solution, its ground truth, and what the control asks for."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import hand_built
from toymodels.configs import TRANSFORMER_PRESETS
from toymodels.tasks.retrieval import sample, task_loss


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
