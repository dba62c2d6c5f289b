"""Every figure the README and docs/ show, redrawn from stored results: `toymodels figures`.

Each figure in FIGURES declares the stored results it reads (Input: a folder under the runs
folder, the files it must hold, and the exact command that makes it) and the function that
draws it (toymodels.plots). Nothing here trains, except `--train`, which runs the missing
inputs' commands first, as subprocesses of this Python.

Each figure is written as NAME.png and NAME.pdf with its provenance in the file's metadata:
the command that reproduces it (`toymodels figures --only NAME`), the git commit (marked
-dirty when the code, CODE_PATHS, has uncommitted edits) and the package versions, and the
stored inputs with the commit that made each. Dates are left out
(PDF CreationDate pinned to None; PNG has no time chunk and no 'Software' entry), so the
same code and inputs give byte-identical files.

Importing this module loads neither matplotlib nor JAX.
"""

import dataclasses
import fnmatch
import functools
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from toymodels.errors import ConfigError, RunDirError

REPO = Path(__file__).resolve().parents[1]
"""The checkout holding this package; experiments/ (scripts, sweep specs) lives beside it."""

DEFAULT_RUNS = "runs"
FORMATS = ("png", "pdf")

EPILOG = """\
Each figure is drawn from stored results only (runs, sweeps, theory and SAD directories
under --runs, as scripts/quickstart and the commands below make them) into OUT/NAME.png
and OUT/NAME.pdf, with the reproducing command, git commit and package versions in the
files' metadata; the same inputs and code give byte-identical files.

Missing inputs: every figure whose stored inputs are all there is drawn; each missing
input is listed with the exact command that makes it (--train runs those commands first).
Exit status: 0 when at least one figure was drawn and every figure whose inputs are
stored was drawn (missing ones are listed, not errors); 2 when none of the selected
figures could be drawn because inputs are missing, or on bad arguments; 1 when a figure
whose inputs are stored failed to draw or a --train command failed.

examples:
  toymodels figures --list                          # every figure, its inputs, what is missing
  toymodels figures --out figures                   # redraw what the stored runs allow
  toymodels figures --out figs --only fig2a_single_pair 'transformer_*'
  toymodels figures --out figures --train           # make the missing runs first (long)
"""


class MissingInputs(RunDirError):
    """A figure's stored inputs are not all there; .missing lists them."""

    def __init__(self, message: str, missing: list):
        super().__init__(message)
        self.missing = missing


@dataclass(frozen=True)
class Input:
    """A stored result a figure reads: a folder under the runs folder, the files it must
    hold, and the command that makes it ('{runs}' stands for the runs folder, '{repo}' for
    the checkout; 'toymodels' and 'python' run with this Python)."""

    path: str
    files: tuple[str, ...]
    command: tuple[str, ...]
    redo: tuple[str, ...] = ()
    """Arguments added to the command when the folder exists but lacks a file."""
    after: tuple["Input", ...] = ()
    """Inputs the command itself reads (made first by --train)."""
    cost: str = ""
    """About how long the command takes on a 2-core CPU."""

    def needing(self, *files: str) -> "Input":
        """The same input, also requiring files."""
        return dataclasses.replace(self, files=tuple(dict.fromkeys(self.files + files)))

    def location(self, runs) -> Path:
        return Path(runs) / self.path

    def missing_files(self, runs) -> list[str]:
        where = self.location(runs)
        return [f for f in self.files if not (where / f).is_file()]

    def argv(self, runs) -> list[str]:
        """The command as it is shown (paths relative to the working directory)."""
        args = [_expand(a, runs) for a in self.command]
        if self.redo and self.location(runs).exists():
            args += list(self.redo)
        return args


@dataclass(frozen=True)
class FigureSpec:
    """One figure: its file name (without extension), what it shows, the stored inputs it
    reads (name -> Input) and draw(paths) -> matplotlib Figure, paths: name -> folder."""

    name: str
    title: str
    inputs: dict
    draw: Callable = field(repr=False)


def _expand(arg: str, runs) -> str:
    if arg.startswith("{runs}"):
        return str(Path(runs) / arg[len("{runs}/"):]) if arg != "{runs}" else str(runs)
    if arg.startswith("{repo}/"):
        path = REPO / arg[len("{repo}/"):]
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)
    return arg


