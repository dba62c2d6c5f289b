"""`toymodels sad MODEL_OR_RUN --prompts ioi:64|FILE --out DIR`: sparse attention
decomposition of a pretrained model's heads, or of a stored toy run's (docs/science.md).

Every input is checked before any work (output directory, prompts, checkpoint, token
counts); bad input gets one line and exit 2 and nothing is written. DIR holds:
  firings.parquet  one row per firing (sad_tables.FIRING_COLUMNS)
  heads.parquet    one row per head (sad_tables.HEAD_COLUMNS; with --rotations N, each control
                   statistic's 5/50/95% over the N draws, STAT_q05/_q50/_q95)
  rotations.parquet  (--rotations N only) one row per head and Haar draw
  sad.json         model, prompts, options, LayerNorm folding, counts, versions, git commit
  prompts.txt      the prompts, one per line;  timing.json  seconds per stage
  nrecon.png, heads.png  figures drawn from the tables
"""

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from toymodels.errors import AnalysisInputError, RunDirError

@dataclass
class SadInputs:
    """What the decomposition needs from any model (see analysis/sad.decompose)."""
    name: str
    x: np.ndarray  # [L, P, T, D] attention input of every layer
    mask: np.ndarray  # [P, T, T] key visible to query
    W_Q: np.ndarray  # [L, n, H, D]
    W_K: np.ndarray  # [L, n, H, D]
    b_Q: np.ndarray  # [L, n, H]
    b_K: np.ndarray  # [L, n, H]
    special: np.ndarray  # [P, T] bool
    tokens: list  # per prompt, its token strings
    meta: dict = field(default_factory=dict)  # architecture, layernorm_folded, x_meaning, ...


def run_dir_inputs(run_dir: Path, prompts_spec: str, instance: int = 0):
    """A toymodels run: its instance's heads on sequences of its own task (its family's
    sad_inputs; the toy transformer's)
    (--prompts task:N or task:N:SEED; every query carries its query feature).
    Returns (SadInputs, prompt names)."""
    from toymodels.families import family_of
    from toymodels.pretrained.prompts import check_prompt_count
    from toymodels.rundir import load_run

    parts = prompts_spec.split(":")
    try:
        if parts[0] != "task" or len(parts) not in (2, 3):
            raise ValueError
        n, seed = int(parts[1]), int(parts[2]) if len(parts) == 3 else 0
    except ValueError:
        raise AnalysisInputError(f"--prompts {prompts_spec!r}: a run directory takes sequences "
                                 "of its own task, task:N or task:N:SEED, e.g. task:256") from None
    check_prompt_count(n, seed, prompts_spec)
    run = load_run(run_dir)
    if not 0 <= instance < len(run.summary["instances"]):
        raise AnalysisInputError(f"--instance {instance}: the run has "
                                 f"{len(run.summary['instances'])} instances")
    try:
        arrays, names, meta = family_of(run.config).sad_inputs(
            run.config, {k: v[instance] for k, v in run.params.items()}, n, seed)
    except ValueError as e:
        if isinstance(e, AnalysisInputError):  # too many prompts for this machine
            raise
        raise RunDirError(f"{run_dir}: {e}") from None
    inputs = SadInputs(name=f"{run_dir} (instance {instance})", **arrays,
                       special=np.zeros(arrays["mask"].shape[:2], bool), tokens=names, meta=meta)
    return inputs, [" ".join(row) for row in names]


