"""How planted features fire together: correlation, hierarchy, exclusivity, Zipf rates.

NumPy only: config validation imports it before JAX loads (SciPy is imported lazily).
Shapes: N features; p [N] base rates (the config's p_active; one value is broadcast);
q [N] own-event probabilities; C [N, N] copula correlation; M [N, N] = E[f fᵀ] (float64).

Composition, in this order (generators.sample_structured draws it step for step):
  1. base       p_i, the config's p_active.
  2. zipf       p_i <- p_i (i + 1)^(-a): with one p_active, p_max = p_active is
                feature 0's rate and feature i fires (i + 1)^(-a) as often.
  3. own        q_i = p_i for a root, q_i = conditional_i for a child (a child's p_i
                is ignored: its rate is its parent's times conditional_i).
  4. events     own events E_i, P(E_i) = q_i exactly:
                - exclusive group: one uniform per token, member k firing on the slice
                  [q_1 + .. + q_{k-1}, q_1 + .. + q_k) of [0, 1) (needs sum q <= 1);
                - correlated features (a nonzero off-diagonal C): Gaussian copula,
                  z ~ N(0, C), E_i = z_i < Φ⁻¹(q_i): C moves co-firing, not rates;
                - every other feature independently.
  5. hierarchy  fires_i = E_i and fires_parent(i): a child never fires without its parent.
  6. magnitude  f_i = fires_i · U[0, 1], independent of all firing.
Exclusivity acts on events, not as a mask after the hierarchy: masking only removes
firing, so "at most one per group" survives it, and dropping none keeps stated rates the
actual ones. Two rules keep them so: a feature is uncorrelated with its ancestors (then
conditional_i is P(child | parent)), and an exclusive feature with every feature. Then
    P(i fires)      = product of q_k over i and its ancestors       (marginal_rates)
    P(i and j fire) = P(E_k for every k on either ancestor chain)   (second_moment),
a product over exclusive groups, correlated components and the rest. A component that
meets the two chains in <= 2 features is a bivariate normal CDF (Owen's T, exact); only
a full matrix linking >= 3 has no closed form: estimate_second_moment integrates it.
"""

import math
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from toymodels.errors import ConfigError

PSD_TOLERANCE = 1e-9
"""Smallest eigenvalue of C still accepted (rounding of a singular PSD matrix)."""


class StructureError(ConfigError):
    """A FeatureStructure or its rates are invalid; one line says what and how to fix it."""


