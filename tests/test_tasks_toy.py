"""The toy model's supervised attention task (tasks/toy.py): sampled tokens, the template
and its target logits, importance weights, and the tokens' second moment."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toymodels.configs import ToyConfig
from toymodels.tasks.toy import (importance_weights, sample_batch, second_moment, target_logits,
                                 template_matrix)


def test_active_rate_and_magnitudes_follow_p_active(getkey):
    p = jnp.asarray(np.linspace(0.05, 0.5, 10), jnp.float32)
    f_q, f_k = sample_batch(getkey(), p, batch_size=4000, m=4)
    assert f_q.shape == (4000, 10) and f_k.shape == (4000, 4, 10)
    tokens = np.concatenate([np.asarray(f_q)[:, None], np.asarray(f_k)], 1).reshape(-1, 10)
    rate = (tokens > 0).mean(0)
    # 20,000 tokens: binomial std <= 0.0036; 5 sigma tolerance.
    np.testing.assert_allclose(rate, np.asarray(p), atol=0.018)
    active = tokens[tokens > 0]
    assert active.min() >= 0 and active.max() <= 1
    assert abs(active.mean() - 0.5) < 0.01  # U[0, 1] magnitudes
    assert abs(active.var() - 1 / 12) < 0.005


def test_sampling_is_a_pure_function_of_the_key():
    p = jnp.full((6,), 0.3)
    a = sample_batch(jax.random.key(7), p, 8, 3)
    b = sample_batch(jax.random.key(7), p, 8, 3)
    c = sample_batch(jax.random.key(8), p, 8, 3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    jitted = jax.jit(sample_batch, static_argnums=(2, 3))(jax.random.key(7), p, 8, 3)
    assert all(np.array_equal(x, y) for x, y in zip(a, jitted))


def test_template_and_target_logits_by_hand():
    T = template_matrix(((0, 1, 2.0), (2, 0, 0.5)), N=3)
    assert T[0, 1] == 2.0 and T[2, 0] == 0.5 and T.sum() == 2.5
    f_q = jnp.asarray([[1.0, 0.0, 0.4]])
    f_k = jnp.asarray([[[0.0, 0.5, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    t = target_logits(f_q, f_k, jnp.asarray(T), 3.0)
    # key 0: 1.0*2.0*0.5 = 1.0; key 1: 0.4*0.5*1.0 = 0.2; key 2: 0
    np.testing.assert_allclose(t, [[3.0, 0.6, 0.0]], rtol=1e-6)


def test_importance_weights_decay():
    np.testing.assert_allclose(importance_weights(ToyConfig(N=4, importance_decay=0.5)),
                               [1, 0.5, 0.25, 0.125])


@pytest.mark.parametrize("tokens", ["sparse", "onehot"])
def test_second_moment_matches_sampled_tokens(tokens):
    cfg = ToyConfig(N=6, D=3, H=3, p_active=0.3, tokens=tokens)
    f_q, f_k = sample_batch(jax.random.key(0), np.full(6, 0.3, np.float32), 20000, 4, tokens)
    f = np.concatenate([np.asarray(f_q), np.asarray(f_k).reshape(-1, 6)])
    np.testing.assert_allclose(f.T @ f / len(f), second_moment(cfg), atol=4e-3)
    if tokens == "onehot":
        assert set(np.unique(f)) == {0.0, 1.0} and (f.sum(axis=1) == 1).all()