def pretrained_inputs(ckpt, encoded, fold_layernorm: bool) -> SadInputs:
    """Run the checkpoint's forward pass and collect each layer's attention inputs."""
    from toymodels.pretrained import fold_layernorm as fold
    acts = ckpt.forward(encoded)
    heads, x = (fold(ckpt.heads, acts) if fold_layernorm else (ckpt.heads, acts.x))
    x_meaning = ("(x - mean) / std before the LayerNorm that feeds the layer; its gain and "
                 "bias are folded into W_Q, W_K, b_Q, b_K" if fold_layernorm else ckpt.x_meaning)
    cfg = ckpt.config
    return SadInputs(name=ckpt.name, x=x, mask=acts.mask, W_Q=heads.W_Q, W_K=heads.W_K,
                     b_Q=heads.b_Q, b_K=heads.b_K, special=encoded.special,
                     tokens=encoded.tokens,
                     meta={"checkpoint": str(ckpt.path), "architecture": ckpt.architecture,
                           "model_type": cfg.get("model_type"),
                           "architectures": cfg.get("architectures"),
                           "causal": ckpt.causal, "layernorm_folded": fold_layernorm,
                           "x_meaning": x_meaning})


def sad(model: str, prompts: str, out, *, threshold: float | None = None,
        recon_frac: float = 1.0, include_special: bool = False, fold_layernorm: bool = False,
        prepend_bos: bool = False, seed: int = 0, instance: int = 0, overwrite: bool = False,
        progress: bool = True, rotations: int = 1,
        recon_fracs: tuple = ()) -> tuple[dict, "SadInputs", list]:
    """Decompose every firing of a pretrained model (a Hugging Face folder, or 'minilm') or
    of a toymodels run directory on the prompts spec (ioi:N[:SEED], task:N[:SEED] or a
    file), beside a rotated control; writes out (see the module docstring). Everything is
    checked before any work. Returns (sad.json's record, the inputs, the prompts)."""
    from toymodels.analysis.sad import SadOptions, check_fits
    from toymodels.configs import check_seed
    from toymodels.pretrained.prompts import parse_prompts
    from toymodels.store import check_out_dir, claim

    check_seed(seed, "--seed")  # named as the command line names it, before SadOptions does
    options = SadOptions(threshold=threshold, recon_frac=recon_frac,
                         exclude_special=not include_special, seed=seed, rotations=rotations,
                         recon_fracs=tuple(recon_fracs))
    options.check()  # before any work, as the output directory
    check_out_dir(out, overwrite, marker="sad.json")
    path = Path(model)
    with claim(out, overwrite, marker="sad.json") as out:
        t0 = time.perf_counter()
        if path.is_dir() and (path / "summary.json").is_file() \
                and not (path / "config.json").is_file():
            inputs, prompt_list = run_dir_inputs(path, prompts, instance)
        else:
            prompt_list = parse_prompts(prompts)
            from toymodels.pretrained import load_pretrained
            ckpt = load_pretrained(model)
            encoded = ckpt.encode(prompt_list, prepend_bos=prepend_bos)  # checks lengths
            heads = ckpt.heads.W_Q.shape
            check_fits(heads[0], heads[1], len(prompt_list), encoded.special.shape[1],
                       heads[3], f"--prompts {prompts}")
            inputs = pretrained_inputs(ckpt, encoded, fold_layernorm)
        t_forward = time.perf_counter() - t0
        record = analyze_and_write(inputs, prompt_list, prompts, out, options,
                                   progress=progress, timing={"load_and_forward_s": t_forward},
                                   overwrite=overwrite)
    return record, inputs, prompt_list


