"""The family seam: a third family, defined in this file only, goes through run, sweep,
load_run, reanalysis and the Python API without an edit to any package module.

The family: a bilinear head on fixed one-hot features, trained by squared error to give the
planted template's logits, T_ij = f_iᵀ W_Qᵀ W_K f_j. Its Ω must come out aligned with the
planted pair, which the shared analysis measures; a frozen, untrained head is its foil.
"""

import dataclasses
import json
import types
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import toymodels
from toymodels import configs, families
from toymodels.configs.fields import instance_grid
from toymodels.families import Measured, final_losses

FAMILY = "test-bilinear"


@dataclass(frozen=True)
class BilinearConfig:
    family = FAMILY
    BATCHED_FIELDS = ("learning_rate",)
    STORED_CURVES = ("mse",)

    N: int = 6
    D: int = 6
    H: int = 3
    template: tuple[tuple[int, int, float], ...] = ((0, 1, 1.0),)
    learning_rate: float = 3e-2
    batch_size: int = 64
    steps: int = 400
    chunk_steps: int = 200
    record_points: int = 0
    optimizer: str = "adamw"
    lr_schedule: str = "constant"
    weight_decay: float = 0.0
    train_head: bool = True

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        return dataclasses.asdict(self) | {"template": [list(p) for p in self.template]}

    @classmethod
    def from_dict(cls, d):
        return cls(**{**d, "template": tuple(tuple(p) for p in d["template"])})

    def estimate_bytes(self, n_instances):
        return 4 * n_instances * (self.batch_size * self.N * 4 + 2 * self.H * self.D)

    def make_instances(self, seeds, vary=None):
        return instance_grid(self, seeds, vary, BilinearInstance)

    def instance(self, seed, **batched):
        return BilinearInstance(seed, batched.get("learning_rate", self.learning_rate))

    def param_shapes(self, n_instances):
        return {"W_Q": (n_instances, self.H, self.D), "W_K": (n_instances, self.H, self.D)}


@dataclass(frozen=True)
class BilinearInstance:
    seed: int
    learning_rate: float

    def overrides(self):
        return {"learning_rate": self.learning_rate}


class Head(nnx.Module):
    def __init__(self, cfg, rngs):
        init = nnx.initializers.normal(0.1)
        self.W_Q = nnx.Param(init(rngs.params(), (cfg.H, cfg.D)))
        self.W_K = nnx.Param(init(rngs.params(), (cfg.H, cfg.D)))


def _loss_fn(cfg):
    T = np.zeros((cfg.N, cfg.N), np.float32)
    for i, j, v in cfg.template:
        T[i, j] = v

    def loss(model, key, hp):
        k_q, k_k = jax.random.split(key)
        q = jax.random.randint(k_q, (cfg.batch_size,), 0, cfg.N)
        k = jax.random.randint(k_k, (cfg.batch_size,), 0, cfg.N)
        Omega = model.W_Q[...].T @ model.W_K[...]  # features are the axes: E = I
        mse = jnp.mean((Omega[q, k] - jnp.asarray(T)[q, k]) ** 2)
        return mse, {"mse": mse}
    return loss


def _analyze(cfg, params, rel_tol=1e-2, seed=0):
    I = params["W_Q"].shape[0]
    features = np.broadcast_to(np.eye(cfg.D, cfg.N, dtype=np.float32), (I, cfg.D, cfg.N))
    return toymodels.analyze(features, W_Q=params["W_Q"], W_K=params["W_K"],
                             template=cfg.template, axes=("instance",), rel_tol=rel_tol,
                             seed=seed, layout="toymodels")


def _measure(cfg, instances, result, params, diverged):
    analysis = _analyze(cfg, params)
    records, rows, pair_rows = [], [], []
    for n, inst in enumerate(instances):
        head = next(r for r in analysis.heads if r["instance"] == n)
        records.append({"seed": inst.seed, "overrides": inst.overrides(),
                        "final_loss": final_losses(cfg, result.curves, n),
                        "min_matched_cos": head["min_matched_cos"],
                        "diverged_step": diverged[n]})
        rows.append({"final_mse": records[-1]["final_loss"]["mse"],
                     "min_matched_cos": head["min_matched_cos"]})
        pair_rows.append([{k: v for k, v in p.items() if k != "instance"}
                          for p in analysis.pairs if p["instance"] == n])
    return Measured(records=records, rows=rows, pair_rows=pair_rows, analysis=analysis,
                    arrays={"qk_S": analysis.arrays["qk_S"]})


