"""The training loop (training/loop.py): instances vmapped and stepped in lax.scan chunks.
An instance's result depends on its seed and settings only (not its neighbours, its
position, the chunk size or the number of devices), hyperparameters batch, both losses
fall, and frozen parameters stay as given."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from helpers import TOY, subprocess_env
from toymodels.configs import Instance, ToyConfig, make_instances
from toymodels.training.loop import init_states, train


def inst(seed, **kw):
    fields = dict(lam=TOY.lam, learning_rate=TOY.learning_rate, p_active=TOY.p_active,
                  target_scale=TOY.target_scale)
    fields.update(kw)
    return Instance(seed=seed, **fields)


def assert_same_instance(a, i, b, j):
    for name in a.params:
        np.testing.assert_array_equal(a.params[name][i], b.params[name][j], err_msg=name)
    for name in a.curves:
        np.testing.assert_array_equal(a.curves[name][i], b.curves[name][j], err_msg=name)


def test_shapes_and_losses_recorded():
    result = train(TOY, make_instances(TOY, (0, 1)), progress=False)
    assert result.params["W"].shape == (2, 4, 6) and result.params["W_Q"].shape == (2, 3, 4)
    assert result.curves["recon"].shape == (2, 40) and result.curves["attn"].shape == (2, 40)
    assert np.all(np.isfinite(result.curves["recon"]))


def test_instance_result_ignores_its_batch_position_and_neighbours():
    alone = train(TOY, [inst(3, lam=2.0)], progress=False)
    crowd = train(TOY, [inst(0), inst(5, learning_rate=1e-2), inst(3, lam=2.0), inst(1)],
                  progress=False)
    # Equal up to float32 rounding: XLA may tile a batched matmul differently for
    # another batch size, which reorders sums but changes nothing else.
    for name in alone.params:
        np.testing.assert_allclose(alone.params[name][0], crowd.params[name][2],
                                   rtol=1e-5, atol=1e-6, err_msg=name)


def test_chunking_does_not_change_results():
    a = train(TOY, [inst(0), inst(1)], progress=False)
    b = train(TOY.replace(chunk_steps=16), [inst(0), inst(1)], progress=False)
    for i in range(2):
        assert_same_instance(a, i, b, i)


def test_same_seed_same_numbers_and_different_seeds_differ():
    a = train(TOY, [inst(0), inst(1)], progress=False)
    b = train(TOY, [inst(0), inst(1)], progress=False)
    assert_same_instance(a, 0, b, 0)
    assert not np.array_equal(a.params["W"][0], a.params["W"][1])


def test_batched_hyperparameters_take_effect():
    # The same seed with λ = 0 never moves the head beyond weight decay; λ > 0 does.
    cfg = TOY.replace(steps=200, weight_decay=0.0)
    result = train(cfg, [inst(0, lam=0.0), inst(0, lam=1.0, target_scale=4.0)],
                   progress=False)
    start = train(cfg.replace(steps=1), [inst(0, lam=0.0)], progress=False)
    np.testing.assert_allclose(result.params["W_Q"][0], start.params["W_Q"][0])
    assert np.abs(result.params["W_Q"][1] - start.params["W_Q"][0]).max() > 1e-2


@pytest.mark.parametrize("kind", ["xent", "mse"])
def test_training_lowers_both_losses(kind):
    cfg = TOY.replace(steps=300, chunk_steps=100, attn_loss=kind, learning_rate=1e-2,
                       target_scale=4.0, p_active=0.3)
    result = train(cfg, [inst(0, learning_rate=1e-2, target_scale=4.0, p_active=0.3)],
                   progress=False)
    for name in ("recon", "attn"):
        curve = result.curves[name][0]
        assert curve[-20:].mean() < 0.7 * curve[:20].mean(), name


def test_frozen_parameters_keep_their_given_values():
    cfg = ToyConfig(N=8, D=4, H=4, steps=30, train_features=False)
    W = np.random.default_rng(0).standard_normal((2, 4, 8)).astype(np.float32)
    res = train(cfg, make_instances(cfg, [0, 1]), init={"W": W}, progress=False)
    np.testing.assert_array_equal(res.params["W"], W)
    assert np.abs(res.params["W_Q"] - np.asarray(init_states(cfg, [0, 1])["W_Q"][...])).max() > 0

    head = cfg.replace(train_features=True, train_head=False)
    res = train(head, make_instances(head, [0]), progress=False)
    start = init_states(head, [0])
    np.testing.assert_array_equal(res.params["W_K"], np.asarray(start["W_K"][...]))
    assert np.abs(res.params["W"] - np.asarray(start["W"][...])).max() > 0


def test_init_with_a_wrong_shape_is_refused():
    from toymodels.errors import ConfigError
    cfg = ToyConfig(N=8, D=4, H=4, steps=5)
    with pytest.raises(ConfigError, match="shape"):
        train(cfg, make_instances(cfg, [0]), init={"W": np.zeros((1, 8, 4))}, progress=False)
    with pytest.raises(ConfigError, match="not a parameter"):
        train(cfg, make_instances(cfg, [0]), init={"Omega": np.zeros((1, 4, 4))}, progress=False)


def test_cosine_schedule_factors():
    import jax.numpy as jnp
    from toymodels.training.loop import _schedule
    steps = jnp.float32(200)
    f = [float(_schedule("cosine", jnp.uint32(s), steps)) for s in (0, 100, 199)]
    assert f[0] == pytest.approx(1.0) and f[1] == pytest.approx(0.5, abs=1e-6)
    assert 0 < f[2] < 1e-3
    assert _schedule("constant", jnp.uint32(150), steps) == 1.0


ON_TWO_DEVICES = textwrap.dedent("""
    import sys
    import jax
    import numpy as np
    from helpers import TOY
    from toymodels.configs import make_instances
    from toymodels.training import loop
    assert jax.local_device_count() == 2, jax.devices()
    placed = []  # (instances, devices) of every array the loop shards
    shard = loop.shard_instances
    def spy(tree):
        tree = shard(tree)
        placed.extend((x.shape[0], len(x.sharding.device_set)) for x in jax.tree.leaves(tree))
        return tree
    loop.shard_instances = spy
    result = loop.train(TOY, make_instances(TOY, [0, 1, 2]), progress=False)
    assert placed and set(placed) == {(4, 2)}, placed  # padded to 4, split over 2 devices
    np.savez(sys.argv[1], **result.params, **{"curve_" + k: v for k, v in result.curves.items()})
""")


def test_instances_shard_across_two_devices(tmp_path):
    """The multi-device path on the CPU: on 2 (forced) host devices, 3 instances are padded
    to 4 and split 2 a device; each gets the numbers it gets on one device."""
    out = tmp_path / "two.npz"
    proc = subprocess.run([sys.executable, "-c", ON_TWO_DEVICES, str(out)], capture_output=True,
                          text=True, timeout=300,
                          env=subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=2"))
    assert proc.returncode == 0, proc.stderr
    one = train(TOY, make_instances(TOY, [0, 1, 2]), progress=False)
    with np.load(out) as two:
        for name, value in one.params.items():
            assert two[name].shape == value.shape, name  # the padding instance is dropped
            np.testing.assert_allclose(two[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
        for name, value in one.curves.items():
            np.testing.assert_allclose(two["curve_" + name], value, rtol=1e-5, atol=1e-6,
                                       err_msg=name)
