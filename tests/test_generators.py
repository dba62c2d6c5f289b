"""Structured feature generators (tasks/generators.py) against their stated statistics
(tasks/structure.py): sampled rates and second moments within 5 standard errors of the
exact values, the structural invariants on every token, determinism, and one-line
refusals of bad parameters."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toymodels.errors import ConfigError
from toymodels.tasks import generators
from toymodels.tasks.features import sample_features
from toymodels.tasks.generators import sample_structured
from toymodels.tasks.structure import (FeatureStructure, StructureError, bivariate_normal_cdf,
                                       estimate_second_moment, has_closed_form,
                                       marginal_rates, second_moment)

TOKENS = 1 << 18
SIGMAS = 5.0
draw = jax.jit(sample_structured, static_argnums=(1, 3))


def sample(structure, p, seed=0, tokens=TOKENS):
    p = jnp.broadcast_to(jnp.float32(p) if np.ndim(p) == 0 else jnp.asarray(p, jnp.float32),
                         (structure.n_features,))
    return np.asarray(draw(jax.random.key(seed), structure, p, (tokens, structure.n_features)),
                      np.float64)


def assert_matches_statistics(f, structure, p, M=None):
    """Rates and E[f fᵀ] within SIGMAS standard errors; the errors come from the stated
    values (Bernoulli rates; Var f_i f_j = P_ij/9 - M_ij², Var f_i² = P_i/5 - M_ii²)."""
    n = len(f)
    rate = marginal_rates(structure, p)
    M = second_moment(structure, p) if M is None else M
    np.testing.assert_allclose(np.diag(M), rate / 3, rtol=1e-12)
    se_rate = np.sqrt(rate * (1 - rate) / n)
    assert np.all(np.abs((f > 0).mean(0) - rate) <= SIGMAS * se_rate + 1e-12), \
        ((f > 0).mean(0), rate)
    P = 4 * M
    np.fill_diagonal(P, rate)
    var = P / 9 - M ** 2
    np.fill_diagonal(var, rate / 5 - np.diag(M) ** 2)
    error = np.abs(f.T @ f / n - M)
    assert np.all(error <= SIGMAS * np.sqrt(np.clip(var, 0, None) / n) + 1e-12), \
        np.max(error / np.sqrt(var / n + 1e-30))


BLOCKS = FeatureStructure(8, blocks=((0, 1, 2), (3, 4), (5, 6)), rho=(0.6, -0.5, 1.0))
HIERARCHY = FeatureStructure(7, parents=(-1, 0, 1, 0, -1, 4, 5),
                             conditional=(1.0, 0.6, 0.5, 0.3, 1.0, 0.7, 0.8))
EXCLUSIVE = FeatureStructure(7, exclusive=((0, 2, 4), (1, 5)))
ZIPF = FeatureStructure(10, zipf_exponent=1.1)
# The richest composition: Zipf rates, two correlated blocks, a depth-2 tree whose
# siblings are exclusive, an exclusive group of roots, and a child of a correlated root.
RICH = FeatureStructure(
    12, zipf_exponent=0.4, blocks=((0, 1, 2), (3, 4)), rho=(0.5, -0.4),
    parents=(-1, -1, -1, -1, -1, 0, 0, 5, -1, -1, -1, 3),
    conditional=(1, 1, 1, 1, 1, 0.5, 0.4, 0.6, 1, 1, 1, 0.7),
    exclusive=((5, 6), (8, 9, 10)))


@pytest.mark.parametrize("structure, p", [
    (BLOCKS, 0.3), (HIERARCHY, 0.4), (EXCLUSIVE, (0.2, 0.3, 0.3, 0.1, 0.4, 0.5, 0.2)),
    (ZIPF, 0.5), (RICH, 0.35)], ids=["blocks", "hierarchy", "exclusive", "zipf", "rich"])
def test_sampled_rates_and_second_moment_match_the_stated_ones(structure, p):
    assert_matches_statistics(sample(structure, p), structure, p)


def test_full_correlation_matrix_matches_its_bivariate_normal_moments():
    rng = np.random.default_rng(3)
    A = rng.standard_normal((6, 3))
    C = A @ A.T + 0.2 * np.eye(6)
    C /= np.sqrt(np.outer(np.diag(C), np.diag(C)))  # a random correlation matrix
    structure = FeatureStructure(6, correlation=C.tolist())
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert_matches_statistics(sample(structure, p), structure, p)


def test_composition_without_closed_form_uses_the_stated_estimator():
    # 1 is 0's child; 2 correlates with both, so P(1, 2 fire) is a 3-D normal orthant.
    C = [[1, 0, 0.5], [0, 1, 0.5], [0.5, 0.5, 1]]
    structure = FeatureStructure(3, correlation=C, parents=(-1, 0, -1), conditional=0.5)
    assert not has_closed_form(structure)
    with pytest.raises(StructureError, match="estimate_second_moment"):
        second_moment(structure, 0.4)
    M = estimate_second_moment(structure, 0.4, abs_error=1e-6)
    np.testing.assert_array_equal(M, estimate_second_moment(structure, 0.4, abs_error=1e-6))
    assert_matches_statistics(sample(structure, 0.4), structure, 0.4, M=M)


def test_child_never_fires_without_its_parent_and_groups_fire_at_most_once():
    for structure in (HIERARCHY, EXCLUSIVE, RICH):
        fires = sample(structure, 0.3, seed=7) > 0
        parents = structure.parents or (-1,) * structure.n_features
        for child, parent in enumerate(parents):
            if parent >= 0:
                assert not np.any(fires[:, child] & ~fires[:, parent]), (child, parent)
        for group in structure.exclusive:
            assert fires[:, list(group)].sum(axis=1).max() == 1


def test_zipf_rates_follow_the_power_law_of_feature_zero_rate():
    rates = marginal_rates(ZIPF, 0.5)
    np.testing.assert_allclose(rates, 0.5 * np.arange(1, 11) ** -1.1)
    key, p = jax.random.key(4), jnp.full(10, 0.5)
    np.testing.assert_array_equal(  # Zipf alone only rescales the rates sample_features gets
        sample_structured(key, ZIPF, p, (64, 10)),
        sample_features(key, p * jnp.asarray(np.arange(1, 11) ** -1.1, jnp.float32), (64, 10)))


@pytest.mark.parametrize("shape", [(512, 20), (64, 8, 20)])
def test_trivial_structure_returns_sample_features_bit_for_bit(shape):
    key = jax.random.key(11)
    for structure in (FeatureStructure(20), FeatureStructure(20, parents=(-1,) * 20),
                      FeatureStructure(20, blocks=((0, 1),), rho=0.0)):
        assert structure.is_independent
        for p in (0.1, jnp.linspace(0.05, 0.9, 20)):
            np.testing.assert_array_equal(sample_structured(key, structure, p, shape),
                                          sample_features(key, p, shape))
    # and inside the jitted, vmapped training shape, with per-instance rates
    keys = jax.random.split(key, 4)
    ps = jnp.linspace(0.05, 0.5, 4)[:, None] * jnp.ones((4, 20))
    ours = jax.jit(jax.vmap(lambda k, p: sample_structured(k, FeatureStructure(20), p, shape)))
    theirs = jax.jit(jax.vmap(lambda k, p: sample_features(k, p, shape)))
    np.testing.assert_array_equal(ours(keys, ps), theirs(keys, ps))


@pytest.mark.parametrize("structure", [RICH, FeatureStructure(12)], ids=["rich", "trivial"])
def test_draws_are_a_function_of_the_key_alone(structure):
    keys = jax.random.split(jax.random.key(5), 8)
    ps = jnp.linspace(0.2, 0.4, 8)[:, None] * jnp.ones((8, 12))  # per-instance rates

    def instances(n):
        run = jax.jit(jax.vmap(lambda k, p: sample_structured(k, structure, p, (256, 4, 12))))
        return np.asarray(run(keys[:n], ps[:n]))
    one, eight = instances(1), instances(8)
    np.testing.assert_array_equal(one[0], eight[0])
    # alone, not vmapped (jitted: op-by-op eager evaluation fuses nothing, and may round
    # a per-token rate differently in the last bit)
    again = draw(keys[0], structure, ps[0], (256, 4, 12))
    np.testing.assert_array_equal(again, one[0])
    assert not np.array_equal(eight[0], eight[1])


@pytest.mark.parametrize("structure", [
    RICH, BLOCKS, HIERARCHY, EXCLUSIVE, FeatureStructure(4, blocks=((0, 1),), rho=1e-20)],
    ids=["rich", "blocks", "hierarchy", "exclusive", "rank-0 copula"])
def test_both_assembly_paths_give_the_same_values(structure, monkeypatch):
    def run():  # a fresh jit each time, so the path is chosen anew
        return np.asarray(jax.jit(lambda k: sample_structured(
            k, structure, jnp.full(structure.n_features, 0.3), (128, 9, structure.n_features)))(
            jax.random.key(2)))
    row_by_row = run()
    monkeypatch.setattr(generators, "ROW_BY_ROW_MAX_FEATURES", 0)
    vectorised = run()
    np.testing.assert_array_equal(vectorised > 0, row_by_row > 0)
    # XLA may round a per-token rate (erf) differently in the two fusions (its last
    # bit, so a magnitude u / rate by up to ~1e-7 / rate)
    np.testing.assert_allclose(vectorised, row_by_row, rtol=1e-4, atol=0)


def test_bivariate_normal_cdf_is_exact():
    from scipy.stats import multivariate_normal
    rng = np.random.default_rng(0)
    for h, k, r in zip(rng.normal(0, 1.5, 300), rng.normal(0, 1.5, 300),
                       rng.uniform(-0.999, 0.999, 300)):
        for h_, k_ in ((h, k), (0.0, k), (h, 0.0)):
            # SciPy's 2-D path is Genz's deterministic bivariate algorithm (not QMC)
            expected = multivariate_normal.cdf([h_, k_], cov=[[1, r], [r, 1]])
            assert abs(bivariate_normal_cdf(h_, k_, r) - expected) < 1e-13
    for r in (-0.9, -0.2, 0.0, 0.7):
        assert abs(bivariate_normal_cdf(0.0, 0.0, r) - (0.25 + np.arcsin(r) / (2 * np.pi))) < 1e-15
    assert bivariate_normal_cdf(0.3, -0.2, 1.0) == pytest.approx(0.42074029056089696)
    from scipy.special import ndtr
    assert bivariate_normal_cdf(0.3, 0.2, -1.0) == ndtr(0.3) + ndtr(0.2) - 1


def psd_violation():
    return dict(blocks=((0, 1, 2),), rho=-0.6)


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(correlation=((1, 0.9, 0.9), (0.9, 1, -0.9), (0.9, -0.9, 1))), "positive semi-definite"),
    (psd_violation(), "positive semi-definite"),
    (dict(correlation=((1, 0.2, 0), (0.3, 1, 0), (0, 0, 1))), "not symmetric"),
    (dict(correlation=((2, 0, 0), (0, 1, 0), (0, 0, 1))), "diagonal must be 1"),
    (dict(correlation=((1, 0), (0, 1))), "shape"),
    (dict(blocks=((0, 1),), rho=1.5), "rho must be a correlation"),
    (dict(parents=(-1, 0, 1), conditional=1.2), "probability in [0, 1]"),
    (dict(parents=(-1, 0, 1), conditional=(1, -0.1, 0.5)), "probability in [0, 1]"),
    (dict(parents=(2, 0, 1), conditional=0.5), "cycle"),
    (dict(parents=(-1, 0, 4), conditional=0.5), "parents[2] = 4"),
    (dict(parents=(-1, 0), conditional=0.5), "one parent index"),
    (dict(parents=(-1, 0, 0)), "without conditional"),
    (dict(conditional=0.5), "without parents"),
    (dict(blocks=((0, 3),), rho=0.5), "outside 0..2"),
    (dict(exclusive=((0, 5),)), "outside 0..2"),
    (dict(exclusive=((0, 1), (1, 2))), "must be disjoint"),
    (dict(blocks=((0, 1), (1, 2)), rho=0.2), "must be disjoint"),
    (dict(exclusive=((0,),)), "at least two"),
    (dict(blocks=((0, 1),), rho=0.5, parents=(-1, 0, -1), conditional=0.5), "ancestor 0"),
    (dict(blocks=((0, 1),), rho=0.5, exclusive=((1, 2),)), "exclusive feature 1"),
    (dict(parents=(-1, 0, -1), conditional=0.5, exclusive=((0, 1),)), "could then never"),
    (dict(correlation=((1, 0, 0),) * 3, blocks=((0, 1),)), "not both"),
    (dict(rho=0.4), "without blocks"),
    (dict(blocks=((0, 1),), rho=(0.1, 0.2)), "one per block"),
    (dict(zipf_exponent=-1.0), "zipf_exponent"),
])
def test_bad_parameters_are_refused_in_one_line(kwargs, fragment):
    with pytest.raises(StructureError) as caught:
        FeatureStructure(3, **kwargs)
    message = str(caught.value)
    assert fragment in message and "\n" not in message, message
    assert isinstance(caught.value, ConfigError) and isinstance(caught.value, ValueError)


@pytest.mark.parametrize("structure, p, fragment", [
    (FeatureStructure(3), 1.5, "p_active[0] must be a probability"),
    (FeatureStructure(3), (0.1, -0.2, 0.1), "p_active[1]"),
    (FeatureStructure(3), (0.1, 0.2), "p_active has 2 values"),
    (FeatureStructure(3, exclusive=((0, 1, 2),)), 0.4, "total rate 1.2 > 1"),
])
def test_bad_rates_are_refused_in_one_line(structure, p, fragment):
    with pytest.raises(StructureError, match=fragment.replace("[", r"\[")) as caught:
        marginal_rates(structure, p)
    assert "\n" not in str(caught.value)


def test_structure_is_hashable_and_takes_lists():
    a = FeatureStructure(4, blocks=[[0, 1]], rho=0.3, exclusive=[[2, 3]])
    b = FeatureStructure(4, blocks=((0, 1),), rho=0.3, exclusive=((2, 3),))
    assert a == b and hash(a) == hash(b) and {a: 1}[b] == 1


def test_structure_module_does_not_load_jax():
    code = ("import sys, toymodels.tasks.structure as s; s.second_moment("
            "s.FeatureStructure(3, blocks=((0, 1),), rho=0.5), 0.2); "
            "assert 'jax' not in sys.modules, 'jax loaded'")
    subprocess.run([sys.executable, "-c", code], check=True)


@settings(max_examples=8, deadline=None)
@given(st.data())
def test_random_psd_blocks_keep_the_stated_rates(data):
    N = data.draw(st.integers(4, 9))
    order = data.draw(st.permutations(range(N)))
    cuts = sorted(data.draw(st.sets(st.integers(1, N - 1), max_size=3)))
    blocks = [tuple(order[a:b]) for a, b in zip([0] + cuts, cuts + [N]) if b - a >= 2]
    # one rho per block, within the PSD range [-1/(n-1), 1]
    rho = tuple(data.draw(st.floats(-1 / (len(b) - 1), 1.0)) for b in blocks)
    p = np.array(data.draw(st.lists(st.floats(0.05, 0.95), min_size=N, max_size=N)))
    structure = FeatureStructure(N, blocks=tuple(blocks), rho=rho)
    assert_matches_statistics(sample(structure, p, tokens=1 << 16), structure, p)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_random_parents_are_accepted_exactly_when_acyclic(data):
    N = data.draw(st.integers(1, 8))
    parents = tuple(data.draw(st.lists(st.integers(-1, N - 1), min_size=N, max_size=N)))
    acyclic = True
    for i in range(N):
        seen, j = set(), i
        while j >= 0 and acyclic:
            if j in seen or parents[j] == j:
                acyclic = False
            seen.add(j)
            j = parents[j]
    try:
        FeatureStructure(N, parents=parents, conditional=0.5)
    except StructureError as error:
        assert not acyclic and "\n" not in str(error)
    else:
        assert acyclic