def analyze_and_write(inputs: SadInputs, prompts, prompts_spec, out: Path, options,
                      progress=True, timing=None, overwrite: bool = False) -> dict:
    """Decompose, then write the tables, sad.json and figures atomically into out (replacing
    an earlier SAD output there with overwrite; call it inside store.claim(out))."""
    from toymodels.analysis import sad
    from toymodels.plots.sad import plot_head_map, plot_nrecon
    from toymodels.store import provenance, staged, write_json

    t0 = time.perf_counter()
    result = sad.decompose(inputs.x, inputs.mask, inputs.W_Q, inputs.W_K, inputs.b_Q,
                           inputs.b_K, special=inputs.special, options=options,
                           progress=progress)
    t_sad = time.perf_counter() - t0
    from toymodels.analysis import sad_control, sad_tables
    firings = sad_tables.firing_table(result, inputs.mask, inputs.tokens)
    fracs = options.recon_fracs
    heads = sad_tables.head_table(firings, result.S, fracs)
    draws = None
    if result.draws is not None:  # the control's spread over Haar draws
        draws = sad_control.draw_table(result.firings, result.draws, result.S, fracs)
        heads |= sad_control.spread_columns(draws, *result.S.shape[:2])
    L, P, T, D = inputs.x.shape
    n_tokens = [len(t) for t in inputs.tokens]
    record = {"model": inputs.name, **inputs.meta,
              "prompts": {"spec": prompts_spec, "count": len(prompts),
                          "tokens_min": min(n_tokens), "tokens_max": max(n_tokens)},
              "shape": {"layers": L, "heads_per_layer": int(inputs.W_Q.shape[1]),
                        "head_dim": int(inputs.W_Q.shape[2]), "d_model": D,
                        "K": int(result.S.shape[-1])},
              "options": {**asdict(options), "threshold_rule": "1/n" if options.threshold
                          is None else "fixed", "recon_rtol": sad.RECON_RTOL},
              "overall": sad_tables.overall(firings, heads, fracs),
              **provenance()}
    if draws is not None:
        record["rotations"] = sad_control.overall_spread(result.firings, result.draws, draws,
                                                         fracs)
    record["versions"] |= _extra_versions()
    with staged(out, overwrite, marker="sad.json") as staging:
        sad_tables.write_parquet(staging / "firings.parquet", firings)
        sad_tables.write_parquet(staging / "heads.parquet", heads)
        if draws is not None:
            sad_tables.write_parquet(staging / "rotations.parquet", draws)
        write_json(staging / "sad.json", record)
        (staging / "prompts.txt").write_text("\n".join(prompts) + "\n")
        write_json(staging / "timing.json", {**(timing or {}), "decompose_s": t_sad})
        plot_nrecon(staging, staging / "nrecon.png")
        plot_head_map(staging, staging / "heads.png")
    return record


def _extra_versions() -> dict:
    from importlib import metadata
    out = {}
    for package in ("safetensors", "tokenizers", "pyarrow"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


def summary_lines(record: dict) -> str:
    """The printed summary: each number beside the rotated control (draw 0), and with
    --rotations N the control's 5–95% range over the draws."""
    o = record["overall"]
    if not o["firings"]:
        return "no firings"
    spread = record.get("rotations")
    head = f"{'':28s}{'heads':>10s}{'rotated':>10s}"
    if spread:
        head += f"  rotated 5–95% over {spread['draws']} draws (median)"

    def line(label, key, rot_key, fmt, qfmt):  # rot_key names sad.json's spread too
        text = f"{label:28s}{o[key]:10{fmt}}{o[rot_key]:10{fmt}}"
        if spread and rot_key in spread:
            q = spread[rot_key]["q"]
            text += f"  {q[0]:{qfmt}}–{q[2]:{qfmt}} ({q[1]:{qfmt}})"
        return text

    lines = [head,
             line("share of firings N_recon<=4", "share_n_recon_le4", "share_n_recon_le4_rot",
                  ".3f", ".3f"),
             line("median N_recon", "median_n_recon", "median_n_recon_rot", ".1f", ".1f"),
             line("median sparseness", "median_sparseness", "median_sparseness_rot", ".3f",
                  ".3f"),
             line("heads with median N_recon<=4", "heads_median_n_recon_le4",
                  "heads_median_n_recon_rot_le4", "d", ".1f")
             + f"  (of {o['heads_with_firings']} with firings)"]
    for frac in record["options"].get("recon_fracs") or ():
        lines.append(line(f"median N_recon at {frac:g}", f"median_n_recon_at_{frac:g}",
                          f"median_n_recon_rot_at_{frac:g}", ".1f", ".1f"))
    return "\n".join(lines)
