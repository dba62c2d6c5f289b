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


# ---- foils: the same measurement on a wrong head of the same shapes and scale -------------

ALIGNED = 0.9
"""The bar an alignment verdict applies: a planted pair is aligned when min(|cos| query side,
|cos| key side) at its matched singular index is at least this (the transformer tables'
"QK ≥ 0.9", the toy's aligned-pair count, the dynamics' align>0.9@)."""
FOIL_DRAWS = 100
"""Random twins drawn per head."""
FOIL_QUANTILE = 0.95
"""A foil's value is this quantile over its draws: the foil passes a verdict when its high
end does (so a foil that fails fails in at least 95% of draws)."""


def random_twin(E, Omega, template, *, n_draws: int = FOIL_DRAWS, seed=0,
                quantile: float = FOIL_QUANTILE, rel_tol: float | None = None) -> dict:
    """The foil of an alignment verdict: the same matched measurement on random heads with
    the head's own singular values, Ω' = U' diag(σ) V'ᵀ with U', V' Haar-random orthonormal
    in R^D (same shapes, same spectrum, so the same Frobenius norm, rank and significant
    indices; only the directions are wrong). Unlike a rotation inside the head's own
    significant span (baseline_range, the rotated twin), it is a wrong model at rank one too,
    where rotating a one-dimensional span changes nothing.

    E [D, N] the features (columns; a zero column counts |cos| 0), Omega [D, D'] the head's
    matrix (QK = W_Qᵀ W_K, or OV = W_O W_V), template (query/output feature, key/input
    feature, value) pairs; float64. Returns, each as the `quantile` over n_draws twins
    (None where Ω has no significant direction, e.g. a diverged instance's zeroed head):
      matched        mean over pairs of min(|cos_u|, |cos_v|) at the Hungarian-matched index
                     (an unmatched pair counts 0), as the head's own qk_matched
      min_matched    the minimum over pairs of the same
      cos_query_u, cos_key_v   mean over pairs of each side's matched |cos|
      n_matched      pairs that get a significant index (equal to the head's own count:
                     it depends on the spectrum alone)
      n_aligned      pairs with min(|cos_u|, |cos_v|) >= ALIGNED
    """
    import numpy as np

    from toymodels.analysis.head_rows import match
    from toymodels.analysis.svd import DEFAULT_REL_TOL

    keys = ("matched", "min_matched", "cos_query_u", "cos_key_v", "n_matched", "n_aligned")
    E = np.asarray(E, np.float64)
    S = np.linalg.svd(np.asarray(Omega, np.float64), compute_uv=False)
    tol = DEFAULT_REL_TOL if rel_tol is None else rel_tol
    r = int(np.sum(S > tol * S[0])) if S.size and S[0] > 0 else 0
    if r == 0 or not template:
        return dict.fromkeys(keys)
    norms = np.linalg.norm(E, axis=0)
    E_unit = np.divide(E, norms, out=np.zeros_like(E), where=norms > 0)
    q = np.array([i for i, _, _ in template])
    k = np.array([j for _, j, _ in template])
    rng = np.random.default_rng(seed)
    D = E.shape[0]
    # Only the significant singular vectors take part in the match: r columns of each side.
    U = np.linalg.qr(rng.standard_normal((n_draws, D, r)))[0]
    V = np.linalg.qr(rng.standard_normal((n_draws, D, r)))[0]
    cu = np.abs(np.einsum("dp,ndr->npr", E_unit[:, q], U))  # [draws, P, r]
    cv = np.abs(np.einsum("dp,ndr->npr", E_unit[:, k], V))
    values = {name: [] for name in keys}
    rows = np.arange(len(q))
    for n in range(n_draws):
        cols = match(cu[n] * cv[n])
        ok = cols >= 0
        at = np.maximum(cols, 0)
        u, v = np.where(ok, cu[n][rows, at], 0.0), np.where(ok, cv[n][rows, at], 0.0)
        per_pair = np.minimum(u, v)
        values["matched"].append(per_pair.mean())
        values["min_matched"].append(per_pair.min())
        values["cos_query_u"].append(u.mean())
        values["cos_key_v"].append(v.mean())
        values["n_matched"].append(ok.sum())
        values["n_aligned"].append(np.sum(per_pair >= ALIGNED))
    out = {name: float(np.quantile(v, quantile)) for name, v in values.items()}
    for name in ("n_matched", "n_aligned"):  # counts stay counts (the quantile's draw, up)
        out[name] = int(np.ceil(out[name]))
    return out


def foil_passes(value, bar: float = ALIGNED):
    """Whether a foil's value meets a verdict's bar (a defect of the check); None if unmeasured."""
    return None if value is None else bool(value >= bar)
