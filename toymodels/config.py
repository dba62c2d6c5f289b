"""Run configuration: one frozen dataclass, the paper presets, and parsing of overrides.

Notation (../shared/paper-notes.md):
  N  ground-truth features      D  residual dimension
  H  head dimension             m  key tokens per query
  T  [N, N] attention template, given sparsely as (query_feature, key_feature, value)

Every check here runs before any work starts, so bad input never costs a
compile or touches a run directory.
"""

import dataclasses
import math
import numbers
import os
from dataclasses import dataclass

from toymodels.config_transformer import (OPTIMIZERS, TRANSFORMER_BATCHED_FIELDS,  # noqa: F401
                                          TRANSFORMER_PRESETS, TransformerConfig,
                                          check_optimizer, make_transformer_instances,
                                          transformer_bytes)
from toymodels.errors import ConfigError

Pair = tuple[int, int, float]

# Scalar hyperparameters that may differ between instances of one compiled
# program (they ride along the vmapped instance axis). Everything else is
# shared by all instances of a run because it fixes shapes or the program.
BATCHED_FIELDS = ("lam", "learning_rate", "p_active", "target_scale")


@dataclass(frozen=True)
class ToyConfig:
    """The paper's toy model: a superposition autoencoder with one bilinear attention head."""

    N: int = 20
    """Number of ground-truth features."""
    D: int = 10
    """Residual dimension (features live in R^D as r = W f)."""
    H: int = 10
    """Head dimension: W_Q, W_K are [H, D], so rank(Ω) <= H."""
    m: int = 8
    """Key tokens each query attends over (context length)."""
    p_active: float | tuple[float, ...] = 0.1
    """Probability a feature is active in a token: one value, or one per feature."""
    tokens: str = "sparse"
    """'sparse': features active independently (p_active, magnitude U[0, 1]);
    'onehot': each token is one feature, chosen uniformly, magnitude 1 (Theorem 1's setting)."""
    importance_decay: float = 1.0
    """Importance weights I_i = importance_decay ** i on the reconstruction error."""
    template: tuple[Pair, ...] = ((0, 1, 1.0),)
    """Attention template T as (query_feature, key_feature, value) triples."""
    target_scale: float = 1.0
    """Target logits are target_scale * f_q^T T f_j."""
    lam: float = 1.0
    """λ, weight of the attention loss (0 trains reconstruction only)."""
    attn_loss: str = "xent"
    """'xent': cross-entropy between target and model attention; 'mse': squared error on logits."""
    learning_rate: float = 1e-3
    """Learning rate of the optimizer."""
    optimizer: str = "adamw"
    """'adamw'; 'sgd' (momentum 0.9, the same decoupled weight decay): rotation-equivariant;
    'adamw_rotated': AdamW whose per-coordinate normalisers live in a fixed random
    orthogonal basis of each parameter (optimizers.py), so no axis of the model is
    privileged. See OPTIMIZERS."""
    lr_schedule: str = "constant"
    """'constant', or 'cosine': the rate decays to 0 at the last step, which removes the
    SGD noise that otherwise rotates singular vectors inside near-degenerate spectra."""
    weight_decay: float = 1e-4
    """Decoupled weight decay (AdamW's; SGD takes the same form)."""
    batch_size: int = 512
    """Queries (each with m keys) per training step."""
    steps: int = 5000
    """Training steps."""
    chunk_steps: int = 250
    """Steps per compiled lax.scan chunk; the progress bar advances once a chunk."""
    init_scale: float = 0.1
    """Std of the initial W_Q, W_K entries, times 1/sqrt(D)."""
    train_features: bool = True
    """False: W stays at its initial value (give it to train(init=...)), as in the
    theorems with fixed features."""
    train_head: bool = True
    """False: W_Q, W_K (so Ω) stay fixed, as in Theorem 3."""
    record_points: int = 0
    """Record alignment and interference at this many steps during training (0: off)."""
    record_spacing: str = "log"
    """'log' (dense early, where alignment forms) or 'linear' spacing of record points."""

    def __post_init__(self):
        for name in ("N", "D", "H", "m", "batch_size", "steps", "chunk_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
            if value <= 0:
                raise ConfigError(f"{name} must be > 0, got {value}")
        for name in ("importance_decay", "target_scale", "lam", "learning_rate",
                     "weight_decay", "init_scale"):
            check_number(name, getattr(self, name))
        if self.lam < 0:
            raise ConfigError(f"lam must be >= 0, got {self.lam}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.importance_decay <= 0:
            raise ConfigError(f"importance_decay must be > 0, got {self.importance_decay}")
        if isinstance(self.record_points, bool) or not isinstance(self.record_points, int) \
                or self.record_points < 0:
            raise ConfigError(f"record_points must be an integer >= 0, got {self.record_points!r}")
        if self.record_spacing not in ("log", "linear"):
            raise ConfigError(f"record_spacing must be 'log' or 'linear', "
                              f"got {self.record_spacing!r}")
        for name in ("train_features", "train_head"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.tokens not in ("sparse", "onehot"):
            raise ConfigError(f"tokens must be 'sparse' or 'onehot', got {self.tokens!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(f"lr_schedule must be 'constant' or 'cosine', "
                              f"got {self.lr_schedule!r}")
        check_optimizer(self.optimizer)
        if self.attn_loss not in ("xent", "mse"):
            raise ConfigError(f"attn_loss must be 'xent' or 'mse', got {self.attn_loss!r}")
        _check_p_active(self.p_active, self.N)
        check_template(self.template, self.N)

    @property
    def p_active_vector(self) -> tuple[float, ...]:
        """p_active as one value per feature."""
        if isinstance(self.p_active, tuple):
            return self.p_active
        return (float(self.p_active),) * self.N

    def replace(self, **changes) -> "ToyConfig":
        unknown = sorted(set(changes) - set(field_names()))
        if unknown:
            raise ConfigError(f"unknown config field {unknown[0]!r}; known fields: "
                              + ", ".join(field_names()))
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["template"] = [list(p) for p in self.template]
        if isinstance(self.p_active, tuple):
            out["p_active"] = list(self.p_active)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "ToyConfig":
        d = dict(d)
        d["template"] = tuple((int(i), int(j), float(v)) for i, j, v in d.get("template", ()))
        if isinstance(d.get("p_active"), list):
            d["p_active"] = tuple(float(p) for p in d["p_active"])
        return cls(**d)


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(ToyConfig)]


def _check_p_active(p_active, N):
    values = p_active if isinstance(p_active, tuple) else (p_active,)
    if isinstance(p_active, tuple) and len(p_active) != N:
        raise ConfigError(f"p_active has {len(p_active)} values but N={N}; give one value "
                          "or one per feature")
    for p in values:
        check_number("p_active", p)
        if not 0 < p <= 1:
            raise ConfigError(f"p_active must be in (0, 1], got {p}")


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


def many_pairs(n_pairs: int, offset: int, high: float, low: float,
               spacing: str = "linear") -> tuple[Pair, ...]:
    """Pairs T[i, i + offset], i < n_pairs, with values falling from high to low,
    linearly or geometrically (each value the same fraction of the one before)."""
    if n_pairs == 1:
        return ((0, offset, float(high)),)
    if spacing == "geometric":
        ratio = (low / high) ** (1 / (n_pairs - 1))
        return tuple((i, i + offset, round(high * ratio ** i, 12)) for i in range(n_pairs))
    step = (high - low) / (n_pairs - 1)
    return tuple((i, i + offset, round(high - i * step, 12)) for i in range(n_pairs))


# Presets for the paper's experiments. Comments say why each choice was made.
PRESETS: dict[str, ToyConfig] = {
    # Paper §1 one-pair model: feature 0 on the query attends to feature 1 on a key.
    # λ=10 and target scale 5 rather than the prototype's 1 and 1 (paper-notes §6):
    # both align (|cos| >= 0.99), but only the stronger attention signal also pulls
    # the attended features out of superposition (interference 0.00 against 1.0;
    # README, "Findings"), as in the paper's Figure 1.
    "single-pair": ToyConfig(lam=10.0, target_scale=5.0, record_points=100),
    # Paper Figure 2b: 20 pairs T[i, i+20] with decreasing values. Found by the search
    # in README "Multi-pair search" (experiments/sweeps/multi_pair_search*.toml):
    # λ=300 pulls the 40 attended features out of superposition; target scale 10, lr
    # 1e-3 with cosine decay keep SGD noise from rotating singular vectors of nearby σ.
    # Values fall geometrically from 1 to 0.2 (8% apart), not linearly as in the paper:
    # linear values put the strongest pairs' σ 4-5% apart, where their singular vectors
    # mix (min matched |cos| 0.77 at best over 4 seeds), and the weakest below 1% of σ_1.
    "multi-pair": ToyConfig(
        N=100, D=50, H=50, m=8, p_active=0.1, lam=300.0, learning_rate=1e-3,
        lr_schedule="cosine",
        template=many_pairs(20, offset=20, high=1.0, low=0.2, spacing="geometric"),
        target_scale=10.0, steps=10_000,
    ),
    # Control: λ = 0, no template. Reconstruction alone; no feature is special.
    "no-head": ToyConfig(lam=0.0, template=()),
}


# Toy transformers (config_transformer.py) share the one preset namespace.
PRESETS.update(TRANSFORMER_PRESETS)


def preset(name: str) -> "ToyConfig | TransformerConfig":
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of: "
                          + ", ".join(PRESETS)) from None


# ---- parsing text overrides (--set key=value) -------------------------------------


def parse_value(name: str, text: str, config_class=ToyConfig):
    """Parse one `--set` value for field `name` of config_class from text, by its type."""
    fields = {f.name: f.type for f in dataclasses.fields(config_class)}
    if name not in fields:
        raise ConfigError(f"unknown config field {name!r}; known fields: " + ", ".join(fields))
    field_type = fields[name]
    text = text.strip()
    try:
        if field_type is int:
            return int(text)
        if field_type is float:
            return float(text)
        if field_type is str:
            return text
        if field_type is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        if name == "p_active":
            parts = [float(p) for p in text.split(",")]
            return parts[0] if len(parts) == 1 else tuple(parts)
        if name == "template":
            return parse_template(text)
        if name == "pairs":  # a transformer's planted pairs, like a template
            return parse_template(text)
        if name == "value_features":
            return tuple(int(v) for v in text.split(",") if v.strip())
        if name == "value_gains":
            return tuple(float(v) for v in text.split(",") if v.strip())
    except ConfigError:
        raise
    except ValueError:
        kind = {int: "an integer", float: "a number"}.get(field_type, "a valid value")
        raise ConfigError(f"{name}={text!r}: expected {kind}") from None
    raise AssertionError(f"no parser for field {name}")  # a new field needs one


def parse_template(text: str) -> tuple[Pair, ...]:
    """'0:1:1.0,2:3:0.5' -> ((0, 1, 1.0), (2, 3, 0.5)); '' -> no pairs."""
    if not text:
        return ()
    pairs = []
    for item in text.split(","):
        parts = item.split(":")
        if len(parts) != 3:
            raise ConfigError(f"template entry {item!r} must be query:key:value, e.g. 0:1:1.0")
        try:
            pairs.append((int(parts[0]), int(parts[1]), float(parts[2])))
        except ValueError:
            raise ConfigError(f"template entry {item!r} must be int:int:number") from None
    return tuple(pairs)


def apply_overrides(cfg: ToyConfig, assignments: list[str]) -> ToyConfig:
    """Apply `key=value` strings to a config (validation happens in ToyConfig)."""
    changes = {}
    for assignment in assignments:
        if "=" not in assignment:
            raise ConfigError(f"--set {assignment!r} must look like key=value")
        key, text = assignment.split("=", 1)
        changes[key.strip()] = parse_value(key.strip(), text, type(cfg))
    return cfg.replace(**changes)


MAX_SEED = 2**32 - 1
"""Seeds are unsigned 32-bit integers (training keys are made from uint32 seeds)."""

MAX_SEEDS = 1_000_000
"""More seeds than this in one run or sweep is refused before they are listed."""


def parse_seeds(text: str) -> tuple[int, ...]:
    """'0-7' -> 0..7; '1,4,9' -> (1, 4, 9); '3' -> (3,). See check_seeds."""
    bounds = []
    for part in text.split(","):
        part = part.strip()
        lo, dash, hi = part.partition("-")
        try:
            lo_i, hi_i = (int(lo), int(hi)) if dash else (int(part), int(part))
            if hi_i < lo_i or lo_i < 0:
                raise ValueError
        except ValueError:
            raise ConfigError(f"--seeds {text!r} is malformed; use a range like 0-7 "
                              "or a list like 0,3,5 of non-negative integers") from None
        bounds.append((lo_i, hi_i))
    count = sum(hi - lo + 1 for lo, hi in bounds)  # before listing them: '0-10**12' is cheap
    if count > MAX_SEEDS:
        raise ConfigError(f"--seeds {text!r} gives {count:,} seeds; at most {MAX_SEEDS:,} "
                          "are allowed")
    return check_seeds([s for lo, hi in bounds for s in range(lo, hi + 1)], f"--seeds {text!r}")


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


def estimate_bytes(cfg: ToyConfig, n_instances: int) -> int:
    """A rough lower bound of the memory that training and analysing n_instances of cfg
    needs, float32 throughout (documented in README "Bad input"):
      parameters W, b, W_Q, W_K, times 4 (values, gradients, Adam's two moments);
      one step's batch, batch_size x (m + 1) tokens of N features and D residuals, times
      ACTIVATION_FACTOR; loss curves (2 per step); recorded dynamics; and the analysis'
      cosines [N, K] (4 arrays) and feature Gram matrix [N, N]."""
    if isinstance(cfg, TransformerConfig):
        return transformer_bytes(cfg, n_instances, ACTIVATION_FACTOR)
    N, D, H, m = cfg.N, cfg.D, cfg.H, cfg.m
    K = min(H, D)
    params = 4 * (D * N + N + 2 * H * D)
    batch = ACTIVATION_FACTOR * cfg.batch_size * (m + 1) * (N + D)
    curves = 2 * cfg.steps
    records = cfg.record_points * (K + 3 * len(cfg.template) + N)
    analysis = 4 * N * K + N * N
    return 4 * n_instances * (params + batch + curves + records + analysis)


def machine_bytes() -> int | None:
    """Physical memory of this machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(cfg: ToyConfig, n_instances: int, what: str = "this run") -> None:
    """ConfigError when estimate_bytes exceeds this machine's memory."""
    need, have = estimate_bytes(cfg, n_instances), machine_bytes()
    if have is not None and need > have:
        raise ConfigError(f"{what} ({n_instances:,} instances, N={cfg.N}, batch_size="
                          f"{cfg.batch_size}, steps={cfg.steps}) needs about {_gb(need)} of "
                          f"memory; this machine has {_gb(have)}")


def _gb(n: int) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e8 else f"{n / 1e6:,.0f} MB"


# ---- instances: the vmapped axis of one run ---------------------------------------


@dataclass(frozen=True)
class Instance:
    """One model trained inside a run: its seed and its own batched hyperparameters."""

    seed: int
    lam: float
    learning_rate: float
    p_active: float | tuple[float, ...]
    target_scale: float

    def overrides(self) -> dict:
        return {name: (list(v) if isinstance(v := getattr(self, name), tuple) else v)
                for name in BATCHED_FIELDS}


def make_instances(cfg: ToyConfig, seeds, vary: dict | None = None) -> list[Instance]:
    """The grid seeds × vary[field] values; unvaried fields take the config's value.

    vary maps a BATCHED_FIELDS name to the list of values its instances take.
    """
    import itertools

    if not isinstance(cfg, (ToyConfig, TransformerConfig)):
        raise ConfigError(f"make_instances needs a config (toymodels.preset(name)), got "
                          f"{type(cfg).__name__}")
    if vary is not None and not isinstance(vary, dict):
        raise ConfigError(f"vary must map a field to its values, e.g. {{'lam': [1.0, 2.0]}}, "
                          f"got {vary!r}")
    for name, values in (vary or {}).items():
        if not isinstance(values, (list, tuple)):
            raise ConfigError(f"vary {name}: give a list of values, e.g. [1.0, 2.0], got "
                              f"{values!r}")
    seeds = check_seeds(seeds)
    if isinstance(cfg, TransformerConfig):
        check_fits(cfg, len(seeds) * math.prod(len(v) for v in (vary or {}).values()))
        return make_transformer_instances(cfg, seeds, vary)

    vary = dict(vary or {})
    for name, values in vary.items():
        if name not in BATCHED_FIELDS:
            raise ConfigError(f"--vary {name}: only {', '.join(BATCHED_FIELDS)} can differ "
                              "between instances of one run (other fields change shapes)")
        if not values:
            raise ConfigError(f"--vary {name} has no values")
        for value in values:  # each value must make a valid config on its own
            cfg.replace(**{name: value})
    seeds = check_seeds(seeds)
    n_instances = len(seeds) * math.prod(len(v) for v in vary.values())
    check_fits(cfg, n_instances)  # before any instance is built
    names = list(vary)
    instances = []
    for combo in itertools.product(*(vary[n] for n in names)):
        point = dict(zip(names, combo))
        for seed in seeds:
            fields = {n: point.get(n, getattr(cfg, n)) for n in BATCHED_FIELDS}
            instances.append(Instance(seed=int(seed), **fields))
    return instances


def parse_vary(assignments: list[str]) -> dict:
    """['lam=0.5,1,2'] -> {'lam': [0.5, 1.0, 2.0]} (p_active values are scalars here)."""
    vary = {}
    for assignment in assignments:
        if "=" not in assignment:
            raise ConfigError(f"--vary {assignment!r} must look like key=v1,v2,...")
        key, text = (s.strip() for s in assignment.split("=", 1))
        if key not in BATCHED_FIELDS + TRANSFORMER_BATCHED_FIELDS:
            raise ConfigError(f"--vary {key}: only {', '.join(BATCHED_FIELDS)} (toy) or "
                              f"{', '.join(TRANSFORMER_BATCHED_FIELDS)} (transformer) can differ "
                              "between instances of one run (other fields change shapes)")
        try:
            vary[key] = [float(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"--vary {assignment!r}: values must be numbers") from None
    return vary
