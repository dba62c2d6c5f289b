"""Structured sparse features: a sampler that follows a FeatureStructure (structure.py,
whose docstring defines the composition order and what every rate means).

Shapes: N features; "..." any batch of tokens; f [..., N]; p_active [N] or a scalar
(traced: it may differ between vmapped instances, while the structure is static);
K correlated features (the copula's), z [..., K].

Per token the sampler draws N uniforms u and, with correlations, K standard normals:
  u_i  feature i's own event (u_i < q_i) and its magnitude (u_i / q_i), the one-draw
       trick of sample_features; an exclusive group's members all read the u of the
       group's first member, each firing on its own slice of [0, 1); a correlated
       feature fires on z instead, and its u is only its magnitude;
  z    = C^{1/2} n, the copula latents, so that cov z = C.
Values are a pure function of the key (threefry in features.py's fast layout): the same
for an instance alone or vmapped with 63 others.
"""

from functools import lru_cache
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri

from toymodels.tasks.features import _fast_threefry, sample_features
from toymodels.tasks.structure import FeatureStructure, layout


class _Plan(NamedTuple):
    """Static index arrays of one structure, built once (NumPy, baked into the trace)."""
    is_child: np.ndarray      # [N] bool
    conditional: np.ndarray   # [N] float32, P(child | parent)
    event_source: np.ndarray  # [N] int: whose uniform decides i's event (group: first member)
    groups: tuple             # exclusive groups as index arrays
    previous: np.ndarray      # [N] int: the member before i in its group (or i)
    has_previous: np.ndarray  # [N] bool
    correlated: np.ndarray    # [K] int
    is_correlated: np.ndarray  # [N] bool
    root_factor: np.ndarray   # [K, N] float32: z_full = n @ root_factor, zero off the K
    parent: np.ndarray        # [N] int, roots point at themselves
    depth: int


@lru_cache(maxsize=128)
def _plan(structure: FeatureStructure) -> _Plan:
    lay, N = layout(structure), structure.n_features
    event_source, previous = np.arange(N), np.arange(N)
    has_previous = np.zeros(N, bool)
    for members in structure.exclusive:
        event_source[list(members)] = members[0]
        previous[list(members[1:])] = members[:-1]
        has_previous[list(members[1:])] = True
    correlated = np.array(lay.correlated, dtype=np.int64)
    # A symmetric square root of C's correlated block (eigh, not Cholesky: a PSD C may
    # be singular, e.g. rho = 1), scattered into N columns so the copula's events land
    # in place by a select rather than a scatter.
    C = lay.C[np.ix_(correlated, correlated)]
    eigenvalues, vectors = np.linalg.eigh(C)
    root = (vectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ vectors.T
    root_factor = np.zeros((len(correlated), N), np.float32)
    root_factor[:, correlated] = root.T
    is_correlated = np.zeros(N, bool)
    is_correlated[correlated] = True
    return _Plan(
        is_child=lay.parent >= 0, conditional=lay.conditional.astype(np.float32),
        event_source=event_source, groups=tuple(np.array(g) for g in structure.exclusive),
        previous=previous, has_previous=has_previous, correlated=correlated,
        is_correlated=is_correlated, root_factor=root_factor,
        parent=np.where(lay.parent >= 0, lay.parent, np.arange(N)), depth=lay.depth)


def sample_structured(key, structure: FeatureStructure, p_active, shape) -> jax.Array:
    """Features of `shape` (..., N) that fire as `structure` says (U[0, 1] magnitudes).

    p_active: the base rates [N] or one value (structure.py step 1). `structure` and
    `shape` are static (jit with static_argnums=(1, 3)). An independent structure returns
    sample_features(key, p_active with Zipf applied, shape): bit for bit the same draws."""
    lay, N = layout(structure), structure.n_features
    if shape[-1] != N:
        raise ValueError(f"shape {shape} must end in n_features={N}")
    p = jnp.broadcast_to(jnp.asarray(p_active, jnp.float32), (N,))
    if structure.zipf_exponent:
        p = p * lay.zipf.astype(np.float32)
    if lay.independent:
        return sample_features(key, p, shape)
    plan = _plan(structure)
    row = lambda v: jnp.reshape(v, (1,) * (len(shape) - 1) + (N,))  # [..., N]-ready

    q = jnp.where(plan.is_child, plan.conditional, p)
    # Each group member's slice [lo, hi) of [0, 1): hi a running sum, lo the previous
    # member's hi itself (not lo + q recomputed), so slices can never overlap by rounding.
    hi = q
    for members in plan.groups:
        hi = hi.at[members].set(jnp.cumsum(q[members]))
    hi = jnp.minimum(hi, 1.0)  # a group summing past 1 is refused by own_probabilities
    lo = jnp.where(plan.has_previous, hi[plan.previous], 0.0)
    width = hi - lo

    with _fast_threefry():
        key_u, key_z = jax.random.split(key)
        u = jax.random.uniform(key_u, shape)
        n = jax.random.normal(key_z, shape[:-1] + (len(plan.correlated),)) \
            if len(plan.correlated) else None
    u_event = u[..., plan.event_source] if plan.groups else u
    own = (u_event >= row(lo)) & (u_event < row(hi))
    magnitude = (u_event - row(lo)) / row(jnp.where(width > 0, width, 1.0))
    if n is not None:
        z = jnp.matmul(n, plan.root_factor, precision=jax.lax.Precision.HIGHEST)
        threshold = jnp.where(plan.is_correlated, ndtri(q), 0.0)
        own = jnp.where(row(plan.is_correlated), z < row(threshold), own)
        magnitude = jnp.where(row(plan.is_correlated), u, magnitude)
    fires = own
    for _ in range(plan.depth):  # after d rounds every chain of length <= d is resolved
        fires = own & jnp.where(row(plan.is_child), fires[..., plan.parent], True)
    return jnp.where(fires, magnitude, 0.0)
