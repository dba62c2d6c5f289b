"""What to train: each family's frozen config and presets, and the one path from text or
TOML to typed values. Imports no JAX, so bad input is refused before JAX loads.

  fields.py       validators every family shares; the grid of instances of one run
  parse.py        --set / --vary / --seeds text and TOML values -> typed config values
  toy.py          the paper's toy model (ToyConfig, Instance, its presets)
  transformer.py  toy transformers on retrieval tasks (TransformerConfig, its presets)

A config class names its family (`cfg.family`, a class attribute) and knows its batched
fields (BATCHED_FIELDS), its memory estimate (estimate_bytes) and its instances
(make_instances). `register` adds a family's config class and presets; families/ holds
what trains and analyses it.
"""

from toymodels.configs.fields import (ACTIVATION_FACTOR, MAX_SEED, MAX_SEEDS, OPTIMIZERS,
                                      Pair, check_fits, check_number, check_optimizer,
                                      check_seed, check_seeds, check_template, machine_bytes)
from toymodels.configs.parse import (apply_overrides, parse_seeds, parse_template,
                                     parse_value, parse_vary, typed)
from toymodels.configs.toy import (BATCHED_FIELDS, TOY_PRESETS, Instance, ToyConfig,
                                   field_names, many_pairs)
from toymodels.configs.transformer import (TRANSFORMER_BATCHED_FIELDS, TRANSFORMER_PRESETS,
                                           TransformerConfig, TransformerInstance, linear_weights,
                                           multi_pairs, transformer_field_names)
from toymodels.errors import ConfigError

CONFIG_CLASSES: dict[str, type] = {"toy": ToyConfig, "transformer": TransformerConfig}
"""Family name -> config class (a run's summary.json names its family)."""

PRESETS: dict = {**TOY_PRESETS, **TRANSFORMER_PRESETS}
"""Every family's presets, in one namespace."""


def register(config_class: type, presets: dict | None = None) -> None:
    """Add a family's config class (it names its `family`) and its presets."""
    clash = set(presets or {}) & set(PRESETS)
    if clash:
        raise ConfigError(f"preset {sorted(clash)[0]!r} exists already; give it another name")
    CONFIG_CLASSES[config_class.family] = config_class
    PRESETS.update(presets or {})


def config_class(family: str) -> type:
    """The config class of a family name, as a run's summary.json records it."""
    try:
        return CONFIG_CLASSES[family]
    except KeyError:
        raise ConfigError(f"unknown family {family!r}; known: "
                          + ", ".join(CONFIG_CLASSES)) from None


def is_config(cfg) -> bool:
    return type(cfg) in CONFIG_CLASSES.values()


def preset(name: str):
    """A preset config by name (PRESETS)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of: "
                          + ", ".join(PRESETS)) from None


def make_instances(cfg, seeds, vary: dict | None = None) -> list:
    """The instances of one run of cfg: the grid seeds × vary[field] values, where vary maps
    a batched field (cfg.BATCHED_FIELDS) to the values its instances take."""
    if not is_config(cfg):
        raise ConfigError(f"make_instances needs a config (toymodels.preset(name)), got "
                          f"{type(cfg).__name__}")
    return cfg.make_instances(seeds, vary)


def estimate_bytes(cfg, n_instances: int) -> int:
    return cfg.estimate_bytes(n_instances)


__all__ = ["ACTIVATION_FACTOR", "BATCHED_FIELDS", "CONFIG_CLASSES", "ConfigError", "Instance",
           "MAX_SEED", "MAX_SEEDS", "OPTIMIZERS", "PRESETS", "Pair", "TOY_PRESETS",
           "TRANSFORMER_BATCHED_FIELDS", "TRANSFORMER_PRESETS", "ToyConfig",
           "TransformerConfig", "TransformerInstance", "apply_overrides", "check_fits",
           "check_number", "check_optimizer", "check_seed", "check_seeds", "check_template",
           "config_class", "estimate_bytes", "field_names", "is_config", "linear_weights",
           "machine_bytes", "make_instances", "many_pairs", "multi_pairs", "parse_seeds",
           "parse_template", "parse_value", "parse_vary", "preset", "register", "typed"]
