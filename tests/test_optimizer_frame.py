"""The optimizer x frame study's measurements (toymodels.plots.studies, experiments/
optimizer_frame.py): self score, off-template share (plain and centred) and the centred span
on planted Ω with known answers; the foil (a random head of the same rank and norm) fails
every verdict; rows from stored tiny runs of the RoPE and multi-pair presets."""

import shutil
import subprocess
import sys

import numpy as np
import pytest

from helpers import REPO, TRANSFORMER_ARGS, copy_run
from toymodels.plots.studies import (ALIGNED, feature_omega, matched_cosines,
                                     off_template_share, optimizer_frame_measure, ov_gain,
                                     pair_strengths, predicted_query_span, random_head_like,
                                     self_score, side_weights, span_cosines)


def _frame(D, seed=0):
    return np.linalg.qr(np.random.default_rng(seed).standard_normal((D, D)))[0]


def _centred_block(N, pairs, strengths, shifts):
    """Ω_f with row q_p's key block a_p (e_p − 1/P) plus a free shift of every key column
    of every row (what the multi-pair task cannot see)."""
    P, keys = len(pairs), [k for _, k, _ in pairs]
    Om = np.zeros((N, N))
    for p, ((q, _, _), a) in enumerate(zip(pairs, strengths)):
        t = np.full(P, -1.0 / P)
        t[p] += 1
        Om[q, keys] = a * t
    Om[:, keys] += np.asarray(shifts)[:, None]
    return Om


PAIRS = ((0, 4, 1.0), (1, 5, 0.8), (2, 6, 0.6), (3, 7, 0.4))


def test_self_score_and_plain_off_template_share_on_a_planted_head():
    N, H, a, b = 8, 4, 3.0, -1.5
    Om = np.zeros((N, N))
    Om[0, 1], Om[0, 0] = a, b
    assert self_score(Om, [0], H) == pytest.approx(b / 2)
    assert off_template_share(Om, ((0, 1, 1.0),)) == pytest.approx(abs(b) / np.hypot(a, b))
    Om[0, 0] = 0
    assert off_template_share(Om, ((0, 1, 1.0),)) == 0


def test_centred_off_template_share_ignores_what_the_task_leaves_free():
    N = 10
    shifts = np.random.default_rng(1).normal(size=N)
    Om = _centred_block(N, PAIRS, [2.0, 1.5, 1.0, 0.7], shifts)
    assert off_template_share(Om, PAIRS, centred=True) == pytest.approx(0, abs=1e-12)
    # the plain share counts the shifts and the centring against the head
    assert off_template_share(Om, PAIRS) > 0.5
    clean = _centred_block(N, PAIRS, [2.0, 1.5, 1.0, 0.7], np.zeros(N))
    d = 0.9
    Om[0, 9] = d  # a background key feature: outside the template, whatever the centring
    expected = d / np.sqrt(np.sum(clean ** 2) + d ** 2)
    assert off_template_share(Om, PAIRS, centred=True) == pytest.approx(expected)
    with pytest.raises(ValueError):
        off_template_share(Om, PAIRS[:1], centred=True)


def test_span_cosines_known_answers():
    D = N = 12
    E = _frame(D)
    q, k = [p[0] for p in PAIRS], [p[1] for p in PAIRS]
    # the centred block in the residual stream, plus a smaller shift along the mean key
    Om_f = _centred_block(N, PAIRS, [2.0] * 4, np.zeros(N))
    Om_f[9, k] += 0.3  # a feature outside the query span raises every key alike
    assert span_cosines(E, E @ Om_f @ E.T, PAIRS) == pytest.approx((1.0, 1.0), abs=1e-9)
    # unequal strengths a_p: the rows still sum to zero over 1/a_p, so the key side stays
    # the centred span while the query side's null vector is 1/a, not the mean: its
    # smallest principal cosine is cos∠(1/a, 1)
    a = np.array([2.0, 1.5, 1.0, 0.7])
    Om_f = _centred_block(N, PAIRS, a, np.zeros(N))
    expected = np.sum(1 / a) / (2 * np.linalg.norm(1 / a))
    assert span_cosines(E, E @ Om_f @ E.T, PAIRS) == pytest.approx((expected, 1.0), abs=1e-9)
    np.testing.assert_allclose(pair_strengths(Om_f, PAIRS), a)
    assert predicted_query_span(pair_strengths(Om_f, PAIRS)) == pytest.approx(expected)
    assert predicted_query_span([1.0, -1.0]) is None
    # two pairs, the raw first pair alone: the centred direction E_0 − E_1 is at 45°
    two = ((q[0], k[0], 1.0), (q[1], k[1], 1.0))
    raw = np.outer(E[:, q[0]], E[:, k[0]])
    assert span_cosines(E, raw, two) == pytest.approx((2 ** -0.5, 2 ** -0.5))


