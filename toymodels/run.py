"""One run, end to end: train instances -> analyse their heads -> store -> draw.

The summary is the record researchers read: every resolved config field, the
package versions and git commit, and per instance its seed, own
hyperparameters, final losses, spectrum and matched pairs.
"""

import time
from pathlib import Path

import numpy as np

from toymodels.analysis.svd import DEFAULT_REL_TOL
from toymodels.config import Instance, ToyConfig
from toymodels.dynamics import first_crossings
from toymodels.families import diverged_steps
from toymodels.analysis.alignment import HeadAnalysis, analyze
from toymodels.divergence import (DIVERGENCE_FACTOR, mark_diverged,
                                  mask_diverged)
from toymodels.resume import (CheckpointPlan, check_checkpoints, check_every, discard, export,
                               identity_of, run_checkpoint_dir)
from toymodels.store import claim, git_commit, staged, versions, write_analysis, write_json
from toymodels.train import TrainResult, train

SUMMARY_PAIR_KEYS = ("query_feature", "key_feature", "target", "sv_index", "cos_query_u",
                     "cos_key_v", "sigma", "significant")

FINAL_LOSS_WINDOW = 100
"""final_loss is the mean over the last this-many steps (one step's loss is noisy)."""


def analyze_params(cfg: ToyConfig, params: dict, rel_tol: float = DEFAULT_REL_TOL,
                   seed: int = 0) -> HeadAnalysis:
    """The full metric set of every instance's head (metrics.analyze)."""
    return analyze(params["W"], W_Q=params["W_Q"], W_K=params["W_K"], template=cfg.template,
                   axes=("instance",), rel_tol=rel_tol, seed=seed, layout="toymodels")


def build_summary(preset_name: str, cfg: ToyConfig, instances: list[Instance],
                  result: TrainResult, analysis: HeadAnalysis) -> dict:
    window = min(FINAL_LOSS_WINDOW, cfg.steps)
    crossings = first_crossings(cfg, result.dynamics) if result.dynamics else None
    records = []
    for n, inst in enumerate(instances):
        record = {
            "seed": inst.seed,
            "overrides": inst.overrides(),
            "final_loss": {name: float(np.mean(curve[n, -window:]))
                           for name, curve in result.curves.items()},
            "singular_values": [float(s) for s in analysis.arrays["qk_S"][n]],
            "pairs": [{k: p[k] for k in SUMMARY_PAIR_KEYS}
                      for p in analysis.pairs if p["instance"] == n],
        }
        if crossings is not None:
            record["dynamics"] = crossings[n]
        records.append(record)
    return {
        "preset": preset_name,
        "config": cfg.to_dict(),
        "final_loss_window": window,
        "versions": versions(),
        "git_commit": git_commit(),
        "instances": records,
    }


