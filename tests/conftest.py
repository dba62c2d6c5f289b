"""Strict broadcasting catches silent shape bugs (as equinox's tests do).

Strict dtype promotion is left off: optax's own Adam bias correction mixes a
Python float with an int32 step count, which strict mode rejects.
"""

import os
import tempfile

# Before JAX or matplotlib load: figures into files, and one compilation cache for the whole
# session (its subprocesses too) that never touches the user's own.
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TOYMODELS_COMPILE_CACHE", tempfile.mkdtemp(prefix="toymodels-jax-"))

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def getkey():
    """A fresh PRNG key on every call."""
    counter = iter(range(1_000_000))
    return lambda: jax.random.key(next(counter))
