"""Building blocks shared by toymodels' transformer and the pretrained models' forward
passes (pretrained/): one definition of LayerNorm.

Shapes: x [..., D]; gain, bias [D].
"""

import jax.numpy as jnp


def lift(v, x):
    """A per-feature vector [D] shaped to broadcast against x [..., D] (rank promotion off)."""
    return v.reshape((1,) * (x.ndim - v.ndim) + v.shape)


def normalize(x, eps: float):
    """(x − mean(x)) / sqrt(var(x) + eps) over the last axis."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean((x - mean) ** 2, axis=-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + eps)


def layer_norm(x, gain, bias, eps: float = 1e-5):
    """LN(x) = normalize(x) · gain + bias."""
    return normalize(x, eps) * lift(gain, x) + lift(bias, x)
