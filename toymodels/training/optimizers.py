"""The optimizers a config names (`optimizer`), each at learning rate 1: training/loop.py scales the
update by each instance's own rate, so the rate can vary along the vmapped axis.

  adamw          optax.adamw: Adam's per-coordinate normalisers, decoupled weight decay
  sgd            momentum 0.9 (heavy ball), the same decoupled weight decay; its update
                 commutes with any rotation of a parameter, so no axis is privileged
  adamw_rotated  AdamW whose moments live in a fixed random basis: each parameter's last
                 two axes [a, b] are rotated G -> Q_a G Q_bᵀ (Q Haar, drawn once from the
                 axis size), Adam runs there, and its step is rotated back. Adaptive like
                 AdamW, but its coordinates are unrelated to the model's own axes (residual
                 stream, head dimension, features), which is the point of the foil.

Privileged bases from Adam: per-coordinate normalisers make the coordinate axes special
(Anthropic, "Privileged Bases in the Transformer Residual Stream", 2023); issue 19.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

MOMENTUM = 0.9
"""SGD's momentum (optax.trace decay)."""
ROTATION_SEED = 11
"""Seed of the fixed bases of adamw_rotated (one Haar rotation per axis size)."""


def make_optimizer(name: str, weight_decay: float) -> optax.GradientTransformation:
    """The named optimizer at learning rate 1 (the loop multiplies by the rate)."""
    if name == "adamw":
        return optax.adamw(1.0, weight_decay=weight_decay)
    if name == "sgd":
        return optax.chain(optax.trace(decay=MOMENTUM), optax.add_decayed_weights(weight_decay),
                           optax.scale(-1.0))
    if name == "adamw_rotated":
        return optax.chain(in_random_basis(optax.scale_by_adam()),
                           optax.add_decayed_weights(weight_decay), optax.scale(-1.0))
    raise ValueError(f"unknown optimizer {name!r}")


def haar(n: int, seed: int = ROTATION_SEED) -> np.ndarray:
    """A Haar-distributed orthogonal [n, n], the same for the same n and seed."""
    Z = np.random.default_rng([seed, n]).standard_normal((n, n))
    Q, R = np.linalg.qr(Z)
    return (Q * np.sign(np.diag(R))).astype(np.float32)


def rotate(g, inverse: bool = False):
    """g's last two axes [a, b] (or its only axis) in the fixed random basis:
    Q_a g Q_bᵀ, or back with inverse (Q_aᵀ g Q_b). Scalars stay as they are."""
    if g.ndim == 0:
        return g
    Qb = jnp.asarray(haar(g.shape[-1]))
    if inverse:
        Qb = Qb.T
    if g.ndim == 1:
        return Qb @ g
    Qa = jnp.asarray(haar(g.shape[-2]))
    if inverse:
        Qa = Qa.T
    return jnp.einsum("ij,...jk,lk->...il", Qa, g, Qb)


def in_random_basis(inner: optax.GradientTransformation) -> optax.GradientTransformation:
    """inner applied to the gradients in rotate's basis, its output rotated back. inner must
    not read the parameters (scale_by_adam does not)."""

    def update(updates, state, params=None):
        del params
        rotated = jax.tree.map(rotate, updates)
        steps, state = inner.update(rotated, state)
        return jax.tree.map(lambda u: rotate(u, inverse=True), steps), state

    return optax.GradientTransformation(inner.init, update)
