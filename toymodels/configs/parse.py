"""The one path from text (--set, --vary, --seeds) or TOML (sweep specs) to typed config
values. A value is parsed by its field's declared type, so a new field of a known type
needs no parser of its own.

Field types and their text forms:
  int, float, str, bool        '3', '1e-3', 'cosine', 'true'
  float | tuple[float, ...]    '0.1' or '0.1,0.2,0.3' (one value or one per feature)
  tuple[Pair, ...]             '0:1:1.0,2:3:0.5' (query:key:value)
  tuple[int, ...]              '2,3,4'
  tuple[float, ...]            '1,0.8'
  tuple[tuple[int, ...], ...]  '0,1,2;3,4' (groups of feature indices)
"""

import dataclasses

from toymodels.configs.fields import Pair, check_seeds, MAX_SEEDS
from toymodels.errors import ConfigError

_TUPLE_OF_PAIRS = tuple[Pair, ...]


def _field_types(config_class) -> dict:
    return {f.name: f.type for f in dataclasses.fields(config_class)}


def _field_type(name: str, config_class):
    types = _field_types(config_class)
    if name not in types:
        raise ConfigError(f"unknown config field {name!r}; known fields: " + ", ".join(types))
    return types[name]


def parse_value(name: str, text: str, config_class):
    """One `--set` value for field `name` of config_class, parsed from text by its type."""
    field_type = _field_type(name, config_class)
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
        if field_type == float | tuple[float, ...]:
            parts = [float(p) for p in text.split(",")]
            return parts[0] if len(parts) == 1 else tuple(parts)
        if field_type == _TUPLE_OF_PAIRS:
            return parse_template(text)
        if field_type == tuple[int, ...]:
            return tuple(int(v) for v in text.split(",") if v.strip())
        if field_type == tuple[float, ...]:
            return tuple(float(v) for v in text.split(",") if v.strip())
        if field_type == tuple[tuple[int, ...], ...]:
            return tuple(tuple(int(v) for v in group.split(",") if v.strip())
                         for group in text.split(";") if group.strip())
    except ConfigError:
        raise
    except ValueError:
        kind = {int: "an integer", float: "a number"}.get(field_type, "a valid value")
        raise ConfigError(f"{name}={text!r}: expected {kind}") from None
    raise AssertionError(f"no parser for field {name} of type {field_type}")  # a new type


def typed(name: str, value, config_class):
    """A TOML value as field `name`'s type: text for a structured field (templates, pairs,
    per-feature lists) goes through parse_value; ints for float fields become floats; lists
    become the field's tuples. Values of the wrong kind (TOML types its scalars) pass
    through, for the config's own checks to refuse in one line."""
    field_type = _field_type(name, config_class)
    if isinstance(value, str) and field_type not in (str, int, float, bool):
        return parse_value(name, value, config_class)  # e.g. a template as "0:1:1.0,2:3:0.5"
    if field_type is float and _is_int(value):
        return float(value)
    if isinstance(value, list):
        if field_type == _TUPLE_OF_PAIRS:
            return tuple(tuple(p) if isinstance(p, list) else p for p in value)
        if field_type == float | tuple[float, ...]:
            return tuple(float(p) if _is_int(p) else p for p in value)
        if field_type in (tuple[int, ...], tuple[float, ...]):
            return tuple(value)  # as written: sweep hashes of stored specs stay the same
        if field_type == tuple[tuple[int, ...], ...]:
            return tuple(tuple(g) if isinstance(g, list) else g for g in value)
    return value


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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


def apply_overrides(cfg, assignments: list[str]):
    """Apply `key=value` strings to a config (its own checks validate the result)."""
    changes = {}
    for assignment in assignments:
        if "=" not in assignment:
            raise ConfigError(f"--set {assignment!r} must look like key=value")
        key, text = assignment.split("=", 1)
        changes[key.strip()] = parse_value(key.strip(), text, type(cfg))
    return cfg.replace(**changes)


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



def parse_vary(assignments: list[str], config_class=None) -> dict:
    """['lam=0.5,1,2'] -> {'lam': [0.5, 1.0, 2.0]} (p_active values are scalars here).
    Names are checked against config_class.BATCHED_FIELDS (the toy's when None)."""
    if config_class is None:
        from toymodels.configs.toy import ToyConfig as config_class
    batched = config_class.BATCHED_FIELDS
    vary = {}
    for assignment in assignments:
        if "=" not in assignment:
            raise ConfigError(f"--vary {assignment!r} must look like key=v1,v2,...")
        key, text = (s.strip() for s in assignment.split("=", 1))
        if key not in batched:
            raise ConfigError(f"--vary {key}: only {', '.join(batched)} can differ between "
                              f"instances of one {config_class.family} run (other fields "
                              "change shapes)")
        try:
            vary[key] = [float(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"--vary {assignment!r}: values must be numbers") from None
    return vary