def test_side_weights_locate_a_sides_shortfall():
    from types import SimpleNamespace

    D = 8
    E = _frame(D, seed=2)
    cfg = SimpleNamespace(queries=(0,), keys=(1,), value_features=(2, 3),
                          background=(4, 5, 6, 7))
    # u₁ = E_0, v₁ = (3 E_1 − 4 E_0 ... normalised): a self term on the key side
    Omega = np.outer(E[:, 0], 0.6 * E[:, 1] - 0.8 * E[:, 0])
    w = side_weights(E, Omega, cfg)
    assert w["u_query"] == pytest.approx(1) and w["v_key"] == pytest.approx(0.36)
    assert w["v_query"] == pytest.approx(0.64) and w["v_values"] == pytest.approx(0, abs=1e-12)
    # two pairs of singular vectors, averaged: u on query 0 and background 4, v on key 1, value 2
    w = side_weights(E, 2 * np.outer(E[:, 0], E[:, 1]) + np.outer(E[:, 4], E[:, 2]), cfg, r=2)
    assert (w["u_query"], w["u_background"]) == pytest.approx((0.5, 0.5))
    assert (w["v_key"], w["v_values"]) == pytest.approx((0.5, 0.5))


def test_ov_gain_is_the_planted_map_relative_to_the_gains():
    from types import SimpleNamespace

    E = _frame(6, seed=4)
    cfg = SimpleNamespace(value_features=(2, 3), value_gains=(1.0, 0.5))
    OV = -0.5 * (np.outer(E[:, 2], E[:, 2]) + 0.5 * np.outer(E[:, 3], E[:, 3]))
    W_V, W_O = OV, np.eye(6)  # OV = W_O W_V
    assert ov_gain(E, W_V, W_O, cfg) == pytest.approx(-0.5)


def test_the_foil_keeps_rank_and_norm_and_fails_every_verdict():
    D = N = 16
    E = _frame(D, seed=3)
    pair = ((0, 1, 1.0),)
    aligned = 5.0 * np.outer(E[:, 0], E[:, 1])
    assert min(matched_cosines(E, aligned, pair, 8)[:2]) == pytest.approx(1.0)
    multi = E @ _centred_block(N, PAIRS, [2.0, 1.5, 1.0, 0.7], np.zeros(N)) @ E.T
    for Omega in (aligned, multi):
        for seed in range(20):
            foil = random_head_like(Omega, 8, np.random.default_rng(seed))
            np.testing.assert_allclose(np.linalg.svd(foil, compute_uv=False)[:8],
                                       np.linalg.svd(Omega, compute_uv=False)[:8], atol=1e-9)
            assert min(matched_cosines(E, foil, pair, 8)[:2]) < ALIGNED
            assert min(span_cosines(E, foil, PAIRS)) < ALIGNED