def _as_tuples(value):
    """Lists (TOML, JSON) to tuples all the way down, so a structure hashes."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuples(v) for v in value)
    return value


@dataclass(frozen=True)
class FeatureStructure:
    """How N features fire together (module docstring: semantics, composition order)."""

    n_features: int
    """N, the number of features described."""
    correlation: tuple[tuple[float, ...], ...] | None = None
    """Full copula correlation C, N rows of N (symmetric, unit diagonal, PSD)."""
    blocks: tuple[tuple[int, ...], ...] = ()
    """Disjoint groups of features correlated pairwise by rho (the other way to give C)."""
    rho: float | tuple[float, ...] = 0.0
    """Correlation within every block, or one value per block."""
    parents: tuple[int, ...] | None = None
    """Parent index of each feature, -1 for a root; trees of any depth, no cycles."""
    conditional: float | tuple[float, ...] | None = None
    """P(child fires | parent fires): one value, or one per feature (roots' ignored)."""
    exclusive: tuple[tuple[int, ...], ...] = ()
    """Disjoint groups of features of which at most one fires per token."""
    zipf_exponent: float = 0.0
    """a in p_i <- p_i (i + 1)^(-a); 0 leaves the rates alone."""

    def __post_init__(self):
        for field in fields(self):
            object.__setattr__(self, field.name, _as_tuples(getattr(self, field.name)))
        layout(self)  # validates; cached for the samplers and moments

    @property
    def is_independent(self) -> bool:
        """True when features fire independently (Zipf rates allowed)."""
        return layout(self).independent


class Layout(NamedTuple):
    """A validated structure as arrays (read-only; cached per structure)."""
    C: np.ndarray            # [N, N] copula correlation (identity when none)
    correlated: tuple        # features with a nonzero off-diagonal correlation (K)
    component: np.ndarray    # [N] connected component of C's nonzero graph, -1 if none
    parent: np.ndarray       # [N] parent index, -1 for a root
    depth: int               # longest chain of parents (0: no hierarchy)
    chains: tuple            # chains[i]: i and its ancestors
    conditional: np.ndarray  # [N] P(child | parent) (1 for roots, unused)
    group: np.ndarray        # [N] exclusive group index, -1 if none
    zipf: np.ndarray         # [N] (i + 1)^(-a)
    independent: bool


def _fail(message: str):
    raise StructureError(message)


def _is_int(x) -> bool:  # bools are ints to Python, not here
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _is_real(x) -> bool:
    return _is_int(x) or isinstance(x, (float, np.floating))


def _probability(name: str, x) -> float:
    if not _is_real(x) or not 0 <= x <= 1:
        _fail(f"{name} must be a probability in [0, 1], got {x!r}")
    return float(x)


def _index_groups(name: str, groups, N: int) -> np.ndarray:
    """Validate disjoint groups of >= 2 feature indices; return each feature's group or -1."""
    if not isinstance(groups, tuple) or not all(isinstance(g, tuple) for g in groups):
        _fail(f"{name} must be a list of groups of feature indices, e.g. [[0, 1], [2, 3]]")
    owner = np.full(N, -1)
    for g, members in enumerate(groups):
        if len(members) < 2:
            _fail(f"{name} group {g} {list(members)} needs at least two features")
        for i in members:
            if not _is_int(i) or not 0 <= i < N:
                _fail(f"{name} group {g} has index {i!r}, outside 0..{N - 1} (n_features={N})")
            if owner[i] >= 0:
                _fail(f"feature {i} is in {name} groups {owner[i]} and {g}; groups must be "
                      "disjoint (merge them)")
            owner[i] = g
    return owner


def _correlation_matrix(s: FeatureStructure) -> np.ndarray:
    N = s.n_features
    if s.correlation is not None and s.blocks:
        _fail("give the correlation either as a full matrix or as blocks with rho, not both")
    if s.correlation is not None:
        try:
            C = np.array(s.correlation, dtype=np.float64)
        except (TypeError, ValueError):
            _fail("correlation must be N rows of N numbers")
        if C.shape != (N, N):
            _fail(f"correlation has shape {C.shape}, need ({N}, {N}) for n_features={N}")
    else:
        if not s.blocks and s.rho not in (0, ()):
            _fail("rho is given without blocks; give blocks=[[i, j, ...], ...] or drop rho")
        _index_groups("blocks", s.blocks, N)
        rhos = s.rho if isinstance(s.rho, tuple) else (s.rho,) * len(s.blocks)
        if len(rhos) != len(s.blocks):
            _fail(f"rho has {len(rhos)} values for {len(s.blocks)} blocks; give one or one per block")
        C = np.eye(N)
        for members, rho in zip(s.blocks, rhos):
            if not _is_real(rho) or not -1 <= rho <= 1:
                _fail(f"rho must be a correlation in [-1, 1], got {rho!r}")
            idx = np.array(members)
            C[np.ix_(idx, idx)] = rho
            C[idx, idx] = 1.0
    if not np.all(np.isfinite(C)):
        _fail("correlation has a non-finite entry; give finite numbers in [-1, 1]")
    i, j = np.unravel_index(np.abs(C - C.T).argmax(), C.shape)
    if abs(C[i, j] - C[j, i]) > 1e-12:
        _fail(f"correlation is not symmetric: C[{i}][{j}] = {C[i, j]} but C[{j}][{i}] = {C[j, i]}")
    for i in np.flatnonzero(np.abs(np.diag(C) - 1) > 1e-12)[:1]:
        _fail(f"correlation diagonal must be 1, got C[{i}][{i}] = {C[i, i]}")
    smallest = np.linalg.eigvalsh(C).min() if N else 0.0
    if smallest < -PSD_TOLERANCE:
        _fail(f"correlation is not positive semi-definite (smallest eigenvalue {smallest:.3g}); "
              "weaken the correlations (one rho in a block of n needs rho >= -1/(n-1))")
    return C


def _hierarchy(s: FeatureStructure):
    """(parent [N], depth, chains) of a validated, acyclic parents tuple."""
    N = s.n_features
    if s.parents is None:
        if s.conditional is not None:
            _fail("conditional is given without parents; give parents or drop conditional")
        return np.full(N, -1), 0, tuple((i,) for i in range(N))
    if not isinstance(s.parents, tuple) or len(s.parents) != N:
        _fail(f"parents must list one parent index (or -1) for each of the {N} features")
    for i, j in enumerate(s.parents):
        if not _is_int(j) or not -1 <= j < N or j == i:
            _fail(f"parents[{i}] = {j!r} must be -1 (a root) or another feature in 0..{N - 1}")
    parent = np.array(s.parents, dtype=np.int64)
    chains = []
    for i in range(N):
        chain = [i]
        while parent[chain[-1]] >= 0:
            nxt = int(parent[chain[-1]])
            if nxt in chain:
                cycle = chain[chain.index(nxt):] + [nxt]
                _fail("parents form a cycle " + " -> ".join(map(str, cycle))
                      + "; every chain of parents must end at a root (-1)")
            chain.append(nxt)
        chains.append(tuple(chain))
    depth = max(len(c) for c in chains) - 1
    if depth and s.conditional is None:
        _fail("parents are given without conditional; give P(child fires | parent fires)")
    return parent, depth, tuple(chains)


@lru_cache(maxsize=128)
def layout(s: FeatureStructure) -> Layout:
    """Validate `s` (StructureError on the first problem) and return it as arrays."""
    N = s.n_features
    if not _is_int(N) or N < 1:
        _fail(f"n_features must be a positive integer, got {N!r}")
    a = s.zipf_exponent
    if not _is_real(a) or not math.isfinite(a) or a < 0:
        _fail(f"zipf_exponent must be a finite number >= 0 (0 is off), got {a!r}")
    C = _correlation_matrix(s)
    parent, depth, chains = _hierarchy(s)
    cond = s.conditional if isinstance(s.conditional, tuple) else (s.conditional,) * N
    if len(cond) != N:
        _fail(f"conditional has {len(cond)} values for {N} features; give one or one per feature")
    conditional = np.ones(N)
    for i in np.flatnonzero(parent >= 0):
        conditional[i] = _probability(f"conditional[{i}]", cond[i])
    group = _index_groups("exclusive", s.exclusive, N)

    linked = (C != 0) & ~np.eye(N, dtype=bool)
    for i, chain in enumerate(chains):
        for k in chain[1:]:
            if linked[i, k]:
                _fail(f"feature {i} is correlated with its ancestor {k} (C = {C[i, k]:.3g}); "
                      "set it to 0, or conditional would not be P(child | parent)")
            if group[i] >= 0 and group[i] == group[k]:
                _fail(f"features {k} and {i} are in one exclusive group but {k} is an "
                      f"ancestor of {i}, which could then never fire")
    for i in np.flatnonzero((group >= 0) & linked.any(axis=1)):
        j = int(np.flatnonzero(linked[i])[0])
        _fail(f"exclusive feature {i} is correlated with feature {j} (C = {C[i, j]:.3g}); "
              "exclusive features must be uncorrelated (set it to 0)")

    component = np.full(N, -1)
    for i in np.flatnonzero(linked.any(axis=1)):
        if component[i] < 0:  # flood-fill a new component from i
            component[i], frontier = i, [i]
            while frontier:
                for j in np.flatnonzero(linked[frontier.pop()] & (component < 0)):
                    component[j] = i
                    frontier.append(j)
    zipf = np.arange(1, N + 1, dtype=np.float64) ** -float(a)
    for x in (C, component, parent, conditional, group, zipf):
        x.setflags(write=False)
    correlated = tuple(int(i) for i in np.flatnonzero(component >= 0))
    return Layout(C, correlated, component, parent, depth, chains, conditional, group, zipf,
                  independent=not correlated and depth == 0 and not s.exclusive)


def own_probabilities(s: FeatureStructure, p) -> np.ndarray:
    """q [N]: each feature's own-event probability (steps 1-3); checks p and group sums."""
    lay, N = layout(s), s.n_features
    p = np.asarray(p, dtype=np.float64)
    p = np.full(N, float(p)) if p.ndim == 0 else p
    if p.shape != (N,):
        _fail(f"p_active has {p.size} values but n_features={N}; give one value or {N}")
    for i in np.flatnonzero(~((p >= 0) & (p <= 1))):
        _probability(f"p_active[{i}]", p[i])
    q = np.where(lay.parent >= 0, lay.conditional, p * lay.zipf)
    for g, members in enumerate(s.exclusive):
        total = q[list(members)].sum()
        if total > 1 + 1e-12:
            _fail(f"exclusive group {g} {list(members)} has total rate {total:.4g} > 1; "
                  "lower the p_active or conditional of its features")
    return q


def marginal_rates(s: FeatureStructure, p) -> np.ndarray:
    """P(feature i fires) [N], float64, exact: q_i times q of each ancestor."""
    q = own_probabilities(s, p)
    return np.array([np.prod(q[list(chain)]) for chain in layout(s).chains])


@lru_cache(maxsize=128)
def has_closed_form(s: FeatureStructure) -> bool:
    """Whether second_moment is exact: no correlated component meets two ancestor chains
    in more than 2 features (always so with blocks, or without a hierarchy)."""
    lay = layout(s)
    if lay.depth == 0 or not lay.correlated:
        return True
    chains = [set(c) for c in lay.chains]
    for i in range(s.n_features):
        for j in range(i, s.n_features):
            shared = [lay.component[k] for k in chains[i] | chains[j] if lay.component[k] >= 0]
            if any(shared.count(c) > 2 for c in shared):
                return False
    return True


def second_moment(s: FeatureStructure, p) -> np.ndarray:
    """M = E[f fᵀ] [N, N], float64, exact: M_ii = P(i fires)/3, M_ij = P(i, j fire)/4."""
    if not has_closed_form(s):
        _fail("some pairs co-fire through >= 3 correlated features, which has no closed "
              "form; use estimate_second_moment")
    return _moment(s, p, abs_error=0.0)


def estimate_second_moment(s: FeatureStructure, p, abs_error: float = 1e-6) -> np.ndarray:
    """M [N, N] when some entries have no closed form: those integrate the Gaussian
    orthant by SciPy's randomized quasi-Monte Carlo (Genz) with a fixed seed, so the
    result is deterministic; each such P(i, j fire) is within abs_error at 3 standard
    errors (M_ij within abs_error / 4). The other entries are exact."""
    return _moment(s, p, abs_error=abs_error)


def _moment(s: FeatureStructure, p, abs_error: float) -> np.ndarray:
    from scipy.special import ndtri
    lay, q = layout(s), own_probabilities(s, p)
    chains, threshold, M = [set(c) for c in lay.chains], ndtri(q), np.empty((len(q),) * 2)
    for i, j in zip(*np.triu_indices(len(q))):
        both = _all_fire(lay, q, threshold, chains[i] | chains[j], abs_error)
        M[i, j] = M[j, i] = both / 3 if i == j else both / 4
    return M


def _all_fire(lay: Layout, q, threshold, features, abs_error: float) -> float:
    """P(E_k for every k in features): a product over groups, components and the rest."""
    probability, by_group, by_component = 1.0, {}, {}
    for k in features:
        if lay.group[k] >= 0:
            by_group.setdefault(lay.group[k], []).append(k)
        elif lay.component[k] >= 0:
            by_component.setdefault(lay.component[k], []).append(k)
        else:
            probability *= q[k]
    for members in by_group.values():
        probability *= q[members[0]] if len(members) == 1 else 0.0
    for members in by_component.values():
        idx = np.array(sorted(members))
        probability *= _orthant(lay.C[np.ix_(idx, idx)], threshold[idx], abs_error)
    return float(probability)


def _orthant(C: np.ndarray, t: np.ndarray, abs_error: float) -> float:
    """P(z < t) for z ~ N(0, C) with unit-diagonal C."""
    from scipy.special import ndtr
    if np.any(t == -np.inf):
        return 0.0
    keep = t < np.inf  # a threshold at +inf always holds
    C, t = C[np.ix_(keep, keep)], t[keep]
    if len(t) <= 1:
        return float(ndtr(t[0])) if len(t) else 1.0
    if len(t) == 2:
        return bivariate_normal_cdf(t[0], t[1], C[0, 1])
    from scipy.stats import multivariate_normal
    return float(multivariate_normal.cdf(
        t, cov=C, allow_singular=True, abseps=abs_error, releps=0.0,
        maxpts=1_000_000 * len(t), rng=np.random.default_rng(0)))


def bivariate_normal_cdf(h: float, k: float, r: float) -> float:
    """P(X < h, Y < k) for standard normals of correlation r, by Owen's T function
    (Owen 1956): exact to rounding, unlike a sampling estimate."""
    from scipy.special import ndtr, owens_t
    if r >= 1.0:
        return float(ndtr(min(h, k)))
    if r <= -1.0:
        return float(max(0.0, ndtr(h) + ndtr(k) - 1.0))
    s = math.sqrt((1.0 - r) * (1.0 + r))
    if h == 0 or k == 0:  # the general formula's limit as h (or k) -> 0
        x = k if h == 0 else h
        return float(0.5 * ndtr(x) + owens_t(x, r / s))
    beta = 0.0 if h * k > 0 else 0.5
    return float(0.5 * (ndtr(h) + ndtr(k)) - owens_t(h, (k - r * h) / (h * s))
                 - owens_t(k, (h - r * k) / (k * s)) - beta)
