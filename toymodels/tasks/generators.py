"""Structured sparse features: a sampler that follows a FeatureStructure (structure.py,
whose docstring defines the composition order and what every rate means).

Shapes: N features; "..." any batch of tokens; f [..., N]; p_active [N] or a scalar
(traced: it may differ between vmapped instances, while the structure is static);
K correlated features, R <= K common factors of their copula. Draws are features
first: u [N, ...], g [R, ...] ("rows"; row i is feature i's), so every per-feature step
reads whole contiguous rows, where columns of [..., N] are strided.

Per token the sampler draws N uniforms u and, with correlations, R standard normals g:
  u_i  feature i's own event (u_i below its rate) and its magnitude (u_i over that
       rate), sample_features' one-draw trick; an exclusive group's members all read
       the u of the group's first member, each on its own slice of [0, 1).
  g    the copula, written per correlated component as C = δ I + F Fᵀ (δ its smallest
       eigenvalue): z = F g + √δ e. Given g the features are independent, feature i
       firing with rate q_i(g) = Φ((Φ⁻¹(q_i) − (F g)_i) / √δ), so u_i serves as e_i and
       as magnitude, and a block of one rho >= 0 costs one normal, not one per feature.
       Φ is computed in float32 from erf (absolute error ~1e-7 in a per-token rate).
A feature counts as firing for its children when its value is > 0 (its event with a
magnitude of exactly 0, odds 2^-23, does not), so no child is ever seen without its parent.
Values are a pure function of the key (threefry in features.py's fast layout): the same,
under jit, for an instance alone or vmapped with 63 others.
"""

import functools
from functools import lru_cache
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri

from toymodels.tasks.features import _fast_threefry, sample_features
from toymodels.tasks.structure import FeatureStructure, layout

RANK_TOLERANCE = 1e-9
"""Eigenvalues of C − δI below this are dropped from F: the copula's C is then off by
at most this much (a block of one rho has them exactly 0 but for rounding)."""

ROW_BY_ROW_MAX_FEATURES = 48
"""Up to this N the output is assembled row by row (one fused loop per feature, then a
stack: 1.0-1.3x sample_features on the CPU, but compile time grows with N); beyond it,
in one vectorised pass and a transpose (XLA fuses it into one loop, 1.5-2.3x, and
compiles in seconds at any N). Both give the same values, but for the last bit of a
correlated feature's rate (XLA rounds erf differently in the two fusions)."""


class _Plan(NamedTuple):
    """Static arrays of one structure, built once (NumPy, baked into the trace)."""
    is_child: np.ndarray      # [N] bool
    conditional: np.ndarray   # [N] float32, P(child | parent)
    groups: tuple             # exclusive groups as index arrays
    previous: np.ndarray      # [N] the member before i in its group (or i)
    has_previous: np.ndarray  # [N] bool
    event_source: np.ndarray  # [N] whose u decides i's event (a group's first member)
    correlated: np.ndarray    # [K] the correlated features
    uncorrelated: np.ndarray  # [N - K] the others
    factor: np.ndarray        # [R, N] float32: F (zero off the correlated features)
    noise_scale: np.ndarray   # [N] float32: √δ of i's component (1 where uncorrelated)
    chains: tuple             # chains[i]: i and its ancestors
    parent: np.ndarray        # [N] parent index, a root its own
    depth: int                # longest chain of parents


def _low_rank_copula(lay, N: int):
    """(F [R, N], √δ [N]) with C = δ I + F Fᵀ on each correlated component."""
    columns, noise_scale = [], np.ones(N)
    for c in np.unique(lay.component[lay.component >= 0]):
        members = np.flatnonzero(lay.component == c)
        eigenvalues, vectors = np.linalg.eigh(lay.C[np.ix_(members, members)])
        delta = max(eigenvalues[0], 0.0)
        keep = eigenvalues - delta > RANK_TOLERANCE
        F = np.zeros((N, keep.sum()))
        F[members] = vectors[:, keep] * np.sqrt(eigenvalues[keep] - delta)
        columns.append(F)
        noise_scale[members] = np.sqrt(delta)
    factor = np.concatenate(columns, axis=1).T if columns else np.zeros((0, N))
    return factor.astype(np.float32), noise_scale.astype(np.float32)


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
    factor, noise_scale = _low_rank_copula(lay, N)
    return _Plan(
        is_child=lay.parent >= 0, conditional=lay.conditional.astype(np.float32),
        groups=tuple(np.array(g) for g in structure.exclusive), previous=previous,
        has_previous=has_previous, event_source=event_source, correlated=correlated,
        uncorrelated=np.setdiff1d(np.arange(N), correlated), factor=factor,
        noise_scale=noise_scale, chains=lay.chains,
        parent=np.where(lay.parent >= 0, lay.parent, np.arange(N)), depth=lay.depth)


def _take_rows(x, index) -> jax.Array:
    """x[index] along axis 0 for a static index, as a concatenation of runs of
    consecutive rows: whole-row copies, where XLA's gather goes element by element."""
    index = [int(i) for i in index]
    if index == list(range(x.shape[0])):
        return x
    starts = [0] + [k for k in range(1, len(index)) if index[k] != index[k - 1] + 1]
    ends = starts[1:] + [len(index)]
    return jnp.concatenate([x[index[a]:index[a] + b - a] for a, b in zip(starts, ends)])


