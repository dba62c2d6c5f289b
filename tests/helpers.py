"""What many test files share: tiny configs per family (as Python configs and as command
line arguments), the command line run in this process, and small builders.

The session-scoped tiny runs made from these arguments are fixtures in conftest.py.
"""

import math
import os
import shutil
from pathlib import Path

import numpy as np

from toymodels.configs import TRANSFORMER_PRESETS, preset

REPO = Path(__file__).resolve().parents[1]

# ---- tiny configs, one per family --------------------------------------------------------

# The toy model at its smallest useful size: 6 features in 4 dimensions, a 3-dim head.
TOY = preset("single-pair").replace(N=6, D=4, H=3, m=4, batch_size=32, steps=40,
                                    chunk_steps=20, template=((0, 1, 1.0),))
# A one-layer, two-head retrieval transformer (D = 16, H = 8) trained for 40 steps.
TRANSFORMER = TRANSFORMER_PRESETS["transformer-retrieval"].replace(
    batch_size=32, steps=40, chunk_steps=20, record_points=3)

# The same tiny sizes on the command line (`toymodels run PRESET ... *TOY_ARGS`).
TOY_ARGS = ["--set", "batch_size=32", "--set", "chunk_steps=15", "--steps", "30",
            "--no-progress"]
TRANSFORMER_ARGS = ["--steps", "20", "--set", "batch_size=16", "--set", "chunk_steps=10",
                    "--no-progress"]
# The session's two-instance transformer run (conftest.transformer_pair_run).
TRANSFORMER_PAIR_ARGS = ["--steps", "40", "--set", "batch_size=32", "--set", "chunk_steps=20",
                         "--no-progress"]



def subprocess_env(**extra) -> dict:
    """The environment for a fresh Python process that imports the package in this checkout
    (and this module), with extra variables set."""
    return os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]),
                         **extra}


# ---- the command line, in this process ---------------------------------------------------


def cli(argv, capsys):
    """`toymodels ARGV` run in this process: (exit code, stdout, stderr)."""
    from toymodels.cli import main
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_exit_2(argv, capsys, message):
    """`toymodels ARGV` exits 2 with one line on stderr that contains message."""
    code, _, err = cli(argv, capsys)
    assert code == 2, err
    assert err.count("\n") == 1 and message in err, err
    return err


# ---- files -------------------------------------------------------------------------------


def snapshot(path: Path) -> dict:
    """Every file under path (links not followed) with its bytes, and every link's target."""
    out = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            p = Path(root) / name
            if p.is_symlink():
                out[str(p.relative_to(path))] = ("link", os.readlink(p))
            elif p.is_file():
                out[str(p.relative_to(path))] = p.read_bytes()
    return out


def copy_run(run: Path, to: Path) -> Path:
    """A writable copy of a (session-scoped, read-only) run directory."""
    shutil.copytree(run, to)
    return to


# ---- builders ----------------------------------------------------------------------------


def orthonormal(rng, D, n):
    """n orthonormal columns in D dimensions."""
    q, _ = np.linalg.qr(rng.normal(size=(D, D)))
    return q[:, :n]


def build(cfg, seed=0):
    """A toy transformer of cfg, initialised from seed."""
    from flax import nnx

    from toymodels.families import transformer as family
    return family.build(cfg, nnx.Rngs(seed))


def randomize(model, seed=1, scale=0.5):
    """Give every parameter (biases too) random values, so no test passes by zeros."""
    import jax
    from flax import nnx
    graphdef, state = nnx.split(model)
    pure = nnx.to_pure_dict(state)
    keys = jax.random.split(jax.random.key(seed), len(pure))
    pure = {k: scale * jax.random.normal(key, v.shape) for key, (k, v) in zip(keys, pure.items())}
    nnx.replace_by_pure_dict(state, pure)
    return nnx.merge(graphdef, state)


def hand_built(cfg, logit_gain=60.0):
    """A one-layer solution of cfg's task, written down from its ground truth."""
    import jax.numpy as jnp

    from toymodels.families import transformer as family
    from toymodels.models.transformer import rope_offset_queries
    model = build(cfg.replace(n_heads=1, n_layers=1))
    E = family.fixed_frame(cfg, 0)
    H = cfg.H
    W_Q = np.zeros((1, 1, H, cfg.D))
    W_K = np.zeros((1, 1, H, cfg.D))
    W_V = np.zeros((1, 1, H, cfg.D))
    W_O = np.zeros((1, 1, cfg.D, H))
    if cfg.task != "control":
        scale = math.sqrt(logit_gain * math.sqrt(H))
        for p, (i, j, _) in enumerate(cfg.pairs):
            W_Q[0, 0, p] = scale * E[:, i]
            W_K[0, 0, p] = scale * E[:, j]
        if cfg.task == "rope":  # store W_K so that Ω_δ at the task's offset is the pairing
            W_K[0, 0] = np.asarray(rope_offset_queries(jnp.asarray(W_K[0, 0]), [cfg.offset],
                                                       cfg.rope_base))[0]
    for c, (v, g) in enumerate(zip(cfg.value_features, cfg.value_gains)):
        W_V[0, 0, c] = E[:, v]
        W_O[0, 0, :, c] = g * E[:, v]
    for name, value in (("E", E), ("W_Q", W_Q), ("W_K", W_K), ("W_V", W_V), ("W_O", W_O)):
        getattr(model, name)[...] = jnp.asarray(value, jnp.float32)
    return model


# ---- the theory table's verdict rule -----------------------------------------------------


def verdict(value, tolerance: str) -> str:
    """The theory table's verdict rule, written out independently of toymodels.theory (the
    tests' oracle for each row's and each foil's PASS/FAIL): '>= 0.95' or '<= 0.05' applied
    to value; NaN fails."""
    criterion, threshold = tolerance.split()
    ok = np.isfinite(value) and (value >= float(threshold) if criterion == ">="
                                 else value <= float(threshold))
    return "PASS" if ok else "FAIL"
