"""Feature structure in the configs of both families: text and TOML forms, one-line
refusals before any work, stable results for configs without one, the toy task's sampler
and second moment, and the theory row under structure telling the right Ω* from its foils.
(The generators themselves: tests/test_generators.py.)"""

import dataclasses

import numpy as np
import pytest

import toymodels
from toymodels.cli import main
from toymodels.configs import ToyConfig, apply_overrides, preset, typed
from toymodels.errors import ConfigError


def test_text_and_toml_forms():
    cfg = apply_overrides(preset("single-pair"), [
        "corr_blocks=0,2,3;1,5", "corr=0.4", "exclusive=8,9;10,11", "zipf_exponent=0.5",
        "parents=" + ",".join(["-1"] * 12 + ["6"] + ["-1"] * 7), "conditional=0.7"])
    assert cfg.corr_blocks == ((0, 2, 3), (1, 5)) and cfg.exclusive == ((8, 9), (10, 11))
    assert cfg.parents[12] == 6 and cfg.parents.count(-1) == 19
    s = cfg.structure
    assert s.blocks == ((0, 2, 3), (1, 5)) and s.rho == 0.4 and s.conditional == 0.7
    assert typed("corr_blocks", [[0, 1], [2, 3]], ToyConfig) == ((0, 1), (2, 3))
    assert ToyConfig.from_dict(cfg.to_dict()) == cfg


def test_configs_without_structure_keep_their_dicts():
    """Results made before the structure fields existed keep their config dicts (and so
    their checkpoint identities and sweep group ids)."""
    for name in ("single-pair", "transformer-retrieval"):
        d = preset(name).to_dict()
        assert not {"corr_blocks", "corr", "parents", "conditional", "exclusive",
                    "zipf_exponent"} & set(d)
        assert preset(name).structure is None


@pytest.mark.parametrize("assignment,message", [
    ("corr_blocks=0,1,2;3,4", None),
    ("corr_blocks=0,1,2", "positive semi-definite"),  # with corr=-0.9 below
    ("conditional=1.5", "probability in [0, 1]"),
    ("parents=1,0," + ",".join(["-1"] * 18), "cycle"),
    ("exclusive=0,1;1,2", "disjoint"),
    ("parents=-1,0", "parents has 2 entries but N=20"),
    ("exclusive=0,1,2,3,4,5,6,7,8,9,10", "total rate 1.1 > 1"),  # 11 features at 0.1
])
def test_bad_structures_are_refused_in_one_line(assignment, message, tmp_path, capsys):
    extra = ["--set", "corr=-0.9"] if "corr_blocks=0,1,2" == assignment else []
    if assignment.startswith("conditional"):
        extra = ["--set", "parents=-1,0," + ",".join(["-1"] * 18)]
    args = ["run", "single-pair", "--set", assignment, *extra, "--steps", "1",
            "--out", str(tmp_path / "r")]
    if message is None:  # a valid structure, for contrast: parsing alone
        apply_overrides(preset("single-pair"), [assignment, "corr=0.3"])
        return
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "r").exists()


def test_a_transformer_structure_stays_within_a_role():
    cfg = preset("transformer-retrieval")
    cfg.replace(corr_blocks=(cfg.value_features,), corr=0.5)  # value with value: fine
    cfg.replace(corr_blocks=(cfg.background[:3],), corr=0.5)  # background: fine
    with pytest.raises(ConfigError, match="mixes"):
        cfg.replace(corr_blocks=((cfg.value_features[0], cfg.background[0]),), corr=0.5)
    with pytest.raises(ConfigError, match="query or key"):
        cfg.replace(exclusive=((cfg.queries[0], cfg.background[0]),))


def test_onehot_tokens_refuse_a_structure():
    with pytest.raises(ConfigError, match="needs tokens='sparse'"):
        ToyConfig(tokens="onehot", corr_blocks=((0, 1),), corr=0.5)


def test_the_toy_task_samples_the_structure_and_states_its_moment():
    import jax

    from toymodels.tasks.structure import marginal_rates
    from toymodels.tasks.structure import second_moment as structure_moment
    from toymodels.tasks.toy import sample_batch, second_moment

    cfg = ToyConfig(N=6, D=3, H=3, p_active=0.3, parents=(-1, 0, 1, -1, -1, -1),
                    conditional=0.6, corr_blocks=((3, 4),), corr=0.7)
    M = second_moment(cfg)
    np.testing.assert_allclose(M, structure_moment(cfg.structure, np.full(6, 0.3)))
    f_q, _ = sample_batch(jax.random.key(0), jax.numpy.full(6, 0.3), 200_000, 1,
                          structure=cfg.structure)
    f = np.asarray(f_q, np.float64)
    rates = marginal_rates(cfg.structure, np.full(6, 0.3))
    se = np.sqrt(rates * (1 - rates) / len(f))
    assert np.all(np.abs((f > 0).mean(0) - rates) < 5 * se)
    assert not np.any((f[:, 2] > 0) & (f[:, 1] == 0))  # a child never without its parent
    emp = f.T @ f / len(f)
    assert np.abs(emp - M).max() < 5e-3  # E[f fᵀ] by sampling, 200k tokens


class _Result:
    def __init__(self, params):
        self.params = params


def _head_at(kind):
    """A stand-in for training: a head exactly at Ω* of the structure's M, or of the
    independent model's (the foil)."""
    from toymodels.theory import structured

    def train(cfg, instances, init, desc=""):
        X = init["W"]
        model = cfg if kind == "structure" else structured.independent_twin(cfg)
        W_K = np.stack([structured.star(model, x) for x in X]).astype(np.float32)
        W_Q = np.broadcast_to(np.eye(cfg.H, cfg.D, dtype=np.float32), W_K.shape).copy()
        return _Result({"W": X, "W_Q": W_Q, "W_K": W_K})
    return train


def test_the_structured_row_passes_omega_star_and_rejects_its_foils():
    from toymodels.theory.checks import THEOREM_CFG
    from toymodels.theory.rows import QUICK
    from toymodels.theory.structured import check_structured

    p = dataclasses.replace(QUICK, seeds=3)
    rows, _ = check_structured(p, THEOREM_CFG, _head_at("structure"))
    assert [r["status"] for r in rows] == ["PASS", "PASS"]
    assert all(f["status"] == "FAIL" for r in rows for f in r["foils"]) and not any(
        r["defect"] for r in rows)
    # a head at the independent model's optimum (what a wrong theory predicts) fails the row
    wrong, _ = check_structured(p, THEOREM_CFG, _head_at("independent"))
    assert [r["status"] for r in wrong] == ["FAIL", "FAIL"]


def test_structured_training_runs_end_to_end(tmp_path):
    cfg = preset("single-pair").replace(steps=250, corr_blocks=((0, 2, 3),), corr=0.5,
                                        zipf_exponent=0.3)
    run = toymodels.train(cfg, seeds=[0], progress=False)
    run.save(tmp_path / "r")
    loaded = toymodels.load_run(tmp_path / "r")
    assert loaded.config == cfg and loaded.config.structure == cfg.structure
