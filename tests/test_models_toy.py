"""The paper's toy model (models/toy.py): shapes, logits r Ω s against NumPy, the cheaper of
its two routes chosen by counts with equal numbers and gradients, and its losses at
hand-set weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from toymodels.models import toy as toy_model
from toymodels.models.toy import ToyModel, feature_route_is_cheaper, gram_route_is_cheaper
from toymodels.tasks.toy import attention_loss, reconstruction_loss


def make_model(N, D, H, **params):
    model = ToyModel(N, D, H, init_scale=0.1, rngs=nnx.Rngs(0))
    for name, value in params.items():
        getattr(model, name)[...] = jnp.asarray(value, jnp.float32)
    return model


def test_shapes():
    model = make_model(20, 10, 4)
    assert model.W[...].shape == (10, 20) and model.b[...].shape == (20,)
    assert model.W_Q[...].shape == (4, 10) and model.W_K[...].shape == (4, 10)
    f_q, f_k = jnp.ones((3, 20)), jnp.ones((3, 5, 20))
    assert model.reconstruct(f_k).shape == (3, 5, 20)
    assert model.attention_logits(f_q, f_k).shape == (3, 5)
    assert model.omega().shape == (10, 10)


def test_logits_are_r_omega_s_against_numpy(getkey):
    model = make_model(6, 4, 3)
    rng = np.random.default_rng(0)
    f_q, f_k = rng.random((2, 6)), rng.random((2, 5, 6))
    W, Wq, Wk = (np.asarray(p[...], np.float64) for p in (model.W, model.W_Q, model.W_K))
    expected = np.einsum("bd,de,bje->bj", f_q @ W.T, Wq.T @ Wk, f_k @ W.T)
    got = model.attention_logits(jnp.asarray(f_q, jnp.float32), jnp.asarray(f_k, jnp.float32))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def builds_n_by_n(fn, *args, N) -> bool:
    """Does fn's program form an [N, N] matrix (WᵀW or Wᵀ Ω W)?"""
    jaxpr = jax.make_jaxpr(fn)(*args)
    return any(v.aval.shape == (N, N) for eqn in jaxpr.eqns for v in eqn.outvars)


@pytest.mark.parametrize("N, D, H, m, B, gram, features", [
    (6, 4, 3, 5, 7, True, True),            # N < 2.5 D: both [N, N] routes
    (100, 50, 50, 8, 64, True, True),       # the multi-pair preset's shapes
    (40, 4, 3, 5, 7, False, False),         # N >> D: both through the residuals
    (24, 4, 2, 8, 16, False, True),         # mixed, as in the pairs-beyond-H study at D=4
])
def test_routes_follow_the_counts_and_match_numpy(N, D, H, m, B, gram, features):
    assert gram_route_is_cheaper(N, D, tokens=B * m) == gram
    assert feature_route_is_cheaper(N, D, H, m, queries=B) == features
    model = make_model(N, D, H)
    rng = np.random.default_rng(2)
    f_q = jnp.asarray(rng.random((B, N)), jnp.float32)
    f_k = jnp.asarray(rng.random((B, m, N)), jnp.float32)
    # The model takes the route its counts choose (both routes give the same numbers,
    # so only the program shows which one ran).
    assert builds_n_by_n(model.reconstruct, f_k, N=N) == gram
    assert builds_n_by_n(model.attention_logits, f_q, f_k, N=N) == features
    W, Wq, Wk, b = (np.asarray(p[...], np.float64) for p in (model.W, model.W_Q, model.W_K,
                                                               model.b))
    f_q64, f_k64 = np.asarray(f_q, np.float64), np.asarray(f_k, np.float64)
    logits = np.einsum("bd,de,bje->bj", f_q64 @ W.T, Wq.T @ Wk, f_k64 @ W.T)
    recon = np.maximum((f_k64 @ W.T) @ W + b, 0)
    np.testing.assert_allclose(model.attention_logits(f_q, f_k), logits, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.reconstruct(f_k), recon, rtol=1e-4, atol=1e-5)


