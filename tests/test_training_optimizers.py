"""The optimizers a config names: known first steps against hand-computed updates, the
rotated basis is orthogonal and fixed, adamw is the optimizer the project always used, and
the axis frame puts feature i on axis i."""

import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toymodels.configs import preset
from toymodels.training.optimizers import MOMENTUM, haar, make_optimizer, rotate

WD = 0.05


def params_and_grads(seed=0):
    rng = np.random.default_rng(seed)
    params = {"W": rng.normal(size=(3, 4)).astype(np.float32),
              "b": rng.normal(size=(4,)).astype(np.float32)}
    grads = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in params.items()}
    return params, grads


def step(name, params, grads_seq):
    tx = make_optimizer(name, WD)
    state = tx.init(params)
    out = []
    for g in grads_seq:
        u, state = tx.update(g, state, params)
        out.append({k: np.asarray(v) for k, v in u.items()})
    return out


def test_adamw_is_optax_adamw_at_rate_one():
    params, grads = params_and_grads()
    ours = step("adamw", params, [grads, grads])
    ref = optax.adamw(1.0, weight_decay=WD)
    state = ref.init(params)
    for u in ours:
        r, state = ref.update(grads, state, params)
        for k in u:
            np.testing.assert_array_equal(u[k], np.asarray(r[k]))


def test_sgd_steps_are_heavy_ball_with_decoupled_decay():
    params, g1 = params_and_grads(0)
    _, g2 = params_and_grads(1)
    u1, u2 = step("sgd", params, [g1, g2])
    for k in params:  # v1 = g1, v2 = 0.9 v1 + g2; update = -(v + wd·p)
        np.testing.assert_allclose(u1[k], -(g1[k] + WD * params[k]), rtol=1e-6)
        np.testing.assert_allclose(u2[k], -(MOMENTUM * g1[k] + g2[k] + WD * params[k]),
                                   rtol=1e-6)


def test_rotated_adamw_is_adam_in_the_rotated_basis():
    params, grads = params_and_grads()
    (u,) = step("adamw_rotated", params, [grads])
    # Adam's first step is g / (|g| + eps) per coordinate (bias-corrected): in the basis
    # Q_a G Q_bᵀ, then rotated back, plus the decay in the model's own basis.
    Qa, Qb = haar(3), haar(4)
    G = Qa @ grads["W"] @ Qb.T
    expect_W = -(Qa.T @ (G / (np.abs(G) + 1e-8)) @ Qb + WD * params["W"])
    np.testing.assert_allclose(u["W"], expect_W, rtol=1e-4, atol=1e-6)
    g = Qb @ grads["b"]
    np.testing.assert_allclose(u["b"], -(Qb.T @ (g / (np.abs(g) + 1e-8)) + WD * params["b"]),
                               rtol=1e-4, atol=1e-6)
    # the foil: plain AdamW's first step is ±1 per coordinate; the rotated one is not
    (plain,) = step("adamw", params, [grads])
    assert np.allclose(np.abs(plain["W"] + WD * params["W"]), 1, atol=1e-5)
    assert not np.allclose(np.abs(u["W"] + WD * params["W"]), 1, atol=1e-2)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 40))
def test_haar_is_orthogonal_and_fixed(n):
    Q = haar(n)
    np.testing.assert_allclose(Q @ Q.T, np.eye(n), atol=1e-5)
    np.testing.assert_array_equal(Q, haar(n))


def test_rotate_round_trips_over_leading_axes():
    g = np.random.default_rng(3).normal(size=(2, 5, 3, 4)).astype(np.float32)
    back = np.asarray(rotate(rotate(g), inverse=True))
    np.testing.assert_allclose(back, g, atol=1e-5)
    np.testing.assert_allclose(np.asarray(rotate(g))[1, 2], haar(3) @ g[1, 2] @ haar(4).T,
                               rtol=1e-5, atol=1e-6)


def test_axis_frame_puts_feature_i_on_axis_i():
    from toymodels.families.transformer import fixed_frame
    cfg = preset("transformer-retrieval").replace(frame="axis")
    np.testing.assert_array_equal(fixed_frame(cfg, 5), np.eye(cfg.D, dtype=np.float32))
    random = fixed_frame(cfg.replace(frame="random"), 5)
    np.testing.assert_allclose(random @ random.T, np.eye(cfg.D), atol=1e-5)  # tight, N = D
    assert np.abs(random).max() < 0.99  # and rotated off the axes


@pytest.mark.parametrize("name", ["sgd", "adamw_rotated"])
def test_each_optimizer_trains_the_toy_model(name):
    from toymodels.configs import make_instances
    from toymodels.training.loop import train
    cfg = preset("single-pair").replace(steps=60, chunk_steps=30, batch_size=64,
                                        record_points=0, optimizer=name,
                                        learning_rate=0.3 if name == "sgd" else 3e-3)
    result = train(cfg, make_instances(cfg, [0]), progress=False)
    recon = result.curves["recon"][0]
    assert np.isfinite(recon).all() and recon[-10:].mean() < 0.9 * recon[:10].mean()
