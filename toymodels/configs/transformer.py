"""Configuration of toy transformers trained on planted-feature tasks.

Notation (docs/science.md), plus:
  L  layers              n_heads  heads per layer     T  sequence length (last token = query)
  E  [D, N] embedding: a token with features f has residual E f; the output is read back
     through the same E (tied), so "value feature v reaches the output" means E_vᵀ x.
  P  planted (query, key) pairs; V value features with gains g_v

Feature sets are disjoint: query features i_p, key features j_p (pair p), value features
V; every other feature is background (active with p_active on every token). Nothing in
the loss names a feature pair: the task only asks for the value features of the right
token, and the head has to find out which token that is.

Every check runs here, before any work starts (ConfigError: one line, exit 2).
"""

import dataclasses
from dataclasses import dataclass

from toymodels.configs.fields import (ACTIVATION_FACTOR, STRUCTURE_FIELDS, check_int,
                                      check_number, check_optimizer, check_structure,
                                      feature_structure, instance_grid, structure_dict,
                                      structure_from_dict)
from toymodels.errors import ConfigError

TASKS = ("retrieval", "rope", "control")
POSITIONS = ("none", "learned", "rope")
EMBEDDINGS = ("fixed", "learned")

TRANSFORMER_BATCHED_FIELDS = ("learning_rate", "p_active")
FRAMES = ("random", "axis")
"""Hyperparameters that may differ between instances of one compiled program."""