# ---- the stored inputs, as scripts/quickstart, docs/ and experiments/ make them --------


def _run(preset: str, seeds: str, cost: str) -> Input:
    """A preset's run in RUNS/<preset>, as scripts/quickstart and docs/ make it."""
    return Input(preset, ("summary.json",),
                 ("toymodels", "run", preset, "--seeds", seeds, "--out", "{runs}/" + preset),
                 redo=("--overwrite",), cost=cost)


SINGLE_PAIR = _run("single-pair", "0-7", "2 min")
NO_HEAD = _run("no-head", "0-3", "1 min")
TRANSFORMER = {
    "retrieval": _run("transformer-retrieval", "0-7", "1.5 min"),
    "multi-pair": _run("transformer-multi-pair", "0-7", "4 min"),
    "rope": _run("transformer-rope", "0-7", "1.5 min"),
    "control": _run("transformer-control", "0-7", "1.5 min"),
    "full": _run("transformer-full", "0-7", "5-12 min"),
}
ROBUSTNESS = Input("sweeps/robustness", ("results.parquet",),
                   ("toymodels", "sweep", "{repo}/experiments/sweeps/robustness.toml",
                    "--out", "{runs}/sweeps/robustness"), cost="10 min")
REALISM = Input("sweeps/transformer_realism", ("results.parquet",),
                ("toymodels", "sweep", "{repo}/experiments/sweeps/transformer_realism.toml",
                 "--out", "{runs}/sweeps/transformer_realism"), cost="10 min")
THEORY = Input("theory-quick", ("theory.json",),
               ("toymodels", "theory", "--quick", "--out", "{runs}/theory-quick"),
               redo=("--overwrite",), cost="10 min")
SAD_MINILM = Input("sad-minilm", ("sad.json", "heads.parquet", "firings.parquet"),
                   ("toymodels", "sad", "minilm", "--prompts", "ioi:64", "--rotations", "20",
                    "--recon-fracs", "0.9,0.99,1", "--out", "{runs}/sad-minilm"),
                   redo=("--overwrite",), cost="1 min")
# the rank-≥3 SAD validation's run: the toy multi-pair preset on seeds it was not designed on
SAD_MULTI_PAIR = _run("multi-pair", "100-101", "5 min")
SAD_TOY = Input("sad-toy", ("planted.parquet", "over_training.parquet", "multi_pair.parquet",
                            "multi_pair_pairs.parquet"),
                ("python", "{repo}/experiments/sad_toy_validation.py", "--runs", "{runs}",
                 "--out", "{runs}/sad-toy", "--no-figure"),
                redo=("--overwrite",), cost="1 min",
                after=(TRANSFORMER["retrieval"].needing("dynamics.npz"),
                       TRANSFORMER["control"].needing("dynamics.npz"), SAD_MULTI_PAIR))


# The optimizer x frame study (docs/transformers.md; experiments/optimizer_frame.py): the
# retrieval, RoPE and multi-pair tasks trained with three optimizers on two frames, on
# held-out seeds (the presets were designed on seeds 0-7).
OPTIMIZERS = {  # name: --set assignments of `toymodels run PRESET` (SGD's rate: per task)
    "adamw": ["optimizer=adamw"],
    "adamw_rotated": ["optimizer=adamw_rotated"],
    "sgd": ["optimizer=sgd"],
}
FRAMES = ("random", "axis")
ADAMW_SHRINK = 3e-3 * 0.05
"""AdamW's per-step weight shrink in every preset of the study (rate x decoupled decay);
SGD's decay is set to give the same shrink at its own rate."""


@dataclass(frozen=True)
class OptimizerFrameTask:
    """One task of the study: its preset, seeds, and SGD's rate (chosen on design seeds 0-3
    by the probe its note describes)."""

    preset: str
    seeds: str
    sgd_rate: float
    note: str = ""

    @property
    def sgd_decay(self) -> float:
        return round(ADAMW_SHRINK / self.sgd_rate, 12)


