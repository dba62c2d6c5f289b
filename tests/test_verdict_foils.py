"""A foil beside every alignment verdict the transformer, toy and sweep tables print (issue 19,
item 1): the random twin (families.random_twin: the head's own singular values, Haar-random
singular vectors) is measured exactly as the head is, and must fail the verdict the trained
head passes. Known answers for the foil itself (the sphere law of a random direction's
|cos|, the spectrum it keeps, a space too small for any check), then short trained runs of
each family where the trained head passes and its foil is rejected, in records, sweep rows
and the printed tables."""

import copy
import re

import numpy as np
import pytest
from scipy import stats

from helpers import orthonormal
from toymodels.configs import TRANSFORMER_PRESETS, make_instances, preset
from toymodels.families import (ALIGNED, FOIL_QUANTILE, foil_passes, measure, random_twin)

# ---- the foil itself: known answers -------------------------------------------------------


def _sphere_quantile(D, q, sides=1):
    """The q-quantile of min over `sides` independent |cos| between a fixed unit vector and a
    uniform random one in R^D: c² ~ Beta(1/2, (D−1)/2), so P(min >= t) = P(|c| >= t)^sides."""
    tail = (1 - q) ** (1 / sides)
    return float(np.sqrt(stats.beta.isf(tail, 0.5, (D - 1) / 2)))


@pytest.mark.parametrize("D", [8, 32])
def test_random_twin_of_a_rank_one_head_follows_the_sphere_law(D):
    """Ω = 5 E_0 E_1ᵀ: the head itself aligns exactly; its twin has one significant singular
    pair, uniform on the sphere on each side, so its matched |cos| (the min of both sides)
    has a known quantile, and each side's another."""
    E = orthonormal(np.random.default_rng(0), D, D)
    Omega = 5 * np.outer(E[:, 0], E[:, 1])
    foil = random_twin(E, Omega, [(0, 1, 1.0)], n_draws=4000, seed=0)
    assert foil["matched"] == pytest.approx(_sphere_quantile(D, FOIL_QUANTILE, sides=2), abs=0.02)
    assert foil["min_matched"] == foil["matched"]  # one pair
    for side in ("cos_query_u", "cos_key_v"):
        assert foil[side] == pytest.approx(_sphere_quantile(D, FOIL_QUANTILE), abs=0.02)
    assert foil["n_matched"] == 1 and foil["n_aligned"] == 0
    assert foil_passes(foil["matched"]) is False


def test_random_twin_keeps_the_spectrum_so_a_pairs_count_cannot_reject_it():
    """Rank 3 (σ = 3, 2, 1) planted on three pairs, judged against five: the head matches
    three pairs, all aligned; the twin matches three too (the count depends on the spectrum
    alone, the defect the toy table flags on "pairs"), but aligns none."""
    import toymodels

    D, N = 24, 12
    E = orthonormal(np.random.default_rng(1), D, N)
    template = [(p, 6 + p, 1.0) for p in range(5)]
    W_Q = np.stack([np.sqrt(3 - p) * E[:, p] for p in range(3)])  # [H = 3, D]
    W_K = np.stack([np.sqrt(3 - p) * E[:, 6 + p] for p in range(3)])
    (head,) = toymodels.analyze(E, W_Q=W_Q, W_K=W_K, template=template).heads
    assert head["n_pairs_matched"] == 3 and head["n_significant"] == 3
    foil = random_twin(E, W_Q.T @ W_K, template, seed=3)
    assert foil["n_matched"] == head["n_pairs_matched"]  # the count's foil passes
    assert foil["n_aligned"] == 0 and foil["matched"] < ALIGNED
    assert foil["min_matched"] == 0  # two pairs left without an index count 0


def test_random_twin_is_seeded_and_unmeasured_for_a_zero_head():
    E = orthonormal(np.random.default_rng(2), 16, 16)
    Omega = np.outer(E[:, 0], E[:, 1]) + 0.5 * np.outer(E[:, 2], E[:, 3])
    template = [(0, 1, 1.0), (2, 3, 0.5)]
    assert random_twin(E, Omega, template, seed=4) == random_twin(E, Omega, template, seed=4)
    assert random_twin(E, Omega, template, seed=4) != random_twin(E, Omega, template, seed=5)
    zero = random_twin(E, np.zeros((16, 16)), template)
    assert set(zero.values()) == {None} and foil_passes(zero["matched"]) is None