@dataclass(frozen=True)
class TransformerConfig:
    """A small transformer (Flax NNX) and the planted-feature task it learns."""

    # ---- the task ----
    task: str = "retrieval"
    """'retrieval': the query token carries query feature i_p of a pair p (drawn with
    probability ∝ pair weight); exactly one earlier token carries key feature j_p (with
    several pairs, every other earlier token carries another pair's key feature); the
    output must be the value features of that token, times their gains.
    'rope': the token carrying j_p sits at the fixed offset `offset` before the query,
    and earlier tokens at other offsets carry j_p too (half of them, at random): the head
    must pair the features *and* the offset (paper Appendix D; needs positions='rope').
    'control': the same tokens as 'retrieval' (the query feature too), but the output is
    always the uniform average of the value features (as for queries without their query
    feature): no feature pairing is needed."""
    N: int = 16
    """Number of features (query, key, value and background features together)."""
    pairs: tuple[tuple[int, int, float], ...] = ((0, 1, 1.0),)
    """Planted pairs (query_feature, key_feature, weight); weight ∝ how often the pair is
    drawn, so several pairs have different frequencies (the task-loss analogue of the
    paper's template values)."""
    value_features: tuple[int, ...] = (2, 3, 4, 5)
    """Features whose values the output must retrieve."""
    value_gains: tuple[float, ...] = (1.0, 0.8, 0.6, 0.4)
    """Output v = gain_v × value feature v of the retrieved token. Distinct gains give OV
    distinct singular values, so its singular vectors are defined one by one."""
    T: int = 8
    """Sequence length: T − 1 earlier tokens, then the query token."""
    offset: int = 3
    """(task='rope') the retrieved token sits this many positions before the query."""
    p_active: float = 0.3
    """Probability that a value or background feature is active on a token (U[0, 1])."""
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
    p_query: float = 0.5
    """Probability that the query token carries its pair's query feature. Otherwise the
    output is the sum of the value features over all T tokens divided by T (what uniform
    attention gives): without such queries, nothing would stop a head from also reading
    background features on the query side, which only sharpen its attention."""

    # ---- the model ----
    D: int = 16
    """Residual width."""
    H: int = 8
    """Head dimension."""
    n_heads: int = 2
    """Heads per layer."""
    n_layers: int = 1
    """Layers (1 to 4)."""
    mlp: bool = False
    """Add an MLP block (width 4D, GELU) to every layer."""
    layernorm: bool = False
    """Pre-LayerNorm before attention and MLP, and a final LayerNorm before the readout."""
    bias: bool = False
    """Biases on Q, K, V and O."""
    positions: str = "none"
    """'none', 'learned' (absolute, added to the embedding) or 'rope' (rotary, on Q and K)."""
    rope_base: float = 10.0
    """RoPE frequencies θ_m = rope_base^(−2m/H). Small, so that short sequences see distinct
    angles (GPT-NeoX's 10,000 gives near-identical rotations over 8 positions)."""
    embedding: str = "fixed"
    """'fixed': E stays a random frame with anisotropy ε (below); 'learned': E trains."""
    frame: str = "random"
    """Where the fixed embedding puts the features: 'random' (a random frame, rotated
    against the residual stream's axes) or 'axis' (feature i on axis i; needs N = D and
    anisotropy 0). An optimizer with per-coordinate steps (AdamW) sees the difference."""
    anisotropy: float = 0.0
    """ε = ‖E_X‖₂/α of the fixed frame E (theory checks' scale); 0 is a tight frame
    (orthonormal features when N = D)."""
    init_scale: float = 0.1
    """Std of initial Q, K, V, O and MLP entries, times 1/sqrt(fan-in): small, so that what
    the heads hold at the end is what training put there."""

    # ---- training ----
    optimizer: str = "adamw"
    """'adamw', 'sgd' or 'adamw_rotated' (see ToyConfig.optimizer)."""
    learning_rate: float = 3e-3
    """AdamW learning rate."""
    lr_schedule: str = "cosine"
    """'constant' or 'cosine' (decays to 0 at the last step)."""
    weight_decay: float = 0.05
    """AdamW decoupled weight decay (it also shrinks what an unused head keeps)."""
    batch_size: int = 256
    """Sequences per training step."""
    steps: int = 3000
    """Training steps."""
    chunk_steps: int = 250
    """Steps per compiled lax.scan chunk."""
    record_points: int = 30
    """Record alignment and attention accuracy at this many steps (0: off)."""
    record_spacing: str = "log"
    """'log' or 'linear' spacing of record points."""

    family = "transformer"  # a class attribute, not a field: which family trains it

    @property
    def structure(self):
        """How value and background features fire together (tasks/structure.py); None:
        independently."""
        return feature_structure(self)
    BATCHED_FIELDS = TRANSFORMER_BATCHED_FIELDS

    def __post_init__(self):
        for name in ("N", "T", "D", "H", "n_heads", "n_layers", "batch_size", "steps",
                     "chunk_steps"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("record_points", self.record_points, minimum=0)
        check_int("offset", self.offset, minimum=1)
        for name in ("p_active", "p_query", "learning_rate", "weight_decay", "anisotropy", "init_scale",
                     "rope_base"):
            check_number(name, getattr(self, name))
        if not 1 <= self.n_layers <= 4:
            raise ConfigError(f"n_layers must be 1 to 4, got {self.n_layers}")
        for name, allowed in (("task", TASKS), ("positions", POSITIONS),
                              ("embedding", EMBEDDINGS), ("lr_schedule", ("constant", "cosine")),
                              ("record_spacing", ("log", "linear"))):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, "
                                  f"got {getattr(self, name)!r}")
        for name in ("mlp", "layernorm", "bias"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not 0 < self.p_active <= 1:
            raise ConfigError(f"p_active must be in (0, 1], got {self.p_active}")
        if not 0 <= self.p_query <= 1:
            raise ConfigError(f"p_query must be in [0, 1], got {self.p_query}")
        if self.learning_rate <= 0 or self.weight_decay < 0 or self.init_scale <= 0:
            raise ConfigError("learning_rate and init_scale must be > 0 and weight_decay >= 0")
        if self.rope_base <= 1:
            raise ConfigError(f"rope_base must be > 1, got {self.rope_base}")
        if self.positions == "rope" and self.H % 2:
            raise ConfigError(f"RoPE rotates pairs of head dimensions: H must be even, "
                              f"got H={self.H}")
        if (self.task == "rope") != (self.positions == "rope"):
            raise ConfigError("RoPE goes with task 'rope' (its heads are analysed per offset "
                              "Ω_δ at the task's offset): set task=rope with positions=rope")
        if self.task != "control" and self.p_query == 0:
            raise ConfigError(f"p_query=0 never asks the {self.task} task's question; "
                              "give p_query > 0")
        if self.embedding == "learned" and self.anisotropy:
            raise ConfigError("anisotropy shapes the fixed frame; a learned embedding "
                              "ignores it: set embedding=fixed or anisotropy=0")
        if self.embedding == "fixed" and self.N < self.D:
            raise ConfigError(f"a fixed frame needs N >= D (got N={self.N}, D={self.D}); "
                              "raise N (background features) or lower D")
        check_optimizer(self.optimizer)
        if self.frame not in FRAMES:
            raise ConfigError(f"frame must be one of {', '.join(FRAMES)}, got {self.frame!r}")
        if self.frame == "axis" and (self.embedding != "fixed" or self.N != self.D
                                     or self.anisotropy):
            raise ConfigError(f"frame=axis puts feature i on axis i: it needs embedding=fixed, "
                              f"N = D and anisotropy 0 (got {self.embedding}, N={self.N}, "
                              f"D={self.D}, anisotropy {self.anisotropy})")
        if self.embedding == "fixed" and self.D < 2:
            raise ConfigError(f"a fixed frame needs D >= 2 (got D={self.D}); raise D or set "
                              "embedding=learned")
        if self.embedding == "fixed" and not 0 <= self.anisotropy < self.D - 1:
            raise ConfigError(f"anisotropy must be in [0, D-1) = [0, {self.D - 1}), "
                              f"got {self.anisotropy}")
        self._check_features()

    def _check_features(self):
        if not isinstance(self.pairs, tuple):
            raise ConfigError(f"pairs must be a tuple of (query_feature, key_feature, weight) "
                              f"triples (--set pairs=0:1:1.0,2:3:0.5), got {self.pairs!r}")
        if not self.pairs:
            raise ConfigError("pairs must list at least one (query_feature, key_feature, weight)")
        if not isinstance(self.value_features, tuple):
            raise ConfigError(f"value_features must be a tuple of feature indices "
                              f"(--set value_features=4,5), got {self.value_features!r}")
        if not self.value_features:
            raise ConfigError("value_features must list at least one feature")
        if not isinstance(self.value_gains, tuple):
            raise ConfigError("value_gains must be a tuple of numbers, one per value feature")
        if len(self.value_gains) != len(self.value_features):
            raise ConfigError(f"value_gains has {len(self.value_gains)} values but there are "
                              f"{len(self.value_features)} value features; give one per feature")
        for pair in self.pairs:
            if not (isinstance(pair, tuple) and len(pair) == 3):
                raise ConfigError(f"pair {pair!r} is not (query_feature, key_feature, weight)")
            check_number("pair weight", pair[2])
            if pair[2] <= 0:
                raise ConfigError(f"pair weight must be > 0, got {pair[2]}")
        for g in self.value_gains:
            check_number("value gain", g)
            if g <= 0:
                raise ConfigError(f"value gains must be > 0 (equal gains make OV's singular "
                                  f"vectors degenerate), got {g}")
        queries = [p[0] for p in self.pairs]
        keys = [p[1] for p in self.pairs]
        for name, idx in (("query", queries), ("key", keys), ("value", self.value_features)):
            for i in idx:
                if isinstance(i, bool) or not isinstance(i, int):
                    raise ConfigError(f"{name} feature {i!r} must be an integer feature index")
                if not 0 <= i < self.N:
                    raise ConfigError(f"{name} feature {i!r} is outside the features "
                                      f"0..{self.N - 1} (N={self.N})")
            if len(set(idx)) != len(idx):
                raise ConfigError(f"a {name} feature appears twice in the "
                                  f"{'pairs' if name != 'value' else 'value features'}; "
                                  "each pair needs its own query and key feature")
        sets = {"query": set(queries), "key": set(keys), "value": set(self.value_features)}
        for a, b in (("query", "key"), ("query", "value"), ("key", "value")):
            both = sets[a] & sets[b]
            if both:
                raise ConfigError(f"feature {min(both)} is both a {a} and a {b} feature; the "
                                  "task needs disjoint query, key and value features")
        if self.task == "rope" and self.offset > self.T - 1:
            raise ConfigError(f"offset {self.offset} needs at least {self.offset + 1} tokens; "
                              f"T={self.T} is too short")
        if self.T < 2 or (self.task != "rope" and len(self.pairs) > 1 and self.T < 3):
            raise ConfigError(f"T={self.T} is too short for the task: it needs the query and "
                              "at least one earlier token (two with several pairs)")
        if check_structure(self) is not None:
            self._check_structure_roles()

    def _check_structure_roles(self):
        """The task places query and key features; a structure shapes how value features
        (on earlier tokens) and background features (on every token) fire, each group and
        each parent-child link within one of the two."""
        role = {i: "value" for i in self.value_features} | {i: "background"
                                                            for i in self.background}
        links = [(name, g) for name in ("corr_blocks", "exclusive") for g in getattr(self, name)]
        links += [("parents", (child, parent)) for child, parent in enumerate(self.parents)
                  if parent >= 0]
        for name, group in links:
            kinds = {role.get(i, "query or key") for i in group}
            if len(kinds) > 1 or "query or key" in kinds:
                raise ConfigError(f"{name} {list(group)} mixes {' and '.join(sorted(kinds))} "
                                  "features; a structure links value features with value "
                                  "features or background with background (the task places "
                                  "query and key features)")

    # ---- derived ----
    @property
    def queries(self) -> tuple[int, ...]:
        return tuple(p[0] for p in self.pairs)

    @property
    def keys(self) -> tuple[int, ...]:
        return tuple(p[1] for p in self.pairs)

    @property
    def background(self) -> tuple[int, ...]:
        used = set(self.queries) | set(self.keys) | set(self.value_features)
        return tuple(i for i in range(self.N) if i not in used)

    @property
    def qk_template(self) -> tuple[tuple[int, int, float], ...]:
        """Ground truth of QK, in the analysis' template form (query_feature, key_feature,
        weight): Ω should pair E_i (left singular vector) with E_j (right)."""
        return tuple((int(i), int(j), float(w)) for i, j, w in self.pairs)

    @property
    def ov_template(self) -> tuple[tuple[int, int, float], ...]:
        """Ground truth of OV = W_O W_V: value feature v (right singular vector, what the
        head reads) goes to the output direction E_v (left), with gain g_v."""
        return tuple((int(v), int(v), float(g)) for v, g in zip(self.value_features,
                                                               self.value_gains))

    def replace(self, **changes) -> "TransformerConfig":
        unknown = sorted(set(changes) - set(transformer_field_names()))
        if unknown:
            raise ConfigError(f"unknown config field {unknown[0]!r}; known fields: "
                              + ", ".join(transformer_field_names()))
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in STRUCTURE_FIELDS}
        out |= structure_dict(self)
        out["pairs"] = [list(p) for p in self.pairs]
        out["value_features"] = list(self.value_features)
        out["value_gains"] = list(self.value_gains)
        return out

    def estimate_bytes(self, n_instances: int) -> int:
        """A rough lower bound of the memory training n_instances needs, float32 (as
        ToyConfig.estimate_bytes): parameters x 4 (values, gradients, Adam moments),
        one step's activations x ACTIVATION_FACTOR, loss curves, and recorded parameters."""
        L, n, H, D, N, T = self.n_layers, self.n_heads, self.H, self.D, self.N, self.T
        params = D * N + L * (4 * n * H * D + 3 * n * H + D) + T * D + L * 8 * D * D * self.mlp
        batch = self.batch_size * T * (N + L * (3 * D + 3 * n * H + n * T + 4 * D * self.mlp))
        records = self.record_points * (params + 3 * L * n)
        return 4 * n_instances * (4 * params + ACTIVATION_FACTOR * batch + 2 * self.steps + records)

    def make_instances(self, seeds, vary: dict | None = None) -> list["TransformerInstance"]:
        """The grid seeds × vary[field] values (fields.instance_grid)."""
        return instance_grid(self, seeds, vary, TransformerInstance)

    def instance(self, seed: int, **batched) -> "TransformerInstance":
        """One instance: its seed and batched fields (the config's value where not given)."""
        return TransformerInstance(seed=seed, **{n: batched.get(n, getattr(self, n))
                                                 for n in TRANSFORMER_BATCHED_FIELDS})

    STORED_CURVES = ("task",)
    """Loss curves every stored run of this family has (curves.npz)."""

    def param_shapes(self, n_instances: int) -> dict[str, tuple[int, ...]]:
        """The shapes of the core arrays a run of n_instances stores in params.npz."""
        I, L, n, H, D = n_instances, self.n_layers, self.n_heads, self.H, self.D
        return {"E": (I, D, self.N), "W_Q": (I, L, n, H, D), "W_K": (I, L, n, H, D),
                "W_V": (I, L, n, H, D), "W_O": (I, L, n, D, H)}

    @classmethod
    def from_dict(cls, d: dict) -> "TransformerConfig":
        d = structure_from_dict(d)
        d["pairs"] = tuple((int(i), int(j), float(w)) for i, j, w in d.get("pairs", ()))
        d["value_features"] = tuple(int(v) for v in d.get("value_features", ()))
        d["value_gains"] = tuple(float(g) for g in d.get("value_gains", ()))
        return cls(**d)


