"""The paper's supervised-attention task (docs/science.md): tokens, template targets, losses.

Shapes:
  B  batch of queries     m  key tokens per query     N  features
  f_q [B, N] query features, f_k [B, m, N] key features: sparse, non-negative.

Sampling is a pure function of its PRNG key, so a training run's data stream
is fixed by (seed, step) and nothing else.
"""

import jax
import jax.numpy as jnp
import numpy as np

from toymodels.configs import ToyConfig
from toymodels.models.toy import feature_route_is_cheaper, gram_route_is_cheaper
from toymodels.tasks.features import sample_features, sample_onehot
from toymodels.tasks.generators import sample_structured


def template_matrix(template, N: int) -> np.ndarray:
    """Dense T [N, N] from (query_feature, key_feature, value) triples."""
    T = np.zeros((N, N), np.float32)
    for i, j, value in template:
        T[i, j] = value
    return T


def importance_weights(cfg: ToyConfig) -> np.ndarray:
    """I_i = importance_decay ** i, shape [N]."""
    return (cfg.importance_decay ** np.arange(cfg.N)).astype(np.float32)


def sample_batch(key, p_active, batch_size: int, m: int, tokens: str = "sparse",
                 structure=None):
    """One training batch: f_q [B, N] and f_k [B, m, N]; structure (a FeatureStructure, or
    None: independent features) says how features fire together within a token."""
    N = p_active.shape[-1]
    k_q, k_k = jax.random.split(key)
    if tokens == "onehot":
        return sample_onehot(k_q, (batch_size, N)), sample_onehot(k_k, (batch_size, m, N))
    if structure is not None:
        return (sample_structured(k_q, structure, p_active, (batch_size, N)),
                sample_structured(k_k, structure, p_active, (batch_size, m, N)))
    f_q = sample_features(k_q, p_active, (batch_size, N))
    f_k = sample_features(k_k, p_active, (batch_size, m, N))
    return f_q, f_k


def step_orders(cfg: ToyConfig) -> tuple[bool, bool]:
    """(reconstruction through WᵀW, logits through Wᵀ Ω W): the contraction orders the
    model takes in a training step, whose losses reconstruct the B(m + 1) tokens of a
    batch and score B queries (models/toy.py)."""
    B = cfg.batch_size
    return (gram_route_is_cheaper(cfg.N, cfg.D, tokens=B * (cfg.m + 1)),
            feature_route_is_cheaper(cfg.N, cfg.D, cfg.H, cfg.m, queries=B))


def second_moment(cfg: ToyConfig) -> np.ndarray:
    """M = E[f fᵀ] [N, N] of one token (float64): the input statistics in Theorem 1's
    normal equations. Sparse: E[f_i²] = p_i/3, E[f_i f_j] = p_i p_j/4 (U[0, 1] magnitudes);
    with a feature structure, its own M (tasks/structure.second_moment: P(i and j fire)/4)."""
    if cfg.tokens == "onehot":
        return np.eye(cfg.N) / cfg.N
    if cfg.structure is not None:
        from toymodels.tasks import structure
        p = np.asarray(cfg.p_active_vector, np.float64)
        if not structure.has_closed_form(cfg.structure):  # a stated-error integral
            return structure.estimate_second_moment(cfg.structure, p)
        return structure.second_moment(cfg.structure, p)
    p = np.asarray(cfg.p_active_vector, np.float64)
    M = np.outer(p, p) / 4
    np.fill_diagonal(M, p / 3)
    return M


def target_logits(f_q, f_k, T, target_scale):
    """t_j = target_scale * f_q^T T f_j, shape [B, m]."""
    return target_scale * jnp.einsum("bn,nk,bjk->bj", f_q, T, f_k)


def reconstruction_loss(model, f_q, f_k, importance):
    """Importance-weighted squared error, summed over features, averaged over all tokens."""
    tokens = jnp.concatenate([f_q[:, None, :], f_k], axis=1)  # [B, m+1, N]
    err = (tokens - model.reconstruct(tokens)) ** 2
    return jnp.mean(err @ importance)


def attention_loss(model, f_q, f_k, T, target_scale, kind: str):
    """Attention loss, averaged over queries.

    'xent': cross-entropy between softmax(target logits) and the head's attention,
            less the target's entropy (i.e. the KL divergence): same gradients, and
            0 at a perfect fit, so a reported value reads as "how far from the target".
    'mse':  squared error between the head's logits and the target logits.
    """
    logits = model.attention_logits(f_q, f_k)
    targets = target_logits(f_q, f_k, T, target_scale)
    if kind == "mse":
        return jnp.mean((logits - targets) ** 2)
    p_target = jax.nn.softmax(targets, axis=-1)
    kl = p_target * (jax.nn.log_softmax(targets, axis=-1) - jax.nn.log_softmax(logits, axis=-1))
    return jnp.mean(jnp.sum(kl, axis=-1))