OPTIMIZER_FRAME_TASKS = {
    # SGD rate 1 (0.3 and 1 solved the task on seeds 0-3, 3 and 10 diverged); decoupled decay
    # at AdamW's per-step shrink (the preset's 0.05 at rate 1 shrinks the weights 5% a step
    # and holds them at the small-init saddle). The same 3,000 steps and schedule as AdamW.
    "retrieval": OptimizerFrameTask("transformer-retrieval", "100-107", 1.0),
    # RoPE, SGD on seeds 0-3 (4,000 steps): rates 0.3 and 1 solved the task, 3 and 10 diverged.
    "rope": OptimizerFrameTask("transformer-rope", "100-107", 1.0),
    # Multi-pair, SGD on seeds 0-3 (a 1,000-step probe): 3 diverged, 1 reached attention
    # accuracy 0.45-0.53, 0.3 had not left chance (0.125). Seeds 100-103 only: 8 seeds of
    # six runs did not fit the CPU time the study had.
    "multi-pair": OptimizerFrameTask("transformer-multi-pair", "100-103", 1.0),
}
OPTIMIZER_FRAME_SEEDS = OPTIMIZER_FRAME_TASKS["retrieval"].seeds


def optimizer_sets(optimizer: str, task: str = "retrieval") -> list[str]:
    """The --set assignments of one optimizer in one task of the study."""
    t = OPTIMIZER_FRAME_TASKS[task]
    if optimizer == "sgd":
        return OPTIMIZERS["sgd"] + [f"learning_rate={t.sgd_rate:g}",
                                    f"weight_decay={t.sgd_decay:g}"]
    return list(OPTIMIZERS[optimizer])


def optimizer_frame_dir(runs, optimizer: str, frame: str, task: str = "retrieval") -> Path:
    """Where the study keeps the run of one optimizer and frame: RUNS/<optimizer>-<frame>
    for the retrieval task, RUNS/<task>/<optimizer>-<frame> for the others."""
    sub = Path(runs) if task == "retrieval" else Path(runs) / task
    return sub / f"{optimizer}-{frame}"


def optimizer_frame_command(out, optimizer: str, frame: str, task: str = "retrieval") -> list[str]:
    """The `toymodels run` arguments that make one run of the study."""
    t = OPTIMIZER_FRAME_TASKS[task]
    sets = optimizer_sets(optimizer, task) + [f"frame={frame}"]
    return ["run", t.preset, "--seeds", t.seeds, "--out", str(out),
            *[a for s in sets for a in ("--set", s)]]


def _optimizer_frame_inputs(task: str) -> dict:
    folder = "optimizer-frame" if task == "retrieval" else f"optimizer-frame/{task}"
    cost = {"retrieval": "2 min", "rope": "2 min", "multi-pair": "4 min"}[task]
    return {f"{o}-{f}": Input(f"{folder}/{o}-{f}", ("summary.json", "params.npz"),
                              ("toymodels", *optimizer_frame_command(
                                  f"{{runs}}/{folder}/{o}-{f}", o, f, task)),
                              redo=("--overwrite",), cost=cost)
            for o in OPTIMIZERS for f in FRAMES}


OPTIMIZER_FRAME = _optimizer_frame_inputs("retrieval")
OPTIMIZER_FRAME_BY_TASK = {task: _optimizer_frame_inputs(task) for task in OPTIMIZER_FRAME_TASKS}


# The feature-structure study (docs/structure.md; experiments/feature_structure.py): the
# single-pair toy and the retrieval transformer with correlated, nested and Zipf-distributed
# firing, on held-out seeds, one run per axis value.
FEATURE_STRUCTURE_SEEDS = "100-103"
FEATURE_STRUCTURE_PRESETS = {"toy": "single-pair", "transformer": "transformer-retrieval"}
_STRUCTURE = {  # family: (correlated blocks, hierarchy links per depth, N)
    "toy": ("0,2,3,4;1,5,6,7", {1: {2: 0, 5: 1}, 2: {2: 0, 3: 2, 5: 1, 6: 5}}, 20),
    "transformer": ("2,3,4,5", {1: {3: 2}, 2: {3: 2, 4: 3}}, 16),
}
CONDITIONAL = 0.9
"""P(child fires | parent fires) in the hierarchy runs."""