def test_a_foil_passes_where_the_space_leaves_no_room_and_the_tables_flag_it():
    """In one dimension every direction is every feature: the twin aligns as well as the
    head, so the verdict rejects nothing, and the flag says so."""
    E = np.array([[1.0, -2.0]])  # D = 1, N = 2
    foil = random_twin(E, np.array([[3.0]]), [(0, 1, 1.0)])
    assert foil["matched"] == pytest.approx(1) and foil_passes(foil["matched"]) is True


# ---- trained runs: the head passes each verdict, its foil is rejected ---------------------

SHORT = dict(steps=200, batch_size=64, chunk_steps=100, record_points=0, learning_rate=1e-2)
"""Long enough for both families to align at these sizes (seconds), no dynamics."""


@pytest.fixture(scope="module")
def transformer_measured():
    """A one-head retrieval transformer trained 200 steps, seeds 0-1, measured as a run and a
    sweep measure it: (cfg, Measured)."""
    from toymodels.training.loop import train
    cfg = TRANSFORMER_PRESETS["transformer-retrieval"].replace(n_heads=1, **SHORT)
    instances = make_instances(cfg, [0, 1])
    measured, diverged = measure(cfg, instances, train(cfg, instances, progress=False))
    assert diverged == [None, None]
    return cfg, measured


@pytest.fixture(scope="module")
def toy_measured():
    """The paper's one-pair toy (N = 20, D = 10) trained 200 steps, seeds 0-1: (cfg, Measured)."""
    from toymodels.training.loop import train
    cfg = preset("single-pair").replace(**SHORT)
    instances = make_instances(cfg, [0, 1])
    measured, diverged = measure(cfg, instances, train(cfg, instances, progress=False))
    assert diverged == [None, None]
    return cfg, measured


@pytest.mark.parametrize("circuit", ["qk", "ov"])
def test_transformer_head_passes_and_its_random_twin_fails(transformer_measured, circuit):
    cfg, measured = transformer_measured
    for record, row in zip(measured.records, measured.rows):
        (head,) = record["heads"]
        assert head["accuracy"] >= 0.9
        assert head[f"{circuit}_matched"] >= ALIGNED  # the verdict passes
        assert head[f"{circuit}_foil_matched"] < ALIGNED  # its foil fails it
        assert head[f"{circuit}_foil_passes"] is False
        # the sweep row carries the best head's foil beside its verdict
        assert row[f"best_{circuit}_foil_matched"] == head[f"{circuit}_foil_matched"]
        assert row[f"best_{circuit}_matched"] == head[f"{circuit}_matched"]
    if circuit == "qk":  # rank one: the twin's quantile is the sphere law's (D = 16)
        for record in measured.records:
            (head,) = record["heads"]
            assert head["qk_n_significant"] == 1
            assert head["qk_foil_matched"] < _sphere_quantile(cfg.D, 0.99, sides=2)
            # the rotated twin cannot judge rank one: it is the head itself, so no foil
            assert head["qk_baseline_high"] == pytest.approx(head["qk_matched"], abs=1e-4)
            assert head["qk_rotated_passes"] is None


def test_transformer_table_prints_each_foil_beside_its_verdict_and_flags_a_passing_one(
        transformer_measured):
    from toymodels.families.transformer import table
    _, measured = transformer_measured
    summary = {"instances": copy.deepcopy(measured.records)}
    text = table(summary)
    header, _, first = text.splitlines()[:3]
    assert re.search(r"QK match\s+foil\s+OV match\s+foil\s+solving", header)
    (head,) = measured.records[0]["heads"]
    assert f"{head['qk_matched']:.3f} {head['qk_foil_matched']:>6.3f}" in first
    assert "!" not in text and "foil: a random twin" in text
    summary["instances"][0]["heads"][0] |= {"ov_foil_matched": 0.95, "ov_foil_passes": True}
    flagged = table(summary)
    assert "0.950!" in flagged and "the check cannot reject it" in flagged
    assert "rotated twin" not in flagged  # rank one: no rotated foil to report
    summary["instances"][1]["heads"][0]["qk_rotated_passes"] = True  # as a RoPE head's
    assert "reaches QK >= 0.9 in 1 of 1 best heads of rank > 1" in table(summary)
    for inst in summary["instances"]:  # a run stored before foils: "-", no footnote
        for h in inst["heads"]:
            for key in [k for k in h if "foil" in k]:
                del h[key]
    old = table(summary)
    assert "foil: a random twin" not in old and " - " in old.splitlines()[2]


