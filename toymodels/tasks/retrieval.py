"""Retrieval tasks for toy transformers: the right attention is known, never in the loss.

Shapes:
  B batch, T tokens (the last one is the query), N features, V value features
  f [B, T, N] token features; target [B, V]; key_pos [B] the token the query should read;
  asked [B] whether the query token carries its query feature (else: average)

A sequence: T − 1 earlier tokens carry value features and every token background
features (each active with p_active, magnitude U[0, 1]); the query token carries query
feature i_p of one pair p (magnitude 1), the token at key_pos key feature j_p (magnitude 1).
The loss asks only for gain_v × value feature v of the token at key_pos, read off the
query position through Eᵀ. With probability 1 − p_query the query token does not carry
its query feature, and the output is what uniform attention over all T tokens gives:
Σ_t value features / T. The control draws the same tokens (query feature included) but
always asks for that uniform average.

Ground truth (TransformerConfig.qk_template / ov_template): a head that solves the task
pairs E_i with E_j on QK and carries E_v to E_v on OV.
"""

import jax
import jax.numpy as jnp
import numpy as np

from toymodels.configs import TransformerConfig
from toymodels.tasks.generators import sample_structured


def sample(key, cfg: TransformerConfig, p_active) -> dict:
    """One batch of cfg.batch_size sequences (see the module docstring)."""
    B, T, N = cfg.batch_size, cfg.T, cfg.N
    k_pair, k_pos, k_on, k_mag, k_decoy, k_other, k_ask = jax.random.split(key, 7)
    P = len(cfg.pairs)
    weights = jnp.asarray([w for _, _, w in cfg.pairs], jnp.float32)
    pair = jax.random.categorical(k_pair, jnp.log(weights), shape=(B,))
    queries = jnp.asarray(cfg.queries, jnp.int32)
    keys = jnp.asarray(cfg.keys, jnp.int32)

    # Value features on every earlier token (none on the query token, whose own values
    # would land in the output); background features on every token, the query too, so
    # that what the query side of a head reads is not the same vector every time.
    values = np.zeros(N, bool)
    values[list(cfg.value_features)] = True
    background = np.zeros(N, bool)
    background[list(cfg.background)] = True
    earlier = (jnp.arange(T) < T - 1)[None, :, None]
    allowed = (jnp.asarray(values)[None, None, :] & earlier) | jnp.asarray(background)[None, None, :]
    if cfg.structure is None:
        on = (jax.random.uniform(k_on, (B, T, N)) < p_active) & allowed
        f = jnp.where(on, jax.random.uniform(k_mag, (B, T, N)), 0.0)
    else:  # value and background features fire together as the structure says
        f = jnp.where(allowed, sample_structured(k_on, cfg.structure,
                                                 jnp.broadcast_to(p_active, (N,)),
                                                 (B, T, N)), 0.0)

    if cfg.task == "rope":
        key_pos = jnp.full((B,), T - 1 - cfg.offset, jnp.int32)
    else:
        key_pos = jax.random.randint(k_pos, (B,), 0, T - 1)
    positions = jnp.arange(T)[None, :]
    is_key = positions == key_pos[:, None]  # [B, T]
    key_onehot = jax.nn.one_hot(keys[pair], N)  # [B, N]
    if cfg.task == "rope":
        # Decoys: half the other earlier tokens carry the same key feature, so only the
        # offset tells the right one apart.
        decoy = (jax.random.uniform(k_decoy, (B, T)) < 0.5) & (positions < T - 1) & ~is_key
        f = f + (is_key | decoy)[:, :, None] * key_onehot[:, None, :]
    else:
        f = f + is_key[:, :, None] * key_onehot[:, None, :]
        if P > 1:
            # Every other earlier token carries another pair's key feature, so the head has
            # to match the query's pair, not just find "a key feature".
            shift = jax.random.randint(k_other, (B, T), 1, P)
            other = jax.nn.one_hot(keys[(pair[:, None] + shift) % P], N)  # [B, T, N]
            f = f + ((positions < T - 1) & ~is_key)[:, :, None] * other
    # The query feature appears with probability p_query in every task; only retrieval and
    # rope then ask for the key token's values, so the control sees the same tokens.
    has_query = jax.random.uniform(k_ask, (B,)) < cfg.p_query
    f = f.at[:, T - 1].add(has_query[:, None] * jax.nn.one_hot(queries[pair], N))
    asked = has_query & (cfg.task != "control")

    values = f[..., jnp.asarray(cfg.value_features)]  # [B, T, V]
    gains = jnp.asarray(cfg.value_gains, jnp.float32)
    retrieved = jnp.take_along_axis(values, key_pos[:, None, None], axis=1)[:, 0]
    uniform = values.sum(axis=1) / T
    target = jnp.where(asked[:, None], retrieved, uniform) * gains[None, :]
    return {"f": f, "target": target, "key_pos": key_pos, "pair": pair, "asked": asked}


def task_loss(output, target):
    """Squared error of the retrieved values, summed over value features, averaged over
    the batch: output, target [B, V]."""
    return jnp.mean(jnp.sum((output - target) ** 2, axis=-1))


def attention_accuracy(attn, key_pos, asked):
    """Mean attention mass the query puts on the token it should read, per head, over the
    sequences whose query asks for it: attn [B, n, T, T], key_pos, asked [B] -> [n]; NaN
    where none asks (the control task)."""
    at_query = attn[:, :, -1, :]  # [B, n, T]
    mass = jnp.take_along_axis(at_query, key_pos[:, None, None], axis=2)[..., 0]  # [B, n]
    weight = asked.astype(mass.dtype)[:, None]
    total = weight.sum()
    return jnp.where(total > 0, (mass * weight).sum(0) / jnp.maximum(total, 1.0), jnp.nan)