def transformer_field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TransformerConfig)]


def linear_weights(n: int, high: float = 1.0, low: float = 0.25) -> tuple[float, ...]:
    return tuple(round(high - (high - low) * k / max(n - 1, 1), 6) for k in range(n))


def multi_pairs(n_pairs: int, weights) -> tuple[tuple[int, int, float], ...]:
    """Pairs (p, n_pairs + p, weight_p): query features first, then key features."""
    return tuple((p, n_pairs + p, float(w)) for p, w in zip(range(n_pairs), weights))


# Presets. Sizes are chosen so that 8 seeds train on a 2-core CPU in a few minutes.
TRANSFORMER_PRESETS: dict[str, TransformerConfig] = {
    # One pair, one layer, two heads, attention only, fixed orthonormal embeddings: the
    # cleanest test of whether a head that is never told which features to pair finds
    # (E_0, E_1) on QK and the value features on OV; the second head has no job.
    "transformer-retrieval": TransformerConfig(),
    # Six pairs drawn with frequencies falling from 1 to 0.25, two heads of H = 8: the
    # task-loss analogue of the paper's many-pair template (set H=4 for pairs > H).
    "transformer-multi-pair": TransformerConfig(
        N=32, D=32, pairs=multi_pairs(6, linear_weights(6)),
        value_features=(12, 13, 14, 15), T=8, steps=4000),
    # RoPE, the key token 3 positions before the query, decoys with the same key feature
    # at other offsets: Ω_δ at δ = 3 should align with (E_0, E_1), other offsets not.
    "transformer-rope": TransformerConfig(task="rope", positions="rope", n_heads=1, steps=4000),
    # Control: the same tokens, but the output is the mean of the value features; no
    # pairing is needed, so QK alignment with (E_0, E_1) should look like the baseline.
    "transformer-control": TransformerConfig(task="control", steps=3000),
    # What realism costs: two layers, MLPs, pre-LayerNorm, biases, learned positions and
    # learned (tied) embeddings.
    "transformer-full": TransformerConfig(
        n_layers=2, mlp=True, layernorm=True, bias=True, positions="learned",
        embedding="learned", steps=4000),
    # Beyond independent features: the retrieval task with its value features 2-5 firing
    # together (a Gaussian copula, ρ = 0.6; rates unchanged), so OV sees correlated inputs.
    "transformer-correlated": TransformerConfig(corr_blocks=((2, 3, 4, 5),), corr=0.6),
    # ... and nested: value feature 3 fires only with 2 and 4 only with 3 (depth 2), and
    # background 7 only with 6, each with probability 0.8 given its parent.
    "transformer-hierarchical": TransformerConfig(
        parents=(-1, -1, -1, 2, 3, -1, -1, 6) + (-1,) * 8, conditional=0.8),
}


# ---- instances: the vmapped axis of one run ---------------------------------------


@dataclass(frozen=True)
class TransformerInstance:
    """One transformer trained inside a run: its seed and its own batched hyperparameters."""

    seed: int
    learning_rate: float
    p_active: float

    def overrides(self) -> dict:
        return {name: getattr(self, name) for name in TRANSFORMER_BATCHED_FIELDS}