def test_matched_cosines_are_the_analysis_numbers(transformer_run):
    from toymodels.families.transformer.training import features_of
    from toymodels.rundir import load_run

    run = load_run(transformer_run)
    E = features_of(run.config, run.params)
    for h in run.summary["instances"][0]["heads"]:
        Omega = (run.params["W_Q"][0, h["layer"], h["head"]].T.astype(float)
                 @ run.params["W_K"][0, h["layer"], h["head"]])
        got = matched_cosines(E[0, h["layer"]], Omega, run.config.pairs, run.config.H)
        assert got == pytest.approx((h["qk_cos_query_u"], h["qk_cos_key_v"], h["qk_matched"]),
                                    abs=1e-5)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Tiny stored runs of the RoPE and multi-pair presets (seed 0, 20 steps)."""
    from toymodels.cli import main

    out = tmp_path_factory.mktemp("optimizer-frame-tiny")
    for preset in ("transformer-rope", "transformer-multi-pair"):
        assert main(["run", preset, "--seeds", "0", *TRANSFORMER_ARGS,
                     "--out", str(out / preset)]) == 0
    return out


def _plant(run_dir, W_Q, W_K):
    params = dict(np.load(run_dir / "params.npz"))
    np.savez(run_dir / "params.npz", **{**params, "W_Q": W_Q, "W_K": W_K})


def test_rope_row_reads_omega_at_the_offset_and_its_foil_fails(tiny_runs, tmp_path):
    """A head planted so that Ω_3 = E_q (a E_k + b E_q)ᵀ: query side 1 and key side
    a/√(a² + b²) at δ = 3, self b/√H, off-template |b|/√(a² + b²); it passes the verdict,
    its foil fails it."""
    import jax.numpy as jnp

    from toymodels.models.transformer import rope_offset_queries
    from toymodels.rundir import load_run

    one = copy_run(tiny_runs / "transformer-rope", tmp_path / "rope")
    run = load_run(one)
    cfg, params = run.config, run.params
    (q, k, _), = cfg.pairs
    a, b, E = 3.0, -1.0, params["E"][0].astype(np.float64)  # key side 0.949
    at_offset = np.zeros(params["W_Q"].shape, np.float32)
    at_offset[0, 0, 0, 0] = E[:, q]
    W_Q = np.asarray(rope_offset_queries(jnp.asarray(at_offset), [-cfg.offset],
                                         cfg.rope_base))[..., 0, :, :]
    W_K = np.zeros_like(params["W_K"])
    W_K[0, 0, 0, 0] = a * E[:, k] + b * E[:, q]
    _plant(one, W_Q, W_K)
    row = optimizer_frame_measure(load_run(one), 0)
    assert row["query"] == pytest.approx(1, abs=1e-5)
    assert row["key"] == pytest.approx(a / np.hypot(a, b), abs=1e-5)
    assert row["self"] == pytest.approx(b / np.sqrt(cfg.H), rel=1e-4)
    assert row["off_template"] == pytest.approx(abs(b) / np.hypot(a, b), rel=1e-4)
    assert "self_0" in row and row["self_0"] != pytest.approx(row["self"])
    assert row["aligned"] and not row["foil_aligned"]


def test_multi_pair_row_measures_the_centred_span_and_its_foil_fails(tiny_runs, tmp_path):
    from toymodels.rundir import load_run

    one = copy_run(tiny_runs / "transformer-multi-pair", tmp_path / "mp")
    run = load_run(one)
    cfg, params = run.config, run.params
    E = params["E"][0].astype(np.float64)
    shifts = np.random.default_rng(0).normal(size=cfg.N) * 0.1
    shifts[list(cfg.queries)] = 0  # a shift from a query row would tilt the query side
    Om_f = _centred_block(cfg.N, cfg.pairs, [2.0] * len(cfg.pairs), shifts)
    Omega = E @ Om_f @ E.T  # E orthonormal (N = D): Eᵀ Ω E = Om_f
    U, S, Vt = np.linalg.svd(Omega)
    H = cfg.H
    W_Q, W_K = np.zeros_like(params["W_Q"]), np.zeros_like(params["W_K"])
    W_Q[0, 0, :] = (U[:, :H] * np.sqrt(S[:H])).T  # every head: whichever the row reads
    W_K[0, 0, :] = (Vt[:H].T * np.sqrt(S[:H])).T
    _plant(one, W_Q, W_K)
    row = optimizer_frame_measure(load_run(one), 0)
    assert row["span_query"] == pytest.approx(1, abs=1e-5)
    assert row["span_key"] == pytest.approx(1, abs=1e-5)
    assert row["off_template"] == pytest.approx(0, abs=1e-4)
    assert row["aligned"] and not row["foil_aligned"]
    assert row["foil_span_query"] < ALIGNED and row["foil_span_key"] < ALIGNED


def test_the_script_prints_every_task_from_stored_runs(transformer_run, tiny_runs, tmp_path):
    """Tiny runs stand in for each optimizer and frame of the three tasks; the script writes
    each task's CSV and table and its figure, and no foil passes a trained head's verdict."""
    import csv

    runs = tmp_path / "runs"
    for task, run in (("retrieval", transformer_run), ("rope", tiny_runs / "transformer-rope"),
                      ("multi-pair", tiny_runs / "transformer-multi-pair")):
        for optimizer in ("adamw", "adamw_rotated", "sgd"):
            for frame in ("random", "axis"):
                where = runs if task == "retrieval" else runs / task
                shutil.copytree(run, where / f"{optimizer}-{frame}")
    proc = subprocess.run([sys.executable, str(REPO / "experiments" / "optimizer_frame.py"),
                           "--runs", str(runs), "--out", str(tmp_path / "fig")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    for task, name in (("retrieval", "optimizer_frame"), ("rope", "optimizer_frame_rope"),
                       ("multi-pair", "optimizer_frame_multi_pair")):
        where = runs if task == "retrieval" else runs / task
        rows = list(csv.DictReader(open(where / "optimizer_frame.csv")))
        assert len(rows) == 6 and {r["task"] for r in rows} == {task}
        assert all(r["foil_aligned"] == "False" for r in rows)
        assert (tmp_path / "fig" / f"{name}.png").stat().st_size > 10_000
        assert f"\n{task} (" in proc.stdout
    assert "centred span, query side" in proc.stdout and "Ω₃ query side" in proc.stdout
