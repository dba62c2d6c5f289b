"""The PyTorch baseline of benchmarks/bench_train.py computes toymodels' loss: the speed
ratio it prints compares equal work. Skipped where torch (the `bench` extra) is absent."""

import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from toymodels.configs import preset
from toymodels.models.toy import ToyModel
from toymodels.tasks.toy import (attention_loss, importance_weights, reconstruction_loss,
                                 template_matrix)

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from torch_toy import TorchToy  # noqa: E402


@pytest.mark.parametrize("shapes", [{}, {"N": 40, "D": 4, "H": 3}],
                         ids=["[N, N] routes", "residual routes"])
def test_torch_loss_is_toymodels_loss(shapes):
    cfg = preset("single-pair").replace(batch_size=16, template=((0, 1, 1.0), (2, 3, 0.5)),
                                        **shapes)
    baseline = TorchToy(cfg, n_instances=1)
    assert baseline.gram == baseline.features == (not shapes)
    model = ToyModel(cfg.N, cfg.D, cfg.H, init_scale=1.0, rngs=nnx.Rngs(0))
    model.b[...] = jnp.linspace(-0.1, 0.1, cfg.N)
    with torch.no_grad():
        for name in ("W", "W_Q", "W_K"):
            getattr(baseline, name).copy_(torch.tensor(np.asarray(getattr(model, name)[...]))[None])
        baseline.b.copy_(torch.tensor(np.asarray(model.b[...])).reshape(1, 1, 1, -1))
    rng = np.random.default_rng(0)
    f = (rng.random((cfg.batch_size, cfg.m + 1, cfg.N)) < 0.3) * rng.random(
        (cfg.batch_size, cfg.m + 1, cfg.N))
    f = f.astype(np.float32)
    loss, _ = baseline.loss(torch.from_numpy(f)[None])
    f_q, f_k = jnp.asarray(f[:, 0]), jnp.asarray(f[:, 1:])
    expected = (reconstruction_loss(model, f_q, f_k, jnp.asarray(importance_weights(cfg)))
                + cfg.lam * attention_loss(model, f_q, f_k,
                                           jnp.asarray(template_matrix(cfg.template, cfg.N)),
                                           jnp.float32(cfg.target_scale), cfg.attn_loss))
    assert loss.item() == pytest.approx(float(expected), rel=1e-5)
