"""Alignment and interference recorded during training, inside the compiled loop.

Shapes:
  R record points, P attended pairs, F distinct attended features, K = min(D, H)

At each record step the training scan computes, per instance, the spectrum of Ω,
each pair's max-over-k alignment (its best significant singular index on its
own: the Hungarian assignment needs the host, so it is left to the final
analysis), and each attended feature's interference with all others. Nothing
leaves the device until the chunk ends.
"""

import jax.numpy as jnp
import numpy as np

from toymodels.analysis.svd import (best_index_cosines, feature_cosines, feature_geometry,
                                    qk_svd)
from toymodels.configs import ToyConfig


def record_steps(cfg: ToyConfig) -> np.ndarray:
    """Steps (counted after the update, 1..steps) at which metrics are recorded."""
    if cfg.record_points == 0:
        return np.zeros(0, np.int64)
    if cfg.record_spacing == "log":
        points = np.geomspace(1, cfg.steps, cfg.record_points)
    else:
        points = np.linspace(cfg.steps / cfg.record_points, cfg.steps, cfg.record_points)
    return np.unique(np.round(points).astype(np.int64))


def attended_features(cfg: ToyConfig) -> tuple[int, ...]:
    return tuple(dict.fromkeys([i for i, _, _ in cfg.template] + [j for _, j, _ in cfg.template]))


def make_recorder(cfg: ToyConfig):
    """fn(W [D, N], W_Q, W_K [H, D]) -> dict of this instance's in-training metrics."""
    q = [i for i, _, _ in cfg.template]
    k = [j for _, j, _ in cfg.template]
    attended = jnp.asarray(attended_features(cfg), jnp.int32)

    def record(W, W_Q, W_K):
        U, S, V = qk_svd(W_Q, W_K)
        cos_u, cos_v = feature_cosines(W, U, V)
        out = {"sigma": S,
               "interference": feature_geometry(W)["interference"][attended]}
        out["cos_query_u"], out["cos_key_v"] = best_index_cosines(cos_u, cos_v, S, q, k)
        return out

    return record


def first_crossings(cfg: ToyConfig, dynamics: dict, alignment_level: float = 0.9,
                    interference_level: float = 0.1) -> list[dict]:
    """Per instance: the first recorded step at which every pair's alignment
    (min of its cos_query_u and cos_key_v, max over k) exceeds alignment_level,
    and the first at which every attended feature's interference is below
    interference_level; None if never."""
    steps = dynamics["steps"]
    out = []
    for n in range(dynamics["sigma"].shape[0]):
        align = np.minimum(dynamics["cos_query_u"][n], dynamics["cos_key_v"][n]).min(axis=1)
        interf = dynamics["interference"][n].max(axis=1)
        out.append({
            "alignment_above": alignment_level,
            "step_alignment_above": _first(steps, align > alignment_level),
            "interference_below": interference_level,
            "step_interference_below": _first(steps, interf < interference_level),
        })
    return out


def _first(steps, hits):
    idx = np.flatnonzero(hits)
    return int(steps[idx[0]]) if idx.size else None
