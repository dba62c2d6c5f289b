"""Sparse feature activations (tasks/features.py): the one-draw sampler's distribution."""

import jax
import numpy as np

from toymodels.tasks.features import sample_features


def test_one_draw_sampler_has_the_stated_distribution():
    """Active with probability p (per feature), magnitudes U[0, 1] given active: a sampler
    that reused u without dividing by p (magnitudes U[0, p]) or drew activity wrong fails."""
    p = np.array([0.05, 0.3, 0.9, 0.0, 1.0], np.float32)
    f = np.asarray(sample_features(jax.random.key(0), p, (200_000, 5)))
    rate = (f > 0).mean(0)
    assert np.all(np.abs(rate - p) <= 4 * np.sqrt(p * (1 - p) / 200_000) + 1e-6), rate
    for i in (0, 1, 2, 4):
        mags = np.sort(f[f[:, i] > 0, i])
        grid = (np.arange(len(mags)) + 0.5) / len(mags)
        assert np.abs(mags - grid).max() < 1.63 / np.sqrt(len(mags)) + 1e-3  # KS, 1% level
