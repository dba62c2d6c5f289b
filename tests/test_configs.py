"""The configs package: presets, the one path from text to typed values (--set, --vary,
--seeds, templates), the shared validators and the grid of instances, for both families."""

import pytest

from helpers import TRANSFORMER
from toymodels.configs import (BATCHED_FIELDS, ConfigError, ToyConfig, apply_overrides,
                              make_instances, many_pairs, parse_seeds, parse_template,
                              parse_vary, preset)


def test_presets_match_the_paper_shapes():
    single = preset("single-pair")
    assert (single.N, single.D, single.H) == (20, 10, 10)
    assert single.template == ((0, 1, 1.0),)
    multi = preset("multi-pair")
    assert (multi.N, multi.D, multi.H) == (100, 50, 50)
    assert [(i, j) for i, j, _ in multi.template] == [(i, i + 20) for i in range(20)]
    values = [v for _, _, v in multi.template]
    assert values == sorted(values, reverse=True) and len(set(values)) == 20
    no_head = preset("no-head")
    assert no_head.lam == 0 and no_head.template == ()


def test_many_pairs_is_linear():
    pairs = many_pairs(5, offset=5, high=1.0, low=0.2)
    assert [v for _, _, v in pairs] == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])


def test_many_pairs_geometric_has_constant_ratio():
    values = [v for _, _, v in many_pairs(5, offset=5, high=1.0, low=0.0625, spacing="geometric")]
    assert values == pytest.approx([1.0, 0.5, 0.25, 0.125, 0.0625])


@pytest.mark.parametrize("text,expected", [
    ("0-3", (0, 1, 2, 3)), ("5", (5,)), ("1,4,9", (1, 4, 9)), ("0-1,7", (0, 1, 7))])
def test_parse_seeds(text, expected):
    assert parse_seeds(text) == expected


@pytest.mark.parametrize("text", ["", "a", "3-1", "0-", "-2", "1,,2", "0-3,2", "1.5"])
def test_parse_seeds_rejects(text):
    with pytest.raises(ConfigError, match="seeds"):
        parse_seeds(text)


def test_overrides_are_typed():
    cfg = apply_overrides(preset("single-pair"),
                          ["lam=2", "N=30", "template=0:1:1,2:3:0.5", "p_active=0.05",
                           "attn_loss=mse"])
    assert cfg.lam == 2.0 and isinstance(cfg.lam, float)
    assert cfg.N == 30 and cfg.template == ((0, 1, 1.0), (2, 3, 0.5))
    assert cfg.p_active == 0.05 and cfg.attn_loss == "mse"
    per_feature = apply_overrides(preset("single-pair").replace(N=3), ["p_active=0.1,0.2,0.3"])
    assert per_feature.p_active_vector == (0.1, 0.2, 0.3)


@pytest.mark.parametrize("assignment,message", [
    ("bogus=1", "unknown config field 'bogus'"),
    ("N=ten", "N='ten': expected an integer"),
    ("lam=abc", "lam='abc': expected a number"),
    ("N=0", "N must be > 0"),
    ("D=-1", "D must be > 0"),
    ("H=0", "H must be > 0"),
    ("p_active=0", r"p_active must be in \(0, 1\]"),
    ("p_active=1.5", r"p_active must be in \(0, 1\]"),
    ("template=0:20:1", "template index 20 is out of range for N=20"),
    ("template=0:1", "must be query:key:value"),
    ("attn_loss=l1", "attn_loss must be 'xent' or 'mse'"),
    ("lam", "must look like key=value"),
])
def test_bad_overrides_name_the_problem(assignment, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(preset("single-pair"), [assignment])


def test_api_rejects_bad_values_with_typed_error():
    with pytest.raises(ConfigError, match="N must be an integer"):
        ToyConfig(N=2.5)
    with pytest.raises(ConfigError, match="p_active has 3 values but N=20"):
        ToyConfig(p_active=(0.1, 0.1, 0.1))
    with pytest.raises(ConfigError, match="twice"):
        ToyConfig(template=((0, 1, 1.0), (0, 1, 2.0)))


def test_config_round_trips_through_dict():
    cfg = preset("multi-pair").replace(p_active=tuple([0.05] * 100))
    assert ToyConfig.from_dict(cfg.to_dict()) == cfg
    assert parse_template("") == ()


def test_make_instances_is_a_grid_over_seeds_and_values():
    cfg = preset("single-pair")
    insts = make_instances(cfg, (0, 1), parse_vary(["lam=0.5,2", "target_scale=1,4"]))
    assert len(insts) == 8
    assert {(i.seed, i.lam, i.target_scale) for i in insts} == {
        (s, lam, t) for s in (0, 1) for lam in (0.5, 2.0) for t in (1.0, 4.0)}
    assert all(i.learning_rate == cfg.learning_rate for i in insts)
    assert set(insts[0].overrides()) == set(BATCHED_FIELDS)


@pytest.mark.parametrize("assignment,message", [
    ("N=10,20", "only lam, learning_rate, p_active, target_scale"),
    ("lam=a,b", "values must be numbers"),
])
def test_vary_rejects(assignment, message):
    with pytest.raises(ConfigError, match=message):
        parse_vary([assignment])


def test_vary_values_are_validated():
    with pytest.raises(ConfigError, match="p_active must be in"):
        make_instances(preset("single-pair"), (0,), {"p_active": [0.1, 2.0]})


@pytest.mark.parametrize("changes,words", [
    ({"n_layers": 0}, "n_layers"), ({"n_heads": 0}, "n_heads"),
    ({"positions": "rope", "H": 7}, "H must be even"),
    ({"pairs": ((0, 99, 1.0),)}, "outside the features"),
    ({"pairs": ((2, 1, 1.0),)}, "both a query and a value"),
    ({"value_features": (1, 3, 4, 5)}, "both a key and a value"),
    ({"task": "rope", "positions": "rope", "offset": 9}, "too short"),
    ({"lam": 1.0}, "unknown config field"),
    ({"learning_rate": float("nan")}, "finite"),
    ({"positions": "rope"}, "RoPE goes with task 'rope'"),
    ({"value_gains": [1.0, 0.8, 0.6, 0.4]}, "tuple"),
    ({"value_gains": (1.0, 0.0, 0.6, 0.4)}, "> 0"),
    ({"p_query": 0.0}, "never asks"),
    ({"embedding": "learned", "anisotropy": 1.0}, "ignores it"),
])
def test_bad_transformer_config_is_refused(changes, words):
    with pytest.raises(ConfigError, match=words):
        TRANSFORMER.replace(**changes)


def test_optimizer_and_frame_fields_are_checked():
    with pytest.raises(ConfigError, match="optimizer must be one of"):
        preset("single-pair").replace(optimizer="lion")
    with pytest.raises(ConfigError, match="optimizer must be one of"):
        preset("transformer-retrieval").replace(optimizer="adam")
    with pytest.raises(ConfigError, match="frame must be one of"):
        preset("transformer-retrieval").replace(frame="diagonal")
    with pytest.raises(ConfigError, match="N = D"):
        preset("transformer-retrieval").replace(frame="axis", N=20)
