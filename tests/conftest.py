"""Strict broadcasting catches silent shape bugs (as equinox's tests do).

Strict dtype promotion is left off: optax's own Adam bias correction mixes a
Python float with an int32 step count, which strict mode rejects.

The tiny runs many files read are made once per session here (helpers.py holds their
arguments). They are read-only: a test that changes a run works on a copy
(helpers.copy_run), and each fixture checks at the end of the session that no test
changed its run.
"""

import os
import tempfile

# Before JAX or matplotlib load: figures into files, and one compilation cache for the whole
# session (its subprocesses too) that never touches the user's own.
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TOYMODELS_COMPILE_CACHE", tempfile.mkdtemp(prefix="toymodels-jax-"))

import jax  # noqa: E402
import pytest  # noqa: E402

from helpers import TOY_ARGS, TRANSFORMER_ARGS, TRANSFORMER_PAIR_ARGS, snapshot  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def getkey():
    """A fresh PRNG key on every call."""
    counter = iter(range(1_000_000))
    return lambda: jax.random.key(next(counter))


def _session_run(tmp_path_factory, name, argv):
    """`toymodels run ARGV --out DIR` once; after the session, DIR must be as it was made."""
    from toymodels.cli import main
    out = tmp_path_factory.mktemp("session-runs") / name
    assert main([*argv, "--out", str(out)]) == 0
    made = snapshot(out)
    yield out
    assert snapshot(out) == made, f"a test changed the session's {name} run (copy it first)"


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory):
    """`run single-pair --seeds 0-1` at tiny size (helpers.TOY_ARGS); read-only."""
    yield from _session_run(tmp_path_factory, "single-pair",
                            ["run", "single-pair", "--seeds", "0-1", *TOY_ARGS])


@pytest.fixture(scope="session")
def no_head_run(tmp_path_factory):
    """`run no-head --seeds 0-1` at tiny size (helpers.TOY_ARGS); read-only."""
    yield from _session_run(tmp_path_factory, "no-head",
                            ["run", "no-head", "--seeds", "0-1", *TOY_ARGS])


@pytest.fixture(scope="session")
def transformer_run(tmp_path_factory):
    """`run transformer-retrieval --seeds 0`, 20 steps (helpers.TRANSFORMER_ARGS); one
    instance; read-only."""
    yield from _session_run(tmp_path_factory, "transformer",
                            ["run", "transformer-retrieval", "--seeds", "0", *TRANSFORMER_ARGS])


@pytest.fixture(scope="session")
def transformer_pair_run(tmp_path_factory):
    """`run transformer-retrieval --seeds 0-1`, 40 steps (helpers.TRANSFORMER_PAIR_ARGS):
    two instances, one layer of two heads; read-only."""
    yield from _session_run(tmp_path_factory, "transformer-pair",
                            ["run", "transformer-retrieval", "--seeds", "0-1",
                             *TRANSFORMER_PAIR_ARGS])