def test_toy_head_passes_and_its_random_twin_fails(toy_measured):
    _, measured = toy_measured
    for record, row in zip(measured.records, measured.rows):
        assert record["n_pairs_aligned"] == 1 and record["min_matched_cos"] >= ALIGNED
        assert record["foil_min_matched_cos"] < ALIGNED
        assert record["foil_n_pairs_aligned"] == 0 and record["foil_passes_aligned"] is False
        # the pairs count cannot reject the twin: flagged as the check's defect
        assert record["foil_n_pairs_matched"] == record["n_pairs_matched"] == 1
        assert record["foil_passes_pairs"] is True
        for key in ("foil_min_matched_cos", "n_pairs_aligned", "foil_passes_aligned"):
            assert row[key] == record[key]


def test_toy_table_prints_the_foil_and_flags_the_pairs_count(toy_measured):
    from toymodels.families.toy import table
    cfg, measured = toy_measured
    summary = {"config": cfg.to_dict(),
               "instances": [r | {"overrides": {}} for r in copy.deepcopy(measured.records)]}
    lines = table(summary).splitlines()
    assert lines[0].split()[-4:] == ["aligned", "foil", "align>0.9@", "interf<0.1@"]
    rec = measured.records[0]
    assert "1!" in lines[2].split() and "1/1" in lines[2].split()
    assert f"{rec['foil_min_matched_cos']:.3f}" in lines[2].split()
    assert "pairs (a random twin with the same spectrum matches as many)" in lines[-1]
    summary["instances"][0] |= {"foil_min_matched_cos": 0.93, "foil_passes_aligned": True}
    assert "0.930!" in table(summary)


def test_sweep_rows_and_table_carry_the_foil(tmp_path):
    """A sweep of the one-pair toy: results.parquet loads in pandas with the foil beside each
    row's alignment; the table prints its mean and how many rows it would pass."""
    import pandas as pd

    from toymodels.sweep import SweepSpec, run_sweep, sweep_table
    spec = SweepSpec(preset="single-pair", seeds=(0, 1), set=dict(SHORT))
    run_sweep(spec, tmp_path / "sweep", progress=False)
    rows = pd.read_parquet(tmp_path / "sweep" / "results.parquet")
    assert (rows["min_matched_cos"] >= ALIGNED).all()
    assert (rows["foil_min_matched_cos"] < ALIGNED).all()
    assert not rows["foil_passes_aligned"].any() and rows["foil_passes_pairs"].all()
    text = sweep_table(tmp_path / "sweep")
    header, line = text.splitlines()[:2]
    assert header.split()[-3:] == ["foil", "foil", "passes"]
    assert line.split()[-2:] == [f"{rows['foil_min_matched_cos'].mean():.4f}", "0/2"]
    assert "!" not in text
    rows.loc[0, "foil_min_matched_cos"] = 0.95  # a foil that passes: flagged
    rows.to_parquet(tmp_path / "sweep" / "results.parquet")
    flagged = sweep_table(tmp_path / "sweep")
    assert flagged.splitlines()[1].split()[-1] == "1/2!" and "cannot reject" in flagged
    rows.drop(columns=[c for c in rows if c.startswith("foil_")]).to_parquet(
        tmp_path / "sweep" / "results.parquet")  # stored before foils: "-", and why
    old = sweep_table(tmp_path / "sweep")
    assert old.splitlines()[1].split()[-2:] == ["-", "-"] and "no foil_min" in old
