"""Validators every config family shares, and the grid of instances of one run.

Every check here runs before any work starts and imports no JAX, so bad input is refused
in one line (ConfigError; exit 2 from the CLI) before a compile or a run directory.
"""

import itertools
import math
import numbers
import os

from toymodels.errors import ConfigError

Pair = tuple[int, int, float]
"""A planted pair: (query_feature, key_feature, value)."""

OPTIMIZERS = ("adamw", "sgd", "adamw_rotated")
"""The optimizers a config of any family can name (training/optimizers.py builds them)."""


def check_optimizer(name) -> None:
    if name not in OPTIMIZERS:
        raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")


def check_int(name: str, value, minimum: int) -> None:
    """An integer (not a bool) >= minimum."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")


def check_number(name: str, value) -> None:
    """A real, finite number (not a bool): NaN or inf would train to an all-NaN run."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value}")


def check_template(template, N):
    """Template pairs: in-range integer indices, finite values, no pair twice. Shared by
    configs and by `analyze`."""
    if not isinstance(template, tuple):
        raise ConfigError("template must be a tuple of (query_feature, key_feature, value)")
    seen = set()
    for pair in template:
        if not (isinstance(pair, tuple) and len(pair) == 3):
            raise ConfigError(f"template entry {pair!r} is not (query_feature, key_feature, value)")
        i, j, value = pair
        for idx in (i, j):
            if isinstance(idx, bool) or not isinstance(idx, int):
                raise ConfigError(f"template index {idx!r} must be an integer")
            if not 0 <= idx < N:
                raise ConfigError(f"template index {idx} is out of range for N={N} "
                                  f"(indices run 0..{N - 1})")
        check_number("template value", value)
        if (i, j) in seen:
            raise ConfigError(f"template lists the pair ({i}, {j}) twice")
        seen.add((i, j))


MAX_SEED = 2**32 - 1
"""Seeds are unsigned 32-bit integers (training keys are made from uint32 seeds)."""

MAX_SEEDS = 1_000_000
"""More seeds than this in one run or sweep is refused before they are listed."""


def check_seeds(seeds, what: str = "seeds") -> tuple[int, ...]:
    """The one check of seeds, for run, sweep and the API: at least one, each an integer in
    [0, 2**32 - 1] (not a bool), none twice, at most MAX_SEEDS."""
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise ConfigError(f"{what} must be a list of integers like [0, 1, 2], got {seeds!r}")
    seeds = list(seeds)
    if not seeds:
        raise ConfigError(f"{what}: a run needs at least one seed")
    if len(seeds) > MAX_SEEDS:
        raise ConfigError(f"{what} gives {len(seeds):,} seeds; at most {MAX_SEEDS:,} are allowed")
    for s in seeds:
        check_seed(s, f"{what}: seed")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{what} lists a seed twice")
    return tuple(seeds)


def check_seed(seed, what: str = "seed") -> int:
    """One seed (of a rotation control, a prompt generator, an analysis baseline): an integer
    in [0, 2**32 - 1], as check_seeds requires of training seeds."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) \
            or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{what} {seed!r} must be an integer in [0, {MAX_SEED}]")
    return int(seed)


# ---- resources: refuse what cannot fit, before anything is built -------------------

ACTIVATION_FACTOR = 4
"""Live copies of a step's batch tensors (inputs, residuals, logits, their gradients)."""


def machine_bytes() -> int | None:
    """Physical memory of this machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(cfg, n_instances: int, what: str = "this run") -> None:
    """ConfigError when cfg.estimate_bytes(n_instances) exceeds this machine's memory."""
    need, have = cfg.estimate_bytes(n_instances), machine_bytes()
    if have is not None and need > have:
        raise ConfigError(f"{what} ({n_instances:,} instances, N={cfg.N}, batch_size="
                          f"{cfg.batch_size}, steps={cfg.steps}) needs about {_gb(need)} of "
                          f"memory; this machine has {_gb(have)}")


def _gb(n: int) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e8 else f"{n / 1e6:,.0f} MB"



# ---- instances: the vmapped axis of one run ---------------------------------------


