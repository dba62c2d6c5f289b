"""The seam: one module is one whole family of models, from config to figure.

A family ties a config class (configs/) to its model (models/), its task (tasks/), its
in-training metrics and the analysis of what it learned. Nothing outside this package asks
which family a config belongs to: the training loop, the run and sweep verbs, load_run,
analyze, sad and theory ask `family_of(cfg)`.

What a family module provides (toy.py and transformer/ are the two shipped ones):

  training (training/loop.py)
    build(cfg, rngs) -> nnx.Module        the model of one instance
    host_init(cfg, instances) -> dict     starting values computed on the host ([I, ...])
    frozen(cfg) -> names                  parameters that never update
    hparams(cfg, instances) -> dict       batched hyperparameters, each [I, ...]
    program_key(cfg) -> cfg               configs with equal keys share one compiled program
    loss_fn(cfg) -> f(model, key, hp)     -> (loss, {curve name: scalar})
    recorder(cfg) -> f(model, hp) | None  metrics at record points
    divergence_loss(curves, inst) -> [steps]  the loss the divergence rule watches
  after training
    analyze(cfg, params, rel_tol, seed) -> HeadAnalysis    every head's metric tables
    measure(cfg, instances, result, params, diverged) -> Measured
                                          per instance: the summary.json record AND the
                                          sweep row, from one pass over one analysis
    templates(cfg) -> dict                the planted templates, for analysis.json
    table(summary) -> str                 the console table of a run
    figure(run, path=None) -> Figure      the run's figure (alignment.png); run: a Run or a dir
    sad_inputs(cfg, params, prompts, instance, seed) -> SAD's inputs (None: not supported)

Adding a family: a frozen config class with `family`, BATCHED_FIELDS, STORED_CURVES,
estimate_bytes, make_instances, instance and param_shapes (configs/toy.py is the
smallest), a module with the functions above, then
`configs.register(MyConfig, presets)` and `families.register("mine", module)`.
tests/test_families.py builds a third family this way inside the test file.
"""

import importlib
import math
from dataclasses import dataclass, field

FINAL_LOSS_WINDOW = 100
"""final_loss is the mean over the last this-many steps (one step's loss is noisy)."""

_FAMILIES: dict = {"toy": "toymodels.families.toy",
                   "transformer": "toymodels.families.transformer"}
"""Family name -> its module, or the module's import path (imported on first use)."""


def register(name: str, module) -> None:
    """Add a family: name as its config class's `family`, module as described above."""
    _FAMILIES[name] = module


def family_of(cfg):
    """The family module of a config object (by its class's `family`)."""
    return family_named(getattr(type(cfg), "family", None))


def family_named(name: str):
    """The family module registered under name (a run's summary.json names it)."""
    if name not in _FAMILIES:
        from toymodels.errors import ConfigError
        raise ConfigError(f"no family {name!r} is registered; known: " + ", ".join(_FAMILIES))
    module = _FAMILIES[name]
    if isinstance(module, str):
        module = _FAMILIES[name] = importlib.import_module(module)
    return module


@dataclass
class Measured:
    """What a family measures of trained instances, once, for runs and sweeps alike."""

    records: list[dict]
    """Per instance, its summary.json record (seed, overrides, final_loss, ...)."""
    rows: list[dict]
    """Per instance, the measured columns of its sweep row (each None where diverged)."""
    pair_rows: list[list[dict]]
    """Per instance, its sweep pair rows (planted pairs; measurements None where diverged)."""
    analysis: object
    """The full metric tables (analysis.alignment.HeadAnalysis)."""
    arrays: dict
    """analysis.npz: the spectra and cosines behind the records."""
    fields: dict = field(default_factory=dict)
    """Extra summary.json fields of the family (e.g. the accuracy a solving head needs)."""


def diverged_steps(cfg, curves: dict, instances) -> list:
    """Each instance's first diverged step (divergence.diverged_step) of the training loss
    its family defines (toy: recon + λ·attn; transformer: the task loss); None if never."""
    from toymodels.training.divergence import diverged_step
    family = family_of(cfg)
    return [diverged_step(family.divergence_loss({k: v[n] for k, v in curves.items()}, inst))
            for n, inst in enumerate(instances)]


def measure(cfg, instances, result) -> tuple[Measured, list]:
    """(Measured, diverged steps) of a training result: a diverged instance's parameters
    are zeroed before the analysis and its measurements are null."""
    from toymodels.training.divergence import mask_diverged

    diverged = diverged_steps(cfg, result.curves, instances)
    params = mask_diverged(result.params, diverged)
    return family_of(cfg).measure(cfg, instances, result, params, diverged), diverged


def final_losses(cfg, curves: dict, n: int) -> dict:
    """Instance n's final loss per curve: the mean over the last FINAL_LOSS_WINDOW steps;
    None where it is not finite."""
    import numpy as np

    window = min(FINAL_LOSS_WINDOW, cfg.steps)
    values = {name: float(np.mean(curve[n, -window:])) for name, curve in curves.items()}
    return {name: (v if math.isfinite(v) else None) for name, v in values.items()}
