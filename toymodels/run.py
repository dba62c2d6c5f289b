"""`run`: train instances of one config, measure them with their family, store the run.

The summary is the record researchers read: every resolved config field, the package
versions and git commit, and per instance its seed, own hyperparameters, final losses and
what its family measures (families/). `train_run` does the same in memory (toymodels.train).
"""

import time
from pathlib import Path

from toymodels.analysis.svd import DEFAULT_REL_TOL
from toymodels.configs import make_instances, preset
from toymodels.families import FINAL_LOSS_WINDOW, family_named, family_of, measure
from toymodels.rundir import Run, analysis_meta, write_analysis
from toymodels.store import claim, provenance, staged
from toymodels.training.checkpoints import (CheckpointPlan, check_checkpoints, check_every,
                                            discard, export, identity_of, run_checkpoint_dir)
from toymodels.training.divergence import mask_diverged
from toymodels.training.loop import train


def train_run(config, seeds=(0,), vary: dict | None = None, *, progress: bool = True) -> Run:
    """Train instances of config (a config object or a preset name) in memory: one per
    seed and vary combination (vary maps a batched field to its values, as --vary).
    Returns a Run: its tables as DataFrames (run.tables()), run.save(dir) to store it."""
    name = config if isinstance(config, str) else None
    cfg = preset(config) if isinstance(config, str) else config
    instances = make_instances(cfg, seeds, vary)  # checks config, seeds and vary first
    return trained(name, cfg, instances, progress=progress)


def trained(preset_name: str | None, cfg, instances: list, *, progress: bool = True,
            checkpoints: CheckpointPlan | None = None) -> Run:
    """Train instances of cfg and measure them (families.measure): an in-memory Run."""
    t0 = time.perf_counter()
    result = train(cfg, instances, progress=progress, desc=preset_name or cfg.family,
                   checkpoints=checkpoints)
    train_seconds = time.perf_counter() - t0
    measured, _ = measure(cfg, instances, result)
    summary = {"family": cfg.family, "preset": preset_name, "config": cfg.to_dict(),
               "final_loss_window": min(FINAL_LOSS_WINDOW, cfg.steps), **measured.fields,
               **provenance(),
               "instances": measured.records}
    return Run(config=cfg, summary=summary, params=result.params, curves=result.curves,
               analysis=measured.arrays, dynamics=result.dynamics,
               head_analysis=measured.analysis,
               timing={"train_seconds": train_seconds, "instances": len(instances),
                       "steps": cfg.steps})


def run(preset_name: str, cfg, instances: list, out_dir, *,
        overwrite: bool = False, progress: bool = True,
        checkpoint_every: int | None = None, keep_checkpoints: bool = False) -> dict:
    """Train, analyse and store one run in out_dir; returns its summary.

    While it trains, its state is saved every checkpoint_every steps (a multiple of
    chunk_steps; None: every CHECKPOINT_SECONDS; 0: never) in `.<out>.ckpt/` beside
    out_dir, and the same call after a kill resumes from there to the same results. The
    checkpoints go once the run is stored; keep_checkpoints keeps them (about 10, or one
    every checkpoint_every steps, and the last) in out_dir/checkpoints, read by
    load_run(out_dir).params_at(step). Checkpoints of another run there are refused
    (RunDirError) unless overwrite, which discards them."""
    check_every(checkpoint_every, keep_checkpoints, cfg)
    with claim(out_dir, overwrite) as out:  # checks and locks out_dir before any work
        plan = CheckpointPlan(run_checkpoint_dir(out), identity_of(preset_name, cfg, instances),
                              every=checkpoint_every, keep=keep_checkpoints)
        check_checkpoints(plan, overwrite)
        result = trained(preset_name, cfg, instances, progress=progress, checkpoints=plan)
        with staged(out, overwrite) as staging:
            result.write(staging, out.name)
            if plan.keep:
                export(plan, staging / "checkpoints")
        discard(plan)  # only now that the results are in place
        return result.summary


def reanalyze(run_dir, rel_tol: float = DEFAULT_REL_TOL, seed: int = 0) -> Path:
    """Recompute a stored run's full metric set into run_dir/analysis (no retraining)."""
    from toymodels.rundir import load_run
    loaded = load_run(run_dir)
    diverged = [inst.get("diverged_step") for inst in loaded.summary.get("instances", [])]
    family = family_of(loaded.config)
    analysis = family.analyze(loaded.config, mask_diverged(loaded.params, diverged),
                              rel_tol, seed)
    # The run's own analysis is derived from its parameters: replaced on every call (its
    # files only; anything the user put in analysis/ makes this refuse).
    return write_analysis(Path(run_dir) / "analysis", analysis,
                          analysis_meta(Path(run_dir).name, loaded.config, family, rel_tol, seed),
                          overwrite=True)


def summary_table(summary: dict) -> str:
    """The run's console table (one row per instance), as its family draws it."""
    return family_named(summary.get("family", "toy")).table(summary)