def feature_structure_points(family: str) -> list[tuple[str, float, list[str]]]:
    """(axis, value, --set assignments) of every run of one family in the study."""
    blocks, depth, n = _STRUCTURE[family]

    def parents(links: dict) -> str:
        return ",".join(str(links.get(i, -1)) for i in range(n))

    out = [("correlation", 0.0, [])]
    out += [("correlation", rho, [f"corr_blocks={blocks}", f"corr={rho}"])
            for rho in (0.3, 0.6, 0.9)]
    out += [("depth", float(d), [f"parents={parents(links)}", f"conditional={CONDITIONAL}"])
            for d, links in depth.items()]
    out += [("zipf", a, [f"zipf_exponent={a}"]) for a in (0.5, 1.0, 1.5)]
    return out


def feature_structure_dir(runs, family: str, axis: str, value: float) -> Path:
    """Where the study keeps one run: RUNS/<family>-<axis>-<value>."""
    return Path(runs) / f"{family}-{axis}-{value:g}"


def feature_structure_command(out, family: str, sets: list[str]) -> list[str]:
    """The `toymodels run` arguments that make one run of the study (the toy with the squared
    attention loss, Theorem 1's)."""
    sets = sets + (["attn_loss=mse"] if family == "toy" else [])
    return ["run", FEATURE_STRUCTURE_PRESETS[family], "--seeds", FEATURE_STRUCTURE_SEEDS,
            "--out", str(out), *[a for s in sets for a in ("--set", s)]]


FEATURE_STRUCTURE = {
    f"{family}-{axis}-{value:g}": Input(
        f"feature-structure/{family}-{axis}-{value:g}", ("summary.json", "params.npz"),
        ("toymodels", *feature_structure_command(
            f"{{runs}}/feature-structure/{family}-{axis}-{value:g}", family, sets)),
        redo=("--overwrite",), cost="1-2 min")
    for family in FEATURE_STRUCTURE_PRESETS
    for axis, value, sets in feature_structure_points(family)}


# ---- how each figure is drawn (imports matplotlib only when drawing) ------------------


def _alignment(paths):
    from toymodels.plots import plot_alignment
    return plot_alignment(paths["run"])


def _family_figure(paths):
    """The figure a run draws for itself (its alignment.png), without loading JAX for the
    two families whose figure is known."""
    import toymodels.plots as plots

    family = json.loads((paths["run"] / "summary.json").read_text()).get("family")
    if family in ("toy", "transformer"):
        plot = plots.plot_alignment if family == "toy" else plots.plot_transformer_run
        return plot(paths["run"])
    from toymodels import plot_run
    return plot_run(paths["run"])


def _feature_geometry(paths):
    from toymodels.plots import plot_feature_geometry
    return plot_feature_geometry(paths["no_head"], paths["single_pair"])


def _dynamics(paths):
    from toymodels.plots import plot_dynamics
    return plot_dynamics(paths["run"])


def _robustness(paths):
    from toymodels.plots import plot_robustness
    return plot_robustness(paths["sweep"])


def _theory(check: str, plot: str):
    def draw(paths):
        import numpy as np

        import toymodels.plots as plots
        with np.load(paths["theory"] / "data" / f"{check}.npz") as f:
            return getattr(plots, plot)(dict(f))
    return draw


def _rope_offsets(paths):
    from toymodels.plots import plot_rope_offsets
    return plot_rope_offsets(paths["run"])


def _realism(paths):
    from toymodels.plots import plot_realism
    return plot_realism(paths["sweep"])


def _optimizer_frame(task: str):
    def draw(paths):
        from toymodels.plots.studies import optimizer_frame_rows, plot_optimizer_frame
        (folder,) = {p.parent for p in paths.values()}  # every run of one task sits in it
        if task != "retrieval":
            folder = folder.parent  # RUNS/<task>/<optimizer>-<frame>
        return plot_optimizer_frame(optimizer_frame_rows(folder, task), task=task)
    return draw


def _feature_structure(paths):
    from toymodels.plots.studies import feature_structure_rows, plot_feature_structure
    (folder,) = {p.parent for p in paths.values()}  # every run of the study sits in it
    return plot_feature_structure(feature_structure_rows(folder))


def _sad_toy(paths):
    from toymodels.plots import plot_planted_over_training
    return plot_planted_over_training(paths["sad"])


def _sad_toy_multi_pair(paths):
    from toymodels.plots.sad import plot_planted_multi_pair
    return plot_planted_multi_pair(paths["sad"])


def _sad_nrecon(paths):
    from toymodels.plots import plot_nrecon
    return plot_nrecon(paths["sad"])


