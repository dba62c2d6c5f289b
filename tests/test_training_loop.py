import numpy as np
import pytest

from toymodels.configs import Instance, make_instances, preset
from toymodels.training.loop import train

TINY = preset("single-pair").replace(N=6, D=4, H=3, m=4, batch_size=32, steps=40,
                                     chunk_steps=20, template=((0, 1, 1.0),))


def inst(seed, **kw):
    fields = dict(lam=TINY.lam, learning_rate=TINY.learning_rate, p_active=TINY.p_active,
                  target_scale=TINY.target_scale)
    fields.update(kw)
    return Instance(seed=seed, **fields)


def assert_same_instance(a, i, b, j):
    for name in a.params:
        np.testing.assert_array_equal(a.params[name][i], b.params[name][j], err_msg=name)
    for name in a.curves:
        np.testing.assert_array_equal(a.curves[name][i], b.curves[name][j], err_msg=name)


def test_shapes_and_losses_recorded():
    result = train(TINY, make_instances(TINY, (0, 1)), progress=False)
    assert result.params["W"].shape == (2, 4, 6) and result.params["W_Q"].shape == (2, 3, 4)
    assert result.curves["recon"].shape == (2, 40) and result.curves["attn"].shape == (2, 40)
    assert np.all(np.isfinite(result.curves["recon"]))


def test_instance_result_ignores_its_batch_position_and_neighbours():
    alone = train(TINY, [inst(3, lam=2.0)], progress=False)
    crowd = train(TINY, [inst(0), inst(5, learning_rate=1e-2), inst(3, lam=2.0), inst(1)],
                  progress=False)
    # Equal up to float32 rounding: XLA may tile a batched matmul differently for
    # another batch size, which reorders sums but changes nothing else.
    for name in alone.params:
        np.testing.assert_allclose(alone.params[name][0], crowd.params[name][2],
                                   rtol=1e-5, atol=1e-6, err_msg=name)


def test_chunking_does_not_change_results():
    a = train(TINY, [inst(0), inst(1)], progress=False)
    b = train(TINY.replace(chunk_steps=16), [inst(0), inst(1)], progress=False)
    for i in range(2):
        assert_same_instance(a, i, b, i)


def test_same_seed_same_numbers_and_different_seeds_differ():
    a = train(TINY, [inst(0), inst(1)], progress=False)
    b = train(TINY, [inst(0), inst(1)], progress=False)
    assert_same_instance(a, 0, b, 0)
    assert not np.array_equal(a.params["W"][0], a.params["W"][1])


def test_batched_hyperparameters_take_effect():
    # The same seed with λ = 0 never moves the head beyond weight decay; λ > 0 does.
    cfg = TINY.replace(steps=200, weight_decay=0.0)
    result = train(cfg, [inst(0, lam=0.0), inst(0, lam=1.0, target_scale=4.0)],
                   progress=False)
    start = train(cfg.replace(steps=1), [inst(0, lam=0.0)], progress=False)
    np.testing.assert_allclose(result.params["W_Q"][0], start.params["W_Q"][0])
    assert np.abs(result.params["W_Q"][1] - start.params["W_Q"][0]).max() > 1e-2


@pytest.mark.parametrize("kind", ["xent", "mse"])
def test_training_lowers_both_losses(kind):
    cfg = TINY.replace(steps=300, chunk_steps=100, attn_loss=kind, learning_rate=1e-2,
                       target_scale=4.0, p_active=0.3)
    result = train(cfg, [inst(0, learning_rate=1e-2, target_scale=4.0, p_active=0.3)],
                   progress=False)
    for name in ("recon", "attn"):
        curve = result.curves[name][0]
        assert curve[-20:].mean() < 0.7 * curve[:20].mean(), name
