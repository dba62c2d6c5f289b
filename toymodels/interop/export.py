"""`toymodels export RUN_DIR --to transformer-lens --out DIR`: a toy-transformer run as
models TransformerLens loads, one per instance.

  DIR/export.json                  what was exported: the run, its planted ground truth,
                                   and per instance its seed, overrides and folder
  DIR/instance_<n>/model.safetensors   the state dict (transformer_lens.state_dict_of)
  DIR/instance_<n>/config.json     HookedTransformerConfig fields (hooked_config)

Feature i is token i: embed.W_E[i] = E_i, the planted feature's residual direction, and
the readout is tied (unembed.W_U = E), so logits[..., v] is toymodels' output for value
feature v. Tokens that carry several features at once enter as a residual stream:
    resid = f @ model.W_E (+ model.W_pos[:T] unless rotary);  model(resid, start_at_layer=0)
The README shows the whole recipe. Diverged instances (NaN or exploded losses) are not
exported; export.json lists them.

DIR is written like a run: checked before any work, staged and renamed into place (store.py);
an existing DIR is replaced only with overwrite and only if it holds an earlier export.
"""

from pathlib import Path

from toymodels.errors import RunDirError

TARGETS = ("transformer-lens",)
MARKER = "export.json"


def export_run(run_dir, out_dir, to: str = "transformer-lens", overwrite: bool = False) -> dict:
    """Export every non-diverged instance of a toy-transformer run; returns export.json's
    contents. RunDirError (one line) for a run that is not a toy transformer, an out_dir
    that holds anything but an earlier export (or one without overwrite)."""
    from toymodels.rundir import load_run
    from toymodels.store import check_out_dir, claim, staged, write_json

    if to not in TARGETS:
        raise RunDirError(f"--to {to!r}: can export to {', '.join(TARGETS)}")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir} is not a run directory")
    out = Path(out_dir)
    if overwrite and out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise RunDirError(f"--out {out} holds files that are not an earlier export "
                          f"(no {MARKER}); refusing to replace it")
    check_out_dir(out, overwrite, marker=MARKER)  # before reading anything big
    run = load_run(run_dir)
    cfg = run.config
    from toymodels.families import family_of
    if to not in getattr(family_of(cfg), "EXPORTS", ()):
        raise RunDirError(f"{run_dir} is a toy-model run (preset {run.summary.get('preset')!r}): "
                          "it has no value, output or embedding maps; export takes toy-"
                          "transformer runs (toymodels run transformer-*)")
    instances = run.summary.get("instances", [])
    if len(instances) != run.params["W_Q"].shape[0]:
        raise RunDirError(f"{run_dir}/summary.json lists {len(instances)} instances but "
                          f"params.npz holds {run.params['W_Q'].shape[0]}")
    keep = [n for n, inst in enumerate(instances) if inst.get("diverged_step") is None]
    if not keep:
        raise RunDirError(f"every instance of {run_dir} diverged: nothing to export")

    from safetensors.numpy import save_file

    from toymodels.interop.transformer_lens import hooked_config, state_dict_of
    record = {
        "format": "transformer_lens", "run": str(run_dir.resolve()),
        "preset": run.summary.get("preset"), "git_commit": run.summary.get("git_commit"),
        "features": "feature i is token i: embed.W_E[i] = E_i, unembed.W_U = E (tied)",
        "qk_template": [list(p) for p in cfg.qk_template],
        "ov_template": [list(p) for p in cfg.ov_template],
        "value_features": list(cfg.value_features),
        "instances": [], "skipped_diverged": [
            {"instance": n, "seed": instances[n].get("seed"),
             "diverged_step": instances[n]["diverged_step"]}
            for n in range(len(instances)) if n not in keep],
    }
    with claim(out_dir, overwrite, marker=MARKER) as out, \
            staged(out, overwrite, marker=MARKER) as staging:
        for n in keep:
            folder = staging / f"instance_{n}"
            folder.mkdir()
            name = f"toymodels-{run.summary.get('preset', 'run')}-instance{n}"
            save_file(state_dict_of(cfg, run.params, n), folder / "model.safetensors",
                      metadata={"format": "pt"})
            write_json(folder / "config.json", hooked_config(cfg, name))
            record["instances"].append({"instance": n, "seed": instances[n].get("seed"),
                                        "overrides": instances[n].get("overrides"),
                                        "folder": folder.name})
        write_json(staging / MARKER, record)
    return record