def _figure(run, path=None):
    from toymodels.plots import subplots
    summary = run.summary if hasattr(run, "summary") else json.loads(
        (run / "summary.json").read_text())
    fig, ax = subplots()
    ax.bar(range(len(summary["instances"])),
           [r["min_matched_cos"] for r in summary["instances"]])
    if path is not None:
        fig.savefig(path)
    return fig


def _sad_inputs(cfg, params, n, seed):
    raise ValueError("the bilinear test family has no sequences to decompose")


family = types.ModuleType(FAMILY)
family.__dict__.update(
    build=lambda cfg, rngs: Head(cfg, rngs),
    host_init=lambda cfg, instances: {},
    frozen=lambda cfg: () if cfg.train_head else ("W_Q", "W_K"),
    hparams=lambda cfg, instances: {"learning_rate": jnp.asarray(
        [i.learning_rate for i in instances], jnp.float32)},
    program_key=lambda cfg: cfg.replace(steps=cfg.chunk_steps,
                                        learning_rate=BilinearConfig.learning_rate),
    loss_fn=_loss_fn, recorder=lambda cfg: None,
    divergence_loss=lambda curves, inst: curves["mse"],
    analyze=_analyze, measure=_measure,
    templates=lambda cfg: {"template": [list(p) for p in cfg.template]},
    table=lambda summary: "\n".join(f"{r['seed']:>4} {r['min_matched_cos']:.3f}"
                                    for r in summary["instances"]),
    figure=_figure, sad_inputs=_sad_inputs)


@pytest.fixture
def bilinear():
    """The third family, registered for one test and removed after it."""
    families.register(FAMILY, family)
    configs.register(BilinearConfig, {"test-bilinear": BilinearConfig()})
    yield BilinearConfig()
    del families._FAMILIES[FAMILY]
    del configs.CONFIG_CLASSES[FAMILY]
    del configs.PRESETS["test-bilinear"]


def test_a_third_family_trains_saves_loads_and_reanalyses(bilinear, tmp_path):
    run = toymodels.train(bilinear, seeds=[0, 1])
    # a trained head aligns with the planted pair; an untrained one (the foil) does not
    assert [r["min_matched_cos"] > 0.99 for r in run.summary["instances"]] == [True, True]
    foil = toymodels.train(bilinear.replace(train_head=False), seeds=[0, 1])
    assert max(r["min_matched_cos"] for r in foil.summary["instances"]) < 0.9

    run.save(tmp_path / "run")
    loaded = toymodels.load_run(tmp_path / "run")
    assert type(loaded.config) is BilinearConfig and loaded.config == bilinear
    for name in ("heads", "pairs", "features", "curves"):
        assert run.tables()[name].equals(loaded.tables()[name]), name
    assert (tmp_path / "run" / "alignment.png").stat().st_size > 0

    from toymodels.run import reanalyze, summary_table
    reanalyze(tmp_path / "run")
    assert loaded.table("heads").equals(toymodels.load_run(tmp_path / "run").table("heads"))
    assert summary_table(run.summary).splitlines()[0].startswith("   0 ")


def test_a_third_family_runs_from_the_cli_and_in_a_sweep(bilinear, tmp_path, capsys):
    from toymodels.cli import main
    from toymodels.sweep import SweepSpec, run_sweep

    assert main(["run", "test-bilinear", "--seeds", "0", "--vary", "learning_rate=0.01,0.03",
                 "--out", str(tmp_path / "cli"), "--no-progress"]) == 0
    assert len(toymodels.load_run(tmp_path / "cli").summary["instances"]) == 2
    # its SAD hook says why it cannot, in one line
    assert main(["sad", str(tmp_path / "cli"), "--prompts", "task:4", "--out",
                 str(tmp_path / "sad")]) == 2
    assert "no sequences to decompose" in capsys.readouterr().err

    spec = SweepSpec(preset="test-bilinear", seeds=(0, 1),
                     grid={"H": [2, 3]}, set={"steps": 200})
    run_sweep(spec, tmp_path / "sweep", progress=False)
    import pandas as pd
    rows = pd.read_parquet(tmp_path / "sweep" / "results.parquet")
    assert sorted(rows["H"]) == [2, 2, 3, 3] and rows["min_matched_cos"].notna().all()
