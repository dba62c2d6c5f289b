"""The paper's toy model's configuration: a frozen dataclass, its presets and instances.

Notation (docs/science.md):
  N  ground-truth features      D  residual dimension
  H  head dimension             m  key tokens per query
  T  [N, N] attention template, given sparsely as (query_feature, key_feature, value)

Every check here runs before any work starts, so bad input never costs a
compile or touches a run directory.
"""

import dataclasses
from dataclasses import dataclass

from toymodels.configs.fields import (ACTIVATION_FACTOR, STRUCTURE_FIELDS, check_structure,
                                      feature_structure, structure_dict, structure_from_dict, Pair, check_number, check_optimizer,
                                      check_template, instance_grid)
from toymodels.errors import ConfigError

# Scalar hyperparameters that may differ between instances of one compiled
# program (they ride along the vmapped instance axis). Everything else is
# shared by all instances of a run because it fixes shapes or the program.
BATCHED_FIELDS = ("lam", "learning_rate", "p_active", "target_scale")


@dataclass(frozen=True)
class ToyConfig:
    """The paper's toy model: a superposition autoencoder with one bilinear attention head."""

    family = "toy"  # a class attribute, not a field: which family trains it (families/)
    BATCHED_FIELDS = BATCHED_FIELDS

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
    corr_blocks: tuple[tuple[int, ...], ...] = ()
    """Groups of features whose firing is correlated (a Gaussian copula over which
    features fire, correlation `corr` within each group; rates stay p_active). Text form
    '0,1,2;3,4'. Empty: none."""
    corr: float = 0.0
    """Correlation of the copula within each of corr_blocks (the matrix must stay positive
    semi-definite: >= -1/(k-1) for a group of k)."""
    parents: tuple[int, ...] = ()
    """Hierarchy: each feature's parent index, -1 for a root ('-1,0,0,1'; empty: none). A
    child fires only when its parent does, then with probability `conditional`; trees of
    any depth, no cycles."""
    conditional: float = 0.5
    """P(child fires | parent fires), for every child of `parents`."""
    exclusive: tuple[tuple[int, ...], ...] = ()
    """Groups of features of which at most one fires per token ('0,1;2,3'; rates stay
    p_active, so each group's rates must sum to <= 1)."""
    zipf_exponent: float = 0.0
    """a > 0: feature i fires with p_active · (i + 1)^(-a) (Zipfian frequencies); 0: off."""
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
    orthogonal basis of each parameter (training/optimizers.py), so no axis of the model is
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
        if check_structure(self) is not None and self.tokens == "onehot":
            raise ConfigError("a feature structure (corr_blocks, parents, exclusive, "
                              "zipf_exponent) needs tokens='sparse': one-hot tokens carry "
                              "one feature each")

    @property
    def structure(self):
        """How features fire together (tasks/structure.FeatureStructure); None: independently."""
        return feature_structure(self)

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
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in STRUCTURE_FIELDS}
        out |= structure_dict(self)
        out["template"] = [list(p) for p in self.template]
        if isinstance(self.p_active, tuple):
            out["p_active"] = list(self.p_active)
        return out

    def estimate_bytes(self, n_instances: int) -> int:
        """A rough lower bound of the memory that training and analysing n_instances of it
        needs, float32 throughout (documented in README "Bad input"):
          parameters W, b, W_Q, W_K, times 4 (values, gradients, Adam's two moments);
          one step's batch, batch_size x (m + 1) tokens of N features and D residuals, times
          ACTIVATION_FACTOR; loss curves (2 per step); recorded dynamics; and the analysis'
          cosines [N, K] (4 arrays) and feature Gram matrix [N, N]."""
        N, D, H, m = self.N, self.D, self.H, self.m
        K = min(H, D)
        params = 4 * (D * N + N + 2 * H * D)
        batch = ACTIVATION_FACTOR * self.batch_size * (m + 1) * (N + D)
        curves = 2 * self.steps
        records = self.record_points * (K + 3 * len(self.template) + N)
        analysis = 4 * N * K + N * N
        return 4 * n_instances * (params + batch + curves + records + analysis)

    def make_instances(self, seeds, vary: dict | None = None) -> list["Instance"]:
        """The grid seeds × vary[field] values (fields.instance_grid)."""
        return instance_grid(self, seeds, vary, Instance)

    def instance(self, seed: int, **batched) -> "Instance":
        """One instance: its seed and batched fields (the config's value where not given)."""
        return Instance(seed=seed, **{n: batched.get(n, getattr(self, n))
                                      for n in BATCHED_FIELDS})

    STORED_CURVES = ("recon", "attn")
    """Loss curves every stored run of this family has (curves.npz)."""

    def param_shapes(self, n_instances: int) -> dict[str, tuple[int, ...]]:
        """The shapes a run of n_instances stores in params.npz."""
        I = n_instances
        return {"W": (I, self.D, self.N), "b": (I, self.N), "W_Q": (I, self.H, self.D),
                "W_K": (I, self.H, self.D)}

    @classmethod
    def from_dict(cls, d: dict) -> "ToyConfig":
        d = structure_from_dict(d)
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
TOY_PRESETS: dict[str, ToyConfig] = {
    # Paper §1 one-pair model: feature 0 on the query attends to feature 1 on a key.
    # λ=10 and target scale 5 rather than the prototype's 1 and 1:
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
    # Beyond independent features (docs/findings.md, feature structure): the one-pair model
    # whose query feature 0 co-fires with 2, 3, 4 and key feature 1 with 5, 6, 7 (a Gaussian
    # copula, ρ = 0.6; rates unchanged): Ω*'s top pair tilts towards the partners.
    "single-pair-correlated": ToyConfig(lam=10.0, target_scale=5.0, record_points=100,
                                        corr_blocks=((0, 2, 3, 4), (1, 5, 6, 7)), corr=0.6),
    # ... and a depth-2 hierarchy: 2 fires only with 0, 3 only with 2 (and 5, 6 under 1),
    # each with probability 0.9 given its parent, the nesting behind feature absorption.
    "single-pair-hierarchical": ToyConfig(lam=10.0, target_scale=5.0, record_points=100,
                                          parents=(-1, -1, 0, 2, -1, 1, 5) + (-1,) * 13,
                                          conditional=0.9),
}


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