def run(preset_name: str, cfg, instances: list, out_dir, *,
        overwrite: bool = False, progress: bool = True,
        checkpoint_every: int | None = None, keep_checkpoints: bool = False) -> dict:
    """Train, analyse and store one run in out_dir; returns its summary.

    While it trains, its state is saved every checkpoint_every steps (a multiple of
    chunk_steps; None: every resume.CHECKPOINT_SECONDS; 0: never) in `.<out>.ckpt/` beside
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
        return _train_and_store(preset_name, cfg, instances, out, overwrite, progress, plan)


def _train_and_store(preset_name, cfg, instances, out, overwrite, progress, plan=None) -> dict:
    t0 = time.perf_counter()
    result = train(cfg, instances, progress=progress, desc=preset_name, checkpoints=plan)
    train_s = time.perf_counter() - t0
    diverged = diverged_steps(cfg, result.curves, instances)
    if is_transformer(cfg):
        summary, analysis, arrays = transformer_record(
            preset_name, cfg, instances, result, mask_diverged(result.params, diverged))
        summary = mark_transformer_diverged(summary, diverged)
    else:
        analysis = analyze_params(cfg, mask_diverged(result.params, diverged))
        summary = mark_diverged(build_summary(preset_name, cfg, instances, result, analysis),
                                diverged)
        arrays = {"singular_values": analysis.arrays["qk_S"],
                  "cos_u": analysis.arrays["qk_cos_u"], "cos_v": analysis.arrays["qk_cos_v"]}

    with staged(out, overwrite) as staging:
        write_json(staging / "summary.json", summary)
        np.savez(staging / "params.npz", **result.params)
        np.savez(staging / "curves.npz", **result.curves)
        np.savez(staging / "analysis.npz", **arrays)
        if result.dynamics is not None:
            np.savez(staging / "dynamics.npz", **result.dynamics)
        write_analysis(staging / "analysis", analysis, analysis_meta(out, cfg))
        # Timing varies between identical runs, so it stays out of summary.json.
        write_json(staging / "timing.json", {"train_seconds": train_s,
                                             "instances": len(instances), "steps": cfg.steps})
        # matplotlib loads only when drawing
        if is_transformer(cfg):
            from toymodels.plots import plot_transformer_run
            plot_transformer_run(staging, staging / "alignment.png")
        else:
            from toymodels.plots import plot_alignment
            plot_alignment(staging, staging / "alignment.png")
        if plan is not None and plan.keep:
            export(plan, staging / "checkpoints")
    if plan is not None:  # only now that the results are in place
        discard(plan)
    return summary


def is_transformer(cfg) -> bool:
    return getattr(cfg, "family", "toy") == "transformer"


def mark_transformer_diverged(summary: dict, steps) -> dict:
    """As divergence.mark_diverged, for a toy-transformer summary: a diverged instance's
    losses, heads and verdict become null."""
    for record, step in zip(summary["instances"], steps):
        record["diverged_step"] = step
        if step is not None:
            record["final_loss"] = {k: None for k in record["final_loss"]}
            record.update(eval_task_loss=None, solved=None, best_head=None, solving_head=None,
                          solving_heads=None, heads=None)
    return summary


def transformer_record(preset_name: str, cfg, instances, result, params: dict):
    """(summary, analysis tables, arrays) of a toy-transformer run; params: the trained
    parameters with diverged instances zeroed."""
    from toymodels.families import transformer as family
    from toymodels.run_transformer import build_instances, head_records

    evaluation = family.evaluate(cfg, params, instances)
    analysis = family.analyze_params(cfg, params)
    heads = head_records(cfg, params, analysis, evaluation["accuracy"])
    window = min(FINAL_LOSS_WINDOW, cfg.steps)
    summary = {"family": "transformer", "preset": preset_name, "config": cfg.to_dict(),
               "final_loss_window": window, "solved_accuracy": family.SOLVED_ACCURACY,
               "versions": versions(), "git_commit": git_commit(),
               "instances": build_instances(cfg, instances, result, heads, evaluation, window)}
    arrays = {"accuracy": evaluation["accuracy"],
              **{f"{c}_{k}": analysis.arrays[f"{c}_{k}"] for c in ("qk", "ov")
                 for k in ("S", "cos_u", "cos_v")}}
    if cfg.positions == "rope":
        offsets = family.rope_offsets(cfg, params)
        arrays |= {f"rope_{k}": v for k, v in offsets.items()}
    return summary, analysis, arrays


def analysis_meta(run_dir, cfg, rel_tol: float = DEFAULT_REL_TOL, seed: int = 0) -> dict:
    if is_transformer(cfg):
        templates = {"template": [list(p) for p in cfg.qk_template],
                     "ov_template": [list(p) for p in cfg.ov_template]}
    else:
        templates = {"template": cfg.to_dict()["template"]}
    return {"source": "run", "run": str(Path(run_dir).name), **templates,
            "rel_tol": rel_tol, "seed": seed}


def reanalyze(run_dir, rel_tol: float = DEFAULT_REL_TOL, seed: int = 0) -> Path:
    """Recompute a stored run's full metric set into run_dir/analysis (no retraining)."""
    from toymodels.store import load_run
    loaded = load_run(run_dir)
    diverged = [inst.get("diverged_step") for inst in loaded.summary.get("instances", [])]
    params = mask_diverged(loaded.params, diverged)
    if is_transformer(loaded.config):
        from toymodels.families import transformer as family
        analysis = family.analyze_params(loaded.config, params, rel_tol, seed)
    else:
        analysis = analyze_params(loaded.config, params, rel_tol, seed)
    # The run's own analysis is derived from its parameters: replaced on every call (its
    # files only; anything the user put in analysis/ makes this refuse).
    return write_analysis(Path(run_dir) / "analysis", analysis,
                          analysis_meta(run_dir, loaded.config, rel_tol, seed), overwrite=True)


def summary_table(summary: dict) -> str:
    """A short fixed-width table: one row per instance."""
    if summary.get("family") == "transformer":
        from toymodels.run_transformer import summary_table as transformer_table
        return transformer_table(summary)
    header = (f"{'seed':>4}  {'overrides':<28} {'recon':>8} {'attn':>8} {'σ1':>8} "
              f"{'σ2/σ1':>7} {'pairs':>5} {'min cos_u':>9} {'min cos_v':>9} "
              f"{'align>0.9@':>10} {'interf<0.1@':>11}")
    lines = [header, "-" * len(header)]
    base = summary["config"]
    for inst in summary["instances"]:
        own = {k: v for k, v in inst["overrides"].items() if v != base[k]}
        own_text = ",".join(f"{k}={v:g}" for k, v in own.items()
                            if not isinstance(v, list)) or "-"
        if inst.get("diverged_step") is not None:  # its metrics are null: say why
            lines.append(f"{inst['seed']:>4}  {own_text:<28.28} diverged at step "
                         f"{inst['diverged_step']} (loss NaN, inf or > {DIVERGENCE_FACTOR:g}x "
                         "its first value): no metrics")
            continue
        s = inst["singular_values"]
        ratio = s[1] / s[0] if len(s) > 1 and s[0] > 0 else float("nan")
        matched = [p for p in inst["pairs"] if p["sv_index"] is not None]
        cu = min((p["cos_query_u"] for p in matched), default=float("nan"))
        cv = min((p["cos_key_v"] for p in matched), default=float("nan"))
        dyn = inst.get("dynamics") or {}
        steps = [dyn.get(k, "-") for k in ("step_alignment_above", "step_interference_below")]
        steps = ["never" if s is None else s for s in steps]
        lines.append(
            f"{inst['seed']:>4}  {own_text:<28.28} {inst['final_loss']['recon']:>8.4f} "
            f"{inst['final_loss']['attn']:>8.4f} {s[0]:>8.4f} {ratio:>7.4f} "
            f"{len(matched):>5} {cu:>9.4f} {cv:>9.4f} {steps[0]:>10} {steps[1]:>11}")
    return "\n".join(lines)
