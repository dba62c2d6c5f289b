"""When a training run has diverged, shared by `run` and sweeps (NumPy only).

An instance whose loss becomes NaN or inf, or exceeds DIVERGENCE_FACTOR times its
first-step value, is diverged: its metrics are reported as null, never as numbers.
"""

import numpy as np

DIVERGENCE_FACTOR = 1e3
"""A loss above this many times its first-step value counts as diverged (as does NaN or
inf): Adam moves each weight by about the learning rate per step, so a too-large rate
makes the loss explode polynomially long before it overflows."""


def diverged_step(loss) -> int | None:
    """First step (1-based) at which the training loss is non-finite or above
    DIVERGENCE_FACTOR times its first value; None if it never is."""
    loss = np.asarray(loss)
    with np.errstate(invalid="ignore", over="ignore"):
        bad = ~np.isfinite(loss) | (loss > DIVERGENCE_FACTOR * abs(loss[0]))
    idx = np.flatnonzero(bad)
    return int(idx[0]) + 1 if idx.size else None


def mask_diverged(params: dict, steps) -> dict:
    """params with every diverged instance's arrays set to 0, so that its head is not
    analysed (its metrics are nulled afterwards) and NaN never reaches the analysis."""
    bad = np.array([s is not None for s in steps])
    if not bad.any():
        return params
    return {k: np.where(bad.reshape((-1,) + (1,) * (v.ndim - 1)), 0.0, v).astype(v.dtype)
            for k, v in params.items()}


PAIR_IDENTITY = ("query_feature", "key_feature", "target")
"""What names a pair; everything else in a pair row is a measurement."""


def null_pair(pair: dict) -> dict:
    """A diverged head's pair row: which pair it is, and null for what it measured."""
    return {k: (v if k in PAIR_IDENTITY else None) for k, v in pair.items()}


def mark_diverged(summary: dict, steps) -> dict:
    """Give each instance of a run summary its diverged_step; a diverged instance's
    losses, spectrum, pairs and dynamics become null, as in sweeps."""
    for record, step in zip(summary["instances"], steps):
        record["diverged_step"] = step
        if step is not None:
            record["final_loss"] = {k: None for k in record["final_loss"]}
            record["singular_values"] = None
            record["pairs"] = [null_pair(p) for p in record["pairs"]]
            if "dynamics" in record:
                record["dynamics"] = None
    return summary