def _sad_heads(paths):
    from toymodels.plots import plot_head_map
    return plot_head_map(paths["sad"])


def _registry() -> dict:
    theory = {c: THEORY.needing(f"data/{c}.npz")
              for c in ("multi_pair", "anisotropy", "pairs_beyond_h")}
    specs = [
        FigureSpec("fig1_feature_geometry", "Figure 1 analogue: WᵀW and feature norms, "
                   "no-head control beside the single-pair model",
                   {"no_head": NO_HEAD.needing("analysis/arrays.npz"),
                    "single_pair": SINGLE_PAIR.needing("analysis/arrays.npz")},
                   _feature_geometry),
        FigureSpec("fig2a_single_pair", "Figure 2a: |cos| of features with the singular "
                   "vectors of Ω, and every seed's spectrum with its significance cut-off",
                   {"run": SINGLE_PAIR.needing("analysis.npz")}, _alignment),
        FigureSpec("fig3_dynamics", "Figure 3 analogue: alignment first, orthogonalization "
                   "later; the losses over training",
                   {"run": SINGLE_PAIR.needing("dynamics.npz", "curves.npz")}, _dynamics),
        FigureSpec("single-pair_alignment", "the single-pair run's own figure "
                   "(runs/single-pair/alignment.png)",
                   {"run": SINGLE_PAIR.needing("analysis.npz")}, _family_figure),
        FigureSpec("no-head_alignment", "the λ = 0 control run's own figure "
                   "(runs/no-head/alignment.png)",
                   {"run": NO_HEAD.needing("analysis.npz")}, _family_figure),
        FigureSpec("appendix_a_robustness", "Appendix A analogue: 1 − matched |cos| over "
                   "λ, N, m, H and seeds", {"sweep": ROBUSTNESS}, _robustness),
        FigureSpec("fig2b_multi_pair", "Figure 2b: several pairs, |cos| and matched σ "
                   "against the targets", {"theory": theory["multi_pair"]},
                   _theory("multi_pair", "plot_multi_pair")),
        FigureSpec("fig4_anisotropy", "Figure 4: alignment against feature anisotropy, "
                   "beside the bounds", {"theory": theory["anisotropy"]},
                   _theory("anisotropy", "plot_anisotropy")),
        FigureSpec("pairs_beyond_h", "more pairs than H: distance from the rank-H optimum "
                   "and each pair's fate", {"theory": theory["pairs_beyond_h"]},
                   _theory("pairs_beyond_h", "plot_pairs_beyond_h")),
    ]
    for preset, inp in TRANSFORMER.items():
        specs.append(FigureSpec(f"transformer_{preset}", f"transformer-{preset}: every "
                                "head's accuracy and alignment, the best head through "
                                "training", {"run": inp}, _family_figure))
    specs += [
        FigureSpec("transformer_rope_offsets", "RoPE: alignment of Ω_δ and the planted logit "
                   "at every offset", {"run": TRANSFORMER["rope"].needing("analysis.npz")},
                   _rope_offsets),
        FigureSpec("transformer_realism", "what realism costs: alignment as LayerNorm, MLP, "
                   "learned embeddings, anisotropy and depth are switched on",
                   {"sweep": REALISM}, _realism),
        FigureSpec("optimizer_frame", "the optimizer's frame: QK sides and self score, "
                   "optimizer × frame, held-out seeds, beside a random-head foil",
                   OPTIMIZER_FRAME, _optimizer_frame("retrieval")),
        FigureSpec("optimizer_frame_rope", "the optimizer's frame, RoPE: Ω_δ's sides at the "
                   "task's offset and the query's self score, optimizer × frame, held-out seeds",
                   OPTIMIZER_FRAME_BY_TASK["rope"], _optimizer_frame("rope")),
        FigureSpec("optimizer_frame_multi_pair", "the optimizer's frame, multi-pair: the "
                   "centred spans and per-pair |cos|, optimizer × frame, held-out seeds",
                   OPTIMIZER_FRAME_BY_TASK["multi-pair"], _optimizer_frame("multi-pair")),
        FigureSpec("feature_structure", "alignment under feature structure: correlated, "
                   "nested and Zipf firing, toy and transformer, held-out seeds",
                   FEATURE_STRUCTURE, _feature_structure),
        FigureSpec("sad_toy_over_training", "SAD over training in the toy transformers "
                   "(Figure 7 analogue)", {"sad": SAD_TOY}, _sad_toy),
        FigureSpec("sad_toy_multi_pair", "SAD validation that can fail: planted firings of "
                   "20 pairs carried by their own singular index, beside rotated and "
                   "rank-one foils", {"sad": SAD_TOY}, _sad_toy_multi_pair),
        FigureSpec("sad_minilm_nrecon", "SAD of MiniLM: N_recon beside the rotated control, "
                   "overall and per head", {"sad": SAD_MINILM}, _sad_nrecon),
        FigureSpec("sad_minilm_heads", "SAD of MiniLM: median N_recon, layer × head",
                   {"sad": SAD_MINILM.needing("heads.parquet")}, _sad_heads),
    ]
    return {s.name: s for s in specs}