def instance_grid(cfg, seeds, vary: dict | None, instance_class) -> list:
    """The grid vary[field] values × seeds, as instance_class(seed=..., **batched fields);
    unvaried fields take the config's value. vary maps a name in cfg.BATCHED_FIELDS (the
    hyperparameters that ride along the vmapped instance axis) to its values. Checked
    before any instance is built: names, values (each must make a valid config), seeds,
    and whether the run fits in this machine's memory."""
    batched = type(cfg).BATCHED_FIELDS
    if vary is not None and not isinstance(vary, dict):
        raise ConfigError(f"vary must map a field to its values, e.g. {{'{batched[0]}': "
                          f"[1.0, 2.0]}}, got {vary!r}")
    vary = dict(vary or {})
    for name, values in vary.items():
        if not isinstance(values, (list, tuple)):
            raise ConfigError(f"vary {name}: give a list of values, e.g. [1.0, 2.0], got "
                              f"{values!r}")
        if name not in batched:
            raise ConfigError(f"--vary {name}: only {', '.join(batched)} can differ between "
                              f"instances of one {cfg.family} run (other fields change shapes)")
        if not values:
            raise ConfigError(f"--vary {name} has no values")
        for value in values:  # each value must make a valid config on its own
            cfg.replace(**{name: value})
    seeds = check_seeds(seeds)
    check_fits(cfg, len(seeds) * math.prod(len(v) for v in vary.values()))
    names = list(vary)
    instances = []
    for combo in itertools.product(*(vary[n] for n in names)):
        point = dict(zip(names, combo))
        for seed in seeds:
            instances.append(instance_class(
                seed=int(seed), **{n: point.get(n, getattr(cfg, n)) for n in batched}))
    return instances


# ---- how planted features fire together (tasks/structure.py) ------------------------

STRUCTURE_FIELDS = ("corr_blocks", "corr", "parents", "conditional", "exclusive",
                    "zipf_exponent")
"""Config fields (both families) that describe how features fire together; at their
defaults every feature fires independently with its own p_active."""


def feature_structure(cfg):
    """cfg's FeatureStructure (tasks/structure.py), or None when every structure field is
    at its default (features independent, as before these fields existed). Raises
    ConfigError (one line) for a structure that cannot be (a correlation that is not
    positive semi-definite, a cycle of parents, overlapping groups, ...)."""
    from toymodels.tasks.structure import FeatureStructure

    if not (cfg.corr_blocks or cfg.parents or cfg.exclusive or cfg.zipf_exponent):
        return None
    return FeatureStructure(
        n_features=cfg.N, blocks=cfg.corr_blocks, rho=cfg.corr,
        parents=cfg.parents or None,
        conditional=cfg.conditional if cfg.parents else None,
        exclusive=cfg.exclusive, zipf_exponent=cfg.zipf_exponent)


def check_structure(cfg):
    """Check cfg's structure fields before any work; returns its FeatureStructure or None."""
    for name in ("corr", "conditional", "zipf_exponent"):
        check_number(name, getattr(cfg, name))
    for name in ("corr_blocks", "exclusive"):
        groups = getattr(cfg, name)
        if not isinstance(groups, tuple) or not all(isinstance(g, tuple) for g in groups):
            raise ConfigError(f"{name} must be groups of feature indices, e.g. '0,1,2;3,4' "
                              f"(--set) or [[0, 1, 2], [3, 4]] (TOML), got {groups!r}")
    if not isinstance(cfg.parents, tuple):
        raise ConfigError(f"parents must be one parent index per feature, e.g. '-1,0,0', "
                          f"got {cfg.parents!r}")
    if cfg.parents and len(cfg.parents) != cfg.N:
        raise ConfigError(f"parents has {len(cfg.parents)} entries but N={cfg.N}: give each "
                          "feature's parent (-1 for a root)")
    if cfg.zipf_exponent < 0:
        raise ConfigError(f"zipf_exponent must be >= 0, got {cfg.zipf_exponent}")
    structure = feature_structure(cfg)
    if structure is not None:  # rates too: an exclusive group's must sum to <= 1
        from toymodels.tasks.structure import own_probabilities
        p = cfg.p_active if isinstance(cfg.p_active, tuple) else (cfg.p_active,) * cfg.N
        own_probabilities(structure, p)
    return structure


def structure_dict(cfg) -> dict:
    """The structure fields that differ from their defaults, as JSON values (results made
    before these fields existed keep their config dicts, identities and sweep group ids)."""
    defaults = type(cfg)()
    return {name: [list(g) for g in value] if name in ("corr_blocks", "exclusive")
            else (list(value) if isinstance(value, tuple) else value)
            for name in STRUCTURE_FIELDS
            if (value := getattr(cfg, name)) != getattr(defaults, name)}


def structure_from_dict(d: dict) -> dict:
    """d with the structure fields' JSON lists as the config's tuples."""
    d = dict(d)
    for name in ("corr_blocks", "exclusive"):
        if isinstance(d.get(name), list):
            d[name] = tuple(tuple(g) if isinstance(g, list) else g for g in d[name])
    if isinstance(d.get("parents"), list):
        d["parents"] = tuple(d["parents"])
    return d
