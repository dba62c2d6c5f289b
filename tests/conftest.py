"""Strict broadcasting catches silent shape bugs (as equinox's tests do).

Strict dtype promotion is left off: optax's own Adam bias correction mixes a
Python float with an int32 step count, which strict mode rejects.
"""

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def getkey():
    """A fresh PRNG key on every call."""
    counter = iter(range(1_000_000))
    return lambda: jax.random.key(next(counter))