def test_routes_give_the_same_gradients(monkeypatch):
    # The multi-pair shapes at 64 queries take the [N, N] routes; forced through the
    # residuals, the loss and every gradient must be the same up to float32 rounding.
    N, D, H, m, B = 100, 50, 50, 8, 64
    assert gram_route_is_cheaper(N, D, tokens=B * (m + 1))
    assert feature_route_is_cheaper(N, D, H, m, queries=B)
    model = make_model(N, D, H)
    rng = np.random.default_rng(3)
    active = rng.random((B, m + 1, N)) < 0.1  # sparse tokens, as the task draws them
    f = jnp.asarray(active * rng.random((B, m + 1, N)), jnp.float32)
    f_q, f_k = f[:, 0], f[:, 1:]
    T = jnp.asarray(np.eye(N, k=1), jnp.float32)

    def loss(model):
        return (reconstruction_loss(model, f_q, f_k, jnp.ones(N))
                + attention_loss(model, f_q, f_k, T, jnp.float32(3.0), "xent"))

    routes = {}
    for name, forced in (("[N, N]", None), ("residuals", False)):
        if forced is not None:
            monkeypatch.setattr(toy_model, "gram_route_is_cheaper", lambda *a, **k: forced)
            monkeypatch.setattr(toy_model, "feature_route_is_cheaper", lambda *a, **k: forced)
        value, grads = nnx.value_and_grad(loss)(model)
        routes[name] = (float(value), nnx.to_pure_dict(grads))
    (v1, g1), (v2, g2) = routes.values()
    assert v1 == pytest.approx(v2, rel=1e-5)
    for key in g1:
        scale = float(jnp.abs(g2[key]).max())
        assert scale > 0, key
        np.testing.assert_allclose(g1[key], g2[key], atol=1e-4 * scale, err_msg=key)


def test_losses_at_hand_set_weights():
    # W = I (N = D): reconstruction of non-negative features is exact, and with
    # Ω = W_Qᵀ W_K = scale·T the head's logits equal the target logits.
    N = 4
    T = np.zeros((N, N), np.float32)
    T[0, 1] = 1.0
    scale = 3.0
    model = make_model(N, N, N, W=np.eye(N), b=np.zeros(N), W_Q=scale * T.T, W_K=np.eye(N))
    rng = np.random.default_rng(1)
    f_q = jnp.asarray(rng.random((8, N)), jnp.float32)
    f_k = jnp.asarray(rng.random((8, 3, N)), jnp.float32)
    assert float(reconstruction_loss(model, f_q, f_k, jnp.ones(N))) == pytest.approx(0, abs=1e-12)
    for kind in ("xent", "mse"):
        loss = attention_loss(model, f_q, f_k, jnp.asarray(T), jnp.float32(scale), kind)
        assert float(loss) == pytest.approx(0, abs=1e-6)
    # Zero head: uniform attention, logits 0.
    zero = make_model(N, N, N, W=np.eye(N), W_Q=np.zeros((N, N)), W_K=np.zeros((N, N)))
    t = scale * np.einsum("bn,nk,bjk->bj", np.asarray(f_q), T, np.asarray(f_k))
    mse = attention_loss(zero, f_q, f_k, jnp.asarray(T), jnp.float32(scale), "mse")
    assert float(mse) == pytest.approx(np.mean(t ** 2), rel=1e-5)
    p = np.exp(t) / np.exp(t).sum(-1, keepdims=True)
    kl = np.mean(np.sum(p * (np.log(p) - np.log(1 / 3)), -1))
    xent = attention_loss(zero, f_q, f_k, jnp.asarray(T), jnp.float32(scale), "xent")
    assert float(xent) == pytest.approx(kl, rel=1e-4)


def test_reconstruction_loss_is_importance_weighted():
    N = 3
    model = make_model(N, N, 2, W=np.zeros((N, N)), b=np.zeros(N))  # reconstructs 0
    f_q = jnp.asarray([[1.0, 1.0, 1.0]])
    f_k = jnp.asarray([[[0.0, 0.0, 0.0]]])
    importance = jnp.asarray([1.0, 0.5, 0.25])
    # Two tokens, squared errors 1 on each feature of the query: (1 + 0.5 + 0.25) / 2.
    loss = reconstruction_loss(model, f_q, f_k, importance)
    assert float(loss) == pytest.approx(0.875)