def _event_value(u, lo, hi, width):
    """An uncorrelated feature: fires on [lo, hi) of its u, magnitude its place in it."""
    return jnp.where((u >= lo) & (u < hi), (u - lo) / width, 0.0)


def _correlated_value(u, shift, threshold, noise):
    """A correlated feature given F g = shift: fires below its rate q_i(g) (δ = 0, e.g.
    rho = 1: no noise left, q_i(g) is 0 or 1)."""
    rate = jnp.where(noise > 0, 0.5 - 0.5 * jax.lax.erf((shift - threshold) /
                                                        jnp.where(noise > 0, noise, 1.0)),
                     (shift < threshold).astype(u.dtype))
    return jnp.where(u < rate, u / jnp.where(rate > 0, rate, 1.0), 0.0)


def sample_structured(key, structure: FeatureStructure, p_active, shape) -> jax.Array:
    """Features of `shape` (..., N) that fire as `structure` says (U[0, 1] magnitudes).

    p_active: the base rates [N] or one value (structure.py step 1). `structure` and
    `shape` are static (jit with static_argnums=(1, 3)). An independent structure returns
    sample_features(key, p_active with Zipf applied, shape): bit for bit the same draws.
    Otherwise values are bit for bit the same under jit for any vmapped batch (F g is a
    sum in a fixed order, not a dot); evaluated op by op without jit, a per-token rate
    may round differently in its last bit."""
    lay, N = layout(structure), structure.n_features
    if shape[-1] != N:
        raise ValueError(f"shape {shape} must end in n_features={N}")
    p = jnp.broadcast_to(jnp.asarray(p_active, jnp.float32), (N,))
    if structure.zipf_exponent:
        p = p * lay.zipf.astype(np.float32)
    if lay.independent:
        return sample_features(key, p, shape)
    plan = _plan(structure)

    q = jnp.where(plan.is_child, plan.conditional, p)
    # Each group member's slice [lo, hi) of [0, 1): hi a running sum, lo the previous
    # member's hi itself (not lo + q recomputed), so slices can never overlap by rounding.
    hi = q
    for members in plan.groups:
        hi = hi.at[members].set(jnp.cumsum(q[members]))
    hi = jnp.minimum(hi, 1.0)  # a group summing past 1 is refused by own_probabilities
    lo = jnp.where(plan.has_previous, hi[plan.previous], 0.0)
    width = jnp.where(hi > lo, hi - lo, 1.0)
    threshold = ndtri(q)
    noise = plan.noise_scale * np.float32(np.sqrt(2.0))

    batch = tuple(shape[:-1])
    R = plan.factor.shape[0]
    with _fast_threefry():
        key_u, key_g = jax.random.split(key)
        u = jax.random.uniform(key_u, (N,) + batch)
        g = jax.random.normal(key_g, (R,) + batch) if R else None
    if N <= ROW_BY_ROW_MAX_FEATURES:
        return _row_by_row(plan, u, g, lo, hi, width, threshold, noise)
    return _vectorised(plan, u, g, lo, hi, width, threshold, noise)


def _row_by_row(plan, u, g, lo, hi, width, threshold, noise):
    """One expression per feature, stacked on the last axis: XLA fuses each into its own
    loop, vectorised along the batch, and the stack only copies."""
    value, correlated = [], set(plan.correlated.tolist())
    for i in range(len(u)):
        if i in correlated:  # F g over its nonzero terms, in the order of r
            shift = functools.reduce(jnp.add, [plan.factor[r, i] * g[r]
                                               for r in np.flatnonzero(plan.factor[:, i])],
                                     jnp.zeros((), u.dtype))
            value.append(_correlated_value(u[i], shift, threshold[i], noise[i]))
        else:
            value.append(_event_value(u[plan.event_source[i]], lo[i], hi[i], width[i]))
    columns = []
    for i, chain in enumerate(plan.chains):  # fires when all its ancestors do
        ancestors_fire = [value[k] > 0 for k in chain[1:]]
        columns.append(jnp.where(functools.reduce(jnp.logical_and, ancestors_fire),
                                 value[i], 0.0) if ancestors_fire else value[i])
    return jnp.stack(columns, axis=-1)


def _vectorised(plan, u, g, lo, hi, width, threshold, noise):
    """_row_by_row's values (to the last bit) from whole-array passes and a transpose."""
    column = lambda v, index: jnp.reshape(v[index], (-1,) + (1,) * (u.ndim - 1))
    parts, order = [], np.concatenate([plan.correlated, plan.uncorrelated])
    if len(plan.correlated):
        k = plan.correlated
        shift = functools.reduce(jnp.add, [column(plan.factor[r], k) * g[r][None]
                                           for r in range(len(plan.factor))], jnp.zeros((), u.dtype))
        parts.append(_correlated_value(_take_rows(u, k), shift, column(threshold, k),
                                       column(noise, k)))
    if len(plan.uncorrelated):
        k = plan.uncorrelated
        parts.append(_event_value(_take_rows(u, plan.event_source[k]), column(lo, k),
                                  column(hi, k), column(width, k)))
    f = _take_rows(jnp.concatenate(parts), np.argsort(order))  # back to feature order
    fires = f > 0
    for _ in range(plan.depth):  # after d rounds every chain of <= d parents is resolved
        fires = (f > 0) & (_take_rows(fires, plan.parent) | column(~plan.is_child, slice(None)))
    return jnp.moveaxis(jnp.where(fires, f, 0.0), 0, -1)
