"""The toy's in-training metrics (training/dynamics.py): when they are recorded, that they
equal the final analysis and change nothing, and the first crossings read from them."""

import numpy as np
import pytest

from helpers import TOY
from toymodels.analysis.alignment import analyze
from toymodels.configs import make_instances
from toymodels.training.dynamics import first_crossings, record_steps
from toymodels.training.loop import train

RECORDED = TOY.replace(steps=60, record_points=12)


def test_record_steps():
    assert record_steps(RECORDED.replace(record_points=0)).size == 0
    lin = record_steps(RECORDED.replace(record_spacing="linear", record_points=6))
    np.testing.assert_array_equal(lin, [10, 20, 30, 40, 50, 60])
    log = record_steps(RECORDED)
    assert log[0] == 1 and log[-1] == 60 and np.all(np.diff(log) > 0)


def test_recorded_metrics_match_the_final_analysis_and_change_nothing():
    insts = make_instances(RECORDED, (0, 1))
    recorded = train(RECORDED, insts, progress=False)
    plain = train(RECORDED.replace(record_points=0), insts, progress=False)
    for name in plain.params:  # recording is read-only
        np.testing.assert_array_equal(recorded.params[name], plain.params[name])
    dyn = recorded.dynamics
    R = len(record_steps(RECORDED))
    assert dyn["sigma"].shape == (2, R, 3) and dyn["cos_query_u"].shape == (2, R, 1)
    assert dyn["interference"].shape == (2, R, 2)
    final = analyze(recorded.params["W"], W_Q=recorded.params["W_Q"],
                    W_K=recorded.params["W_K"], template=RECORDED.template, axes=("instance",),
                    layout="toymodels")
    for n in range(2):
        pair = final.pairs[n]
        assert dyn["cos_query_u"][n, -1, 0] == pytest.approx(pair["max_cos_query_u"], abs=1e-5)
        assert dyn["cos_key_v"][n, -1, 0] == pytest.approx(pair["max_cos_key_v"], abs=1e-5)
        np.testing.assert_allclose(dyn["sigma"][n, -1], final.arrays["qk_S"][n], rtol=1e-5)
        feats = [f for f in final.features if f["instance"] == n]
        np.testing.assert_allclose(dyn["interference"][n, -1],
                                   [feats[0]["interference"], feats[1]["interference"]],
                                   rtol=1e-4, atol=1e-6)


def test_first_crossings():
    dyn = {"steps": np.array([1, 10, 100, 1000]),
           "sigma": np.zeros((2, 4, 3)),
           "cos_query_u": np.array([[[0.1], [0.95], [0.99], [0.99]],
                                    [[0.1], [0.2], [0.3], [0.4]]]),
           "cos_key_v": np.array([[[0.1], [0.5], [0.95], [0.99]],
                                  [[0.1], [0.2], [0.3], [0.4]]]),
           "interference": np.array([[[1.0, 1.0], [0.5, 0.05], [0.05, 0.2], [0.01, 0.02]],
                                     [[1.0, 1.0]] * 4])}
    a, b = first_crossings(RECORDED, dyn)
    assert a["step_alignment_above"] == 100 and a["step_interference_below"] == 1000
    assert b["step_alignment_above"] is None and b["step_interference_below"] is None
