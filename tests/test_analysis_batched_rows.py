"""The batched tables equal the per-head definitions (head_rows.py), value for value."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from toymodels.analysis.batched_rows import assign, table_rows
from toymodels.analysis.batched_rows import sv_blocks as batched_sv_blocks
from toymodels.analysis.head_rows import block_columns, head_rows, match, sv_blocks


def scores(rng, shape, ties: bool):
    """Non-negative scores; with ties, from four levels, so rows share best columns and
    maxima repeat (the cases the Hungarian fallback exists for)."""
    if ties:
        return rng.choice(np.array([0.0, 0.25, 0.5, 1.0], np.float32), size=shape)
    return rng.random(shape, dtype=np.float32)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), F=st.integers(0, 7), K=st.integers(1, 7),
       ties=st.booleans())
def test_assign_is_the_hungarian_assignment_of_each_head(seed, F, K, ties):
    rng = np.random.default_rng(seed)
    B = 40
    score = scores(rng, (B, F, K), ties)
    n_cols = rng.integers(0, K + 1, size=B)
    got = assign(score, n_cols)
    for b in range(B):
        expected = match(score[b][:, :n_cols[b]]) if n_cols[b] else np.full(F, -1)
        np.testing.assert_array_equal(got[b], expected)


def test_assign_takes_the_shortcut_only_where_it_is_the_optimum():
    # Two rows whose best column is the same: the optimum gives one of them its second best.
    score = np.array([[[0.9, 0.8], [0.7, 0.1]]], np.float32)
    assert assign(score, np.array([2])).tolist() == [[1, 0]]
    # Three rows, one column: the column takes its best row.
    score = np.array([[[0.2], [0.9], [0.5]]], np.float32)
    assert assign(score, np.array([1])).tolist() == [[-1, 0, -1]]


def synthetic_core(rng, B, N, K, P_q, P_k, ties):
    """A core as svd.circuit_core returns it, with chosen spectra: some heads with no
    significant direction, some with fewer than there are pairs."""
    n_sig = rng.integers(0, K + 1, size=B)
    S = np.sort(rng.random((B, K), dtype=np.float32) + 0.5, axis=1)[:, ::-1].copy()
    if ties:  # near-equal and equal singular values: blocks (1.0 and 0.995 are 0.5% apart)
        levels = np.array([1.0, 0.995, 0.7, 0.5], np.float32)
        S = np.sort(rng.choice(levels, size=(B, K)), axis=1)[:, ::-1].copy()
    S[n_sig == 0] = 0.0
    core = {"S": S, "significant": np.arange(K) < n_sig[:, None]}
    for name in ("cos_u", "cos_v", "cos_u_rot", "cos_v_rot"):
        core[name] = scores(rng, (B, N, K), ties)
    core["principal_cos_query"] = rng.random((B, min(P_q, K)), dtype=np.float32)
    core["principal_cos_key"] = rng.random((B, min(P_k, K)), dtype=np.float32)
    return core


def assert_rows_equal(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert list(g) == list(e)  # same columns, same order
        for key in e:
            a, b = g[key], e[key]
            if not isinstance(b, float):  # None, bool, int, str: exactly
                assert a == b and type(a) is type(b), (key, a, b)
            else:
                assert isinstance(a, float) and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), \
                    (key, a, b)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), K=st.integers(1, 6), n_pairs=st.integers(0, 5),
       ties=st.booleans(), dead_kind=st.sampled_from(["none", "shared", "per_head"]),
       block_gap=st.sampled_from([0.0, 1e-2, 0.5]))
def test_batched_rows_equal_the_per_head_rows(seed, K, n_pairs, ties, dead_kind, block_gap):
    rng = np.random.default_rng(seed)
    B, N = 30, 8
    pairs = rng.choice(N * N, size=n_pairs, replace=False)
    template = tuple((int(p // N), int(p % N), float(v))
                     for p, v in zip(pairs, rng.choice([0.5, 1.0, 2.0, 3.0], n_pairs)))
    query_set = tuple(dict.fromkeys(i for i, _, _ in template))
    key_set = tuple(dict.fromkeys(j for _, j, _ in template))
    core = synthetic_core(rng, B, N, K, len(query_set), len(key_set), ties)
    dead = np.zeros((B, N), bool)
    if dead_kind == "shared":
        dead[:, rng.integers(N)] = True
    elif dead_kind == "per_head":
        dead[rng.random((B, N)) < 0.15] = True
    for name in ("cos_u", "cos_v", "cos_u_rot", "cos_v_rot"):  # as analyze() leaves them
        core[name] = np.where(dead[..., None], 0.0, core[name]).astype(np.float32)
    where = {"head": list(range(B)), "circuit": ["qk"] * B}

    heads, pair_rows = table_rows(core, template, query_set, key_set, dead, where, block_gap)

    expected_heads, expected_pairs = [], []
    for b in range(B):
        row, rows = head_rows({k: v[b] for k, v in core.items()}, template, query_set,
                              key_set, dead[b], block_gap)
        expected_heads.append({"head": b, "circuit": "qk", **row})
        expected_pairs.extend({"head": b, "circuit": "qk", **p} for p in rows)
    assert_rows_equal(heads, expected_heads)
    assert_rows_equal(pair_rows, expected_pairs)


def test_blocks_of_a_chosen_spectrum():
    """Neighbours within 1% (relative to the larger) share a block; null directions
    (not significant at rel_tol 0.01) are one block; the batched ids equal the per-head ones."""
    S = np.array([3.0, 2.99, 1.0, 0.5, 0.496, 0.05, 0.001, 0.0])
    sig = S > 0.01 * S[0]
    expected = [0, 0, 1, 2, 2, 3, 4, 4]
    assert sv_blocks(S, sig).tolist() == expected
    assert batched_sv_blocks(S[None], sig[None]).tolist() == [expected]
    assert sv_blocks(S, sig, block_gap=0.0).tolist() == [0, 1, 2, 3, 4, 5, 6, 6]
    assert block_columns(sv_blocks(S, sig), sig) == ("0 0 1 2 2 3 4 4", 4)
