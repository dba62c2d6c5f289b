"""Command line: `toymodels run PRESET --out DIR [--seeds 0-7] [--steps N] [--set k=v ...]`.

Every argument is checked before any work starts; a bad one gets a single
line on stderr and exit code 2, and leaves the output directory untouched.
"""

import argparse
import sys

from toymodels.config import (PRESETS, ConfigError, apply_overrides, make_instances,
                              parse_seeds, parse_vary, preset)
from toymodels.store import RunDirError

EXAMPLES = """\
examples:
  toymodels run single-pair --seeds 0-7 --out runs/single-pair
  toymodels run no-head --seeds 0-3 --out runs/no-head
  toymodels run single-pair --out runs/lam --vary lam=0.5,1,2 --set steps=2000
  toymodels run multi-pair --seeds 0-1 --steps 200 --out runs/multi-smoke
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
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
    except (ConfigError, RunDirError) as e:
        sys.stderr.write(f"toymodels: error: {e}\n")
        return 2
    return 2


def _run(args) -> int:
    cfg = preset(args.preset)
    assignments = list(args.set) + ([f"steps={args.steps}"] if args.steps is not None else [])
    cfg = apply_overrides(cfg, assignments)
    instances = make_instances(cfg, parse_seeds(args.seeds), parse_vary(args.vary))

    from toymodels.run import run, summary_table  # imports JAX: only once input is valid
    summary = run(args.preset, cfg, instances, args.out, overwrite=args.overwrite,
                  progress=not args.no_progress)
    print(f"{args.preset}: {len(instances)} instances, {cfg.steps} steps -> {args.out}")
    print(summary_table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