FIGURES: dict[str, FigureSpec] = _registry()
"""Every figure the README and docs/ show, by file name (tests/test_figures.py checks the
list against the image links in the Markdown)."""


# ---- provenance and deterministic files ------------------------------------------------


def _versions() -> dict:
    from importlib import metadata

    from toymodels.store import versions
    out = versions()
    for package in ("matplotlib", "pyarrow"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


CODE_PATHS = ("toymodels", "experiments", "pyproject.toml")
"""What shapes a figure besides its inputs: the commit is marked '-dirty' only when these
have uncommitted changes (not when, say, the figures written into figures/ do)."""


@functools.lru_cache(maxsize=1)
def code_commit() -> str | None:
    """HEAD of the checkout holding this package, '-dirty' if CODE_PATHS have edits; None
    outside a git checkout."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS)
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty else "")


def _made_by(folder: Path) -> str | None:
    """The git commit a stored result records, if it records one."""
    for record in ("summary.json", "manifest.json", "theory.json", "sad.json"):
        try:
            return json.loads((folder / record).read_text()).get("git_commit")
        except (OSError, ValueError, AttributeError):
            continue
    return None


def reproduce_command(name: str, runs=DEFAULT_RUNS) -> str:
    """The command that redraws one figure from the same stored inputs."""
    return f"toymodels figures --only {name}" + (
        "" if str(runs) == DEFAULT_RUNS else f" --runs {runs}")


def provenance(spec: FigureSpec, paths: dict, command: str) -> dict:
    """What goes into each file's metadata: command, git commit, versions, inputs."""
    inputs = []
    for key, folder in paths.items():
        made = _made_by(Path(folder))
        inputs.append(f"{folder}" + (f" (made at git {made})" if made else ""))
    return {"figure": spec.name, "title": spec.title, "command": command,
            "git_commit": code_commit() or "unknown",
            "versions": ", ".join(f"{k} {v}" for k, v in _versions().items() if v),
            "inputs": "; ".join(inputs)}


def save(fig, out_dir, name: str, meta: dict) -> list[Path]:
    """Write fig as out_dir/name.png and .pdf (each written beside and renamed into place),
    with meta in the files' metadata and no dates, so the bytes depend on the figure and
    meta only."""
    import matplotlib

    from toymodels.plots.common import STYLE

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = "\n".join(f"{k}: {v}" for k, v in meta.items())
    creator = f"toymodels, git {meta['git_commit']}"
    metadata = {
        # PNG: text chunks; 'Software' (matplotlib's default) dropped, no time chunk
        "png": {"Title": meta["figure"], "Description": meta["title"], "Author": "toymodels",
                "Source": meta["command"], "Comment": text, "Software": None},
        # PDF: the info dictionary's keys; CreationDate pinned to None (no date written)
        "pdf": {"Title": f"{meta['figure']}: {meta['title']}", "Author": "toymodels",
                "Subject": meta["command"], "Keywords": text.replace("\n", "; "),
                "Creator": creator, "CreationDate": None},
    }
    written = []
    with matplotlib.rc_context({**STYLE, "pdf.fonttype": 42}):  # TrueType: editable text
        for fmt in FORMATS:
            path = out_dir / f"{name}.{fmt}"
            tmp = out_dir / f".{name}.{fmt}.tmp"
            try:
                fig.savefig(tmp, format=fmt, metadata=metadata[fmt])
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            written.append(path)
    return written


# ---- drawing ---------------------------------------------------------------------------


def input_paths(spec: FigureSpec, runs=DEFAULT_RUNS, paths: dict | None = None) -> dict:
    """name -> folder of each stored input (paths overrides some)."""
    return {key: Path((paths or {}).get(key, inp.location(runs)))
            for key, inp in spec.inputs.items()}


def missing_inputs(spec: FigureSpec, runs=DEFAULT_RUNS, paths: dict | None = None) -> list:
    """[(Input, folder, missing files)] of the inputs that are not all there."""
    out = []
    for key, folder in input_paths(spec, runs, paths).items():
        inp = spec.inputs[key]
        lacking = [f for f in inp.files if not (folder / f).is_file()]
        if lacking:
            out.append((inp, folder, lacking))
    return out


def render(name: str, out_dir, runs=DEFAULT_RUNS, paths: dict | None = None,
           command: str | None = None) -> list[Path]:
    """Draw one figure from its stored inputs into out_dir/NAME.png and .pdf; returns the
    files. runs: the folder holding the inputs; paths: input name -> folder, overriding
    (e.g. {'sweep': 'my/sweep'}); command: what to record as the producing command
    (default: `toymodels figures --only NAME`). Raises MissingInputs."""
    spec = FIGURES[name]
    missing = missing_inputs(spec, runs, paths)
    if missing:
        raise MissingInputs(f"{name}: missing " + "; ".join(
            f"{folder} (no {', '.join(lacking)}; make it with: "
            f"{' '.join(inp.argv(runs))})" for inp, folder, lacking in missing), missing)
    where = input_paths(spec, runs, paths)
    fig = spec.draw(where)
    meta = provenance(spec, where, command or reproduce_command(name, runs))
    return save(fig, out_dir, name, meta)


def render_script(name: str, out_dir, runs=DEFAULT_RUNS, paths: dict | None = None,
                  optional: bool = False) -> list[Path]:
    """render() for the scripts in experiments/: the script's command line is recorded as
    the producing command; a missing input ends the script with its command on stderr and
    exit status 2 (or, with optional, draws nothing and returns [])."""
    argv = sys.argv if sys.argv and sys.argv[0] else [name]
    command = " ".join(["python", _shown(argv[0]), *argv[1:]])
    try:
        return render(name, out_dir, runs, paths, command=command)
    except MissingInputs as e:
        if optional:
            return []
        sys.stderr.write(f"{e}\n")
        raise SystemExit(2) from None


def _shown(script: str) -> str:
    """A script's path as given, relative to the checkout when it lies inside it."""
    try:
        return str(Path(script).resolve().relative_to(REPO))
    except ValueError:
        return script


def select(only) -> list[str]:
    """Figure names matching the names or shell patterns in only (all when None)."""
    if not only:
        return list(FIGURES)
    chosen = []
    for pattern in only:
        hits = [n for n in FIGURES if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise ConfigError(f"--only: no figure named {pattern!r}; choose from "
                              + ", ".join(FIGURES))
        chosen += [h for h in hits if h not in chosen]
    return [n for n in FIGURES if n in chosen]  # the registry's order


def _plan(names: list[str], runs) -> list[tuple[Input, list[str]]]:
    """The missing inputs of the named figures, prerequisites first, each once (by its
    command), with the figures that need it."""
    plan: dict[tuple, tuple[Input, list[str]]] = {}

    def visit(inp: Input, figure: str | None) -> None:
        if not inp.missing_files(runs):
            return
        for before in inp.after:
            visit(before, None)
        key = tuple(inp.argv(runs))
        entry = plan.setdefault(key, (inp, []))
        if figure and figure not in entry[1]:
            entry[1].append(figure)

    for name in names:
        for inp in FIGURES[name].inputs.values():
            visit(inp, name)
    return list(plan.values())


def _execute(argv: list[str]) -> int:
    """Run a shown command with this Python and this copy of toymodels."""
    if argv[0] == "toymodels":
        argv = [sys.executable, "-m", "toymodels", *argv[1:]]
    elif argv[0] == "python":
        argv = [sys.executable, *argv[1:]]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(argv, env=env).returncode


def listing(names: list[str], runs=DEFAULT_RUNS) -> str:
    """`--list`: each figure, whether it can be drawn, its inputs and their commands."""
    lines = []
    for name in names:
        spec = FIGURES[name]
        lacking = {id(inp) for inp, _, _ in missing_inputs(spec, runs)}
        lines.append(f"{name}  [{'ready' if not lacking else 'missing input'}]")
        lines.append(f"    {spec.title}")
        for inp in spec.inputs.values():
            where = inp.location(runs)
            if id(inp) in lacking:
                lines.append(f"    missing {where} (no {', '.join(inp.missing_files(runs))}): "
                             f"{' '.join(inp.argv(runs))}"
                             + (f"   [{inp.cost}]" if inp.cost else ""))
                for before in inp.after:
                    if before.missing_files(runs):
                        lines.append(f"      first {before.location(runs)}: "
                                     f"{' '.join(before.argv(runs))}")
            else:
                lines.append(f"    stored  {where}")
    return "\n".join(lines)


def figures_command(out=None, runs=DEFAULT_RUNS, only=None, train: bool = False,
                    list_only: bool = False, stdout=None) -> int:
    """`toymodels figures`: draw the selected figures that their stored inputs allow, list
    the missing inputs with their commands (run first with train); the exit status as
    EPILOG says."""
    stdout = stdout or sys.stdout
    names = select(only)
    runs = Path(runs)
    if list_only:
        print(listing(names, runs), file=stdout)
        n_ready = sum(not missing_inputs(FIGURES[n], runs) for n in names)
        print(f"\n{n_ready} of {len(names)} figures can be drawn from the stored inputs "
              f"in {runs}/", file=stdout)
        return 0
    out = Path("figures" if out is None else out)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out} is a file; give a directory")

    failed = []
    if train:
        for inp, _ in _plan(names, runs):
            if any(before.missing_files(runs) for before in inp.after):
                failed.append(f"not run (an input it reads is missing): "
                              f"{' '.join(inp.argv(runs))}")
                continue
            argv = inp.argv(runs)
            print(f"training: {' '.join(argv)}", file=stdout, flush=True)
            code = _execute(argv)
            if code != 0:
                failed.append(f"exit status {code}: {' '.join(argv)}")

    drawn, missing_names = [], []
    for name in names:
        if missing_inputs(FIGURES[name], runs):
            missing_names.append(name)
            continue
        try:
            files = render(name, out, runs)
        except Exception as e:  # a stored input that cannot be read: say which, go on
            failed.append(f"{name}: {type(e).__name__}: {e}")
            continue
        drawn.append(name)
        print(f"drew {name}: " + ", ".join(map(str, files)), file=stdout, flush=True)

    print(f"\n{len(drawn)} of {len(names)} figures drawn into {out}/ "
          f"({' and '.join(f.upper() for f in FORMATS)})", file=stdout)
    if missing_names:
        print(f"{len(missing_names)} not drawn, their stored inputs are missing: "
              + ", ".join(missing_names), file=stdout)
        print("make the missing inputs with these commands, in this order (or rerun with "
              "--train):", file=stdout)
        for inp, figs in _plan(missing_names, runs):
            need = f"for {', '.join(figs)}" if figs else "read by the command below it"
            print(f"  {' '.join(inp.argv(runs))}" + (f"   [{inp.cost}]" if inp.cost else "")
                  + f"\n      {inp.location(runs)} (no {', '.join(inp.missing_files(runs))}); "
                  + need, file=stdout)
    for line in failed:
        print(f"failed: {line}", file=stdout)
    if failed:
        return 1
    if not drawn:
        sys.stderr.write(f"toymodels: error: none of the {len(names)} selected figures "
                         "could be drawn: their stored inputs are missing (listed above)\n")
        return 2
    return 0


__all__ = ["CODE_PATHS", "EPILOG", "FEATURE_STRUCTURE_PRESETS", "FEATURE_STRUCTURE_SEEDS",
           "FIGURES", "FRAMES", "OPTIMIZERS", "FigureSpec", "Input", "MissingInputs",
           "code_commit", "feature_structure_command", "feature_structure_dir",
           "feature_structure_points", "figures_command", "input_paths", "listing",
           "missing_inputs", "OPTIMIZER_FRAME_BY_TASK", "OPTIMIZER_FRAME_TASKS",
           "optimizer_frame_command", "optimizer_frame_dir", "optimizer_sets", "provenance",
           "render", "render_script", "reproduce_command", "save", "select"]
