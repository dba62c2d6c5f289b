"""`toymodels report DIR`: one self-contained page (Markdown, and HTML with --html) about a
stored result, to attach to a message or paste into a lab notebook.

DIR is one of the four kinds of result directory, recognised by its marker file:

  run     summary.json   (toymodels run, Run.save; the toy and the toy-transformer family)
  sweep   manifest.json  (toymodels sweep; needs results.parquet, the finished tables)
  theory  theory.json    (toymodels theory)
  sad     sad.json       (toymodels sad)

The page has a title, what the result is, its config (the fields that differ from the
defaults, and the full set folded away), the verdict tables beside their baselines or
foils, the figures the result stored, and its provenance (versions, git commit, and the
command line, backend and devices where the result records them).

Output: DIR/report.md by default (the figures referenced by relative path; any that do
not lie in the report's folder are copied beside it as <stem>_<name>), and with html the
same page as <stem>.html with every figure embedded as a base64 data URI, so that single
file carries everything. Nothing is written anywhere else; an existing file is replaced
only if it is a report toymodels wrote (atomically: a temporary file, then os.replace).
Every input is read and every output path checked before anything is written; bad input
raises RunDirError (one line and exit 2 at the command line).
"""

from __future__ import annotations

import base64
import html as _html
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from toymodels.errors import RunDirError
from toymodels.store import own_files

MARKERS = {"summary.json": "run", "manifest.json": "sweep", "theory.json": "theory",
           "sad.json": "sad"}
"""Marker file -> kind of result directory."""

SIGNATURE = "<!-- written by toymodels report -->"
"""First line of every Markdown report (and a line in every HTML one): an existing file
without it is never replaced."""

PROVENANCE_KEYS = ("command", "command_line", "argv", "cwd", "backend", "jax_backend",
                   "platform", "devices", "device_count", "device_kind", "hostname")
"""Provenance fields shown where a result records them (top level or under "provenance")."""

MAX_ROWS = 60
"""Longer tables (a GPT-2's 144 heads) show their first MAX_ROWS rows and say so."""


# ---- the page, as blocks both renderers share ------------------------------------------


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    note: str = ""  # a line under the table (e.g. "first 60 of 144 rows")


@dataclass
class Figure:
    path: Path
    caption: str


@dataclass
class Details:
    summary: str
    blocks: list


@dataclass
class Page:
    title: str
    blocks: list = field(default_factory=list)

    def h(self, text):
        self.blocks.append(("h", text))

    def p(self, text):
        self.blocks.append(("p", text))

    def items(self, items):
        self.blocks.append(("list", list(items)))

    def add(self, block):
        self.blocks.append(block)

    @property
    def figures(self) -> list[Figure]:
        return [b for b in self.blocks if isinstance(b, Figure)]


class Lit(str):
    """Text from the data (a prediction, a name, a config value): shown as it is, never
    read as Markdown or HTML markup. Plain str cells and paragraphs are markup: `code`
    and **bold** only."""


def num(x) -> str:
    """A value as a table cell, in a format that shows its size: 4 significant digits
    (7.6e-06, never 0.0000); None and NaN as '-'."""
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if math.isnan(x):
            return "-"
        return f"{x:.4g}"
    try:  # numpy scalars
        import numpy as np
        if isinstance(x, np.bool_):
            return num(bool(x))
        if isinstance(x, np.integer):
            return str(int(x))
        if isinstance(x, np.floating):
            return num(float(x))
    except ImportError:  # pragma: no cover
        pass
    if isinstance(x, (list, tuple, dict)):
        return Lit(json.dumps(x))
    return Lit(x)


# ---- entry point ---------------------------------------------------------------------


def detect(path) -> str:
    """The kind of result directory at path ('run', 'sweep', 'theory' or 'sad');
    RunDirError, in one line, for anything else."""
    path = Path(path)
    if not path.exists():
        raise RunDirError(f"{path} does not exist; give a run, sweep, theory or SAD directory")
    if not path.is_dir():
        raise RunDirError(f"{path} is a file; give a run, sweep, theory or SAD directory")
    for marker, kind in MARKERS.items():
        if (path / marker).is_file():
            return kind
    raise RunDirError(f"{path} is not a run, sweep, theory or SAD directory (it has no "
                      "summary.json, manifest.json, theory.json or sad.json)")


def report(path, out=None, html: bool = False) -> Path:
    """Write a report of the result directory at path: out (default path/report.md) in
    Markdown, and with html also out with suffix .html, its figures embedded. An out
    ending in .html means html=True with the Markdown beside it as .md. Returns the
    Markdown file's path. RunDirError (nothing written) for a directory that is not a
    result, an unreadable result, or an out that is a directory, a link or a file that is
    not a toymodels report."""
    src = Path(path)
    kind = detect(src)
    md_path = Path(out) if out is not None else src / "report.md"
    if md_path.suffix.lower() in (".html", ".htm"):
        html, md_path = True, md_path.with_suffix(".md")
    html_path = md_path.with_suffix(".html") if html else None
    for target in (md_path, html_path):
        if target is not None:
            _check_target(target)
    try:  # every input read before anything is written
        page = BUILDERS[kind](src)
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as e:
        if isinstance(e, RunDirError):
            raise
        raise RunDirError(f"{src} holds a {kind} this version cannot read "
                          f"({type(e).__name__}: {e})") from None
    figures = _place_figures(page.figures, md_path)  # checked, not yet copied
    text = render_markdown(page, {f.path: ref for f, (ref, _) in zip(page.figures, figures)})
    html_text = render_html(page) if html else None
    md_path.parent.mkdir(parents=True, exist_ok=True)
    for (_, copy), fig in zip(figures, page.figures):
        if copy is not None:
            _atomic_write(copy, fig.path.read_bytes())
    _atomic_write(md_path, text.encode())
    if html_path is not None:
        _atomic_write(html_path, html_text.encode())
    # Written into a result directory: part of it now, so its --overwrite replaces them.
    own_files(p for p in [md_path, html_path, *(copy for _, copy in figures)] if p is not None)
    return md_path


def _check_target(path: Path) -> None:
    if path.is_symlink():
        raise RunDirError(f"--out {path} is a symbolic link; give a file path")
    if path.is_dir():
        raise RunDirError(f"--out {path} is a directory; give a file path, e.g. "
                          f"{path / 'report.md'}")
    if path.exists() and not _ours(path):
        raise RunDirError(f"--out {path} exists and is not a report toymodels wrote; "
                          "choose another path")
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise RunDirError(f"--out {path}: {parent} is not a writable directory")


def _ours(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return SIGNATURE.encode() in head


def _place_figures(figures: list[Figure], md_path: Path) -> list[tuple[str, Path | None]]:
    """Per figure: how the Markdown refers to it, and where it is copied (None: it already
    lies in the report's folder). A copy replaces an existing file only if that file is
    the same figure, or the report being replaced already refers to it."""
    folder = md_path.absolute().parent
    old = md_path.read_text(errors="replace") if md_path.is_file() else ""
    placed = []
    for fig in figures:
        source = fig.path.absolute()
        try:
            placed.append((source.resolve().relative_to(folder.resolve()).as_posix(), None))
            continue
        except ValueError:
            pass
        copy = folder / f"{md_path.stem}_{source.name}"
        if copy.is_symlink() or copy.is_dir():
            raise RunDirError(f"cannot copy {source.name} beside the report: {copy} is a "
                              "link or a directory")
        if copy.exists() and copy.read_bytes() != source.read_bytes() \
                and f"]({copy.name})" not in old:
            raise RunDirError(f"cannot copy {source.name} beside the report: {copy} exists "
                              "and is not a figure of an earlier report; choose another --out")
        placed.append((copy.name, copy))
    return placed


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ---- reading -----------------------------------------------------------------------


def _json(path: Path, what: str) -> dict:
    from toymodels.store import read_json
    return read_json(path, what)


def _parquet(path: Path):
    import pandas as pd

    if not path.is_file():
        raise RunDirError(f"{path.parent} lacks {path.name}; it is not a finished result "
                          "(rerun the command that makes it)")
    try:
        return pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise RunDirError(f"{path} is unreadable ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''})") from None


def _records(frame) -> list[dict]:
    """DataFrame rows as dicts of Python values (NaN -> None)."""
    out = []
    for row in frame.to_dict("records"):
        out.append({k: (None if isinstance(v, float) and math.isnan(v) else v)
                    for k, v in row.items()})
    return out


# ---- the parts every kind shares ---------------------------------------------------


def _config_table(config: dict, defaults: dict | None, preset_values: dict | None,
                  preset_name: str | None) -> tuple[Table, Table]:
    """(fields that differ from the defaults or the preset, every field)."""
    header = ["field", "value"] + ([f"preset {preset_name}"] if preset_values else []) + \
        (["default"] if defaults else [])
    changed, full = [], []
    for k, v in config.items():
        row = [f"`{k}`", num(v)]
        if preset_values:
            row.append(num(preset_values.get(k)))
        if defaults:
            row.append(num(defaults.get(k)))
        full.append(row)
        differs = (defaults is not None and defaults.get(k) != v) or \
            (preset_values is not None and preset_values.get(k) != v)
        if differs:
            changed.append(row)
    return Table(header, changed), Table(header, full)


def _provenance(page: Page, record: dict, source: str, extra: dict | None = None) -> None:
    """Versions, git commit, and whatever else the record says about how it was made."""
    page.h("Provenance")
    rows = [["source", f"`{source}`"],
            ["git commit", f"`{record['git_commit']}`" if record.get("git_commit")
             else "not recorded"]]
    nested = record.get("provenance") if isinstance(record.get("provenance"), dict) else {}
    for key in PROVENANCE_KEYS:
        value = record.get(key, nested.get(key))
        if value is not None:
            if isinstance(value, list) and key == "argv":
                value = " ".join(str(a) for a in value)
            rows.append([key.replace("_", " "), _cell_text(value)])
    for key, value in nested.items():
        if key not in PROVENANCE_KEYS and key != "versions" and value is not None:
            rows.append([key.replace("_", " "), _cell_text(value)])
    for key, value in (extra or {}).items():
        rows.append([key, num(value)])
    if not any(r[0] in ("command", "command line", "argv") for r in rows):
        rows.append(["command line", "not recorded"])
    page.add(Table(["", ""], rows))
    versions = record.get("versions") or nested.get("versions") or {}
    if isinstance(versions, dict) and versions:
        page.add(Table(["package", "version"],
                       [[k, num(v) if v is not None else "not installed"]
                        for k, v in versions.items()]))
    else:
        page.p("Package versions: not recorded.")


def _cell_text(value) -> str:
    if isinstance(value, (dict, list)):
        return "`" + json.dumps(value) + "`"
    return num(value)


def _truncate(rows: list, what: str) -> tuple[list, str]:
    if len(rows) <= MAX_ROWS:
        return rows, ""
    return rows[:MAX_ROWS], f"First {MAX_ROWS} of {len(rows)} {what}; all of them are in " \
        "the files named above."


# ---- a run ---------------------------------------------------------------------------


def _run_page(src: Path) -> Page:
    from toymodels.configs import CONFIG_CLASSES, PRESETS
    from toymodels.rundir import load_run

    run = load_run(src)  # checks every file (RunDirError naming a bad one)
    s = run.summary
    family = s.get("family", "toy")
    preset_name = s.get("preset")
    cls = CONFIG_CLASSES.get(family)
    defaults = cls().to_dict() if cls is not None else None
    config = s.get("config", {})
    preset_cfg = PRESETS.get(preset_name) if preset_name else None
    preset_values = preset_cfg.to_dict() if preset_cfg is not None \
        and type(preset_cfg) is cls else None
    nearest = None
    if preset_name is None and cls is not None:  # a config given in Python: the preset
        nearest = _nearest_preset(config, cls)    # it differs least from, if any is close
        if nearest is not None:
            preset_values = PRESETS[nearest].to_dict()
    instances = s["instances"]
    try:
        heads, pairs = run.table("heads"), run.table("pairs")
    except RunDirError:
        heads = pairs = None

    page = Page(f"Run report: {src.name}")
    what = f"**{preset_name}**" if preset_name else "none (a config given in Python" + (
        f"; nearest preset **{nearest}**)" if nearest else ")")
    page.p(f"A **run** directory (`toymodels run`): family **{family}**, preset {what}, "
           f"{len(instances)} instance(s), {num(config.get('steps'))} steps. "
           f"Seeds: {', '.join(str(i['seed']) for i in instances)}.")
    vary = _varied_overrides(instances, config)
    if vary:
        page.p("Instances differ in " + ", ".join(f"`{k}`" for k in vary) + " (--vary).")

    page.h("Config")
    changed, full = _config_table(config, defaults, preset_values, preset_name or nearest)
    if changed.rows:
        page.p("Fields that differ from the " + ("preset or the " if preset_values else "")
               + f"{family} family's defaults:")
        page.add(changed)
    else:
        page.p(f"Every field has the {family} family's default value.")
    page.add(Details(f"All {len(full.rows)} fields", [full]))

    page.h("Results")
    if family == "transformer":
        _transformer_results(page, s, instances, vary)
    else:
        _toy_results(page, s, instances, vary, heads, pairs)

    page.h("Figures")
    if (src / "alignment.png").is_file():
        page.add(Figure(src / "alignment.png", "alignment.png: " + (
            "every head's attention accuracy and alignment, and the best head through "
            "training" if family == "transformer" else
            "|cos| of each feature with each singular vector of Ω (first instance), and "
            "every instance's spectrum")))
    else:
        page.p("The run directory holds no alignment.png.")
    timing = _json(src / "timing.json", "timing") if (src / "timing.json").is_file() else {}
    _provenance(page, s, f"{src}/summary.json",
                {"train seconds": timing.get("train_seconds")} if timing else None)
    return page


def _nearest_preset(config: dict, cls) -> str | None:
    """The preset of cls whose fields differ least from config (at most a third of them)."""
    from toymodels.configs import PRESETS

    best = None
    for name, cfg in PRESETS.items():
        if type(cfg) is not cls:
            continue
        values = cfg.to_dict()
        n = sum(values.get(k) != v for k, v in config.items())
        if n <= len(config) / 3 and (best is None or n < best[0]):
            best = (n, name)
    return best and best[1]


def _varied_overrides(instances, config) -> list[str]:
    keys = list(dict.fromkeys(k for i in instances for k in i.get("overrides", {})))
    return [k for k in keys
            if len({json.dumps(i.get("overrides", {}).get(k)) for i in instances}) > 1
            or any(i.get("overrides", {}).get(k) != config.get(k) for i in instances)]


def _own(inst, vary) -> str:
    o = inst.get("overrides", {})
    return ", ".join(f"{k}={num(o.get(k))}" for k in vary) or "-"


def _toy_results(page, s, instances, vary, heads, pairs) -> None:
    by_instance = {}
    if heads is not None:
        for r in _records(heads[heads["circuit"] == "qk"] if "circuit" in heads else heads):
            by_instance[r["instance"]] = r
    page.p("Per instance: final losses (mean of the last "
           f"{num(s.get('final_loss_window'))} steps), the spectrum of Ω = W_Qᵀ W_K, the "
           "attended pairs matched to a significant singular pair, and the worst matched "
           "pair's |cos| beside the random-rotation baseline (U, V replaced by random "
           "orthonormal bases of the same significant span; analysis/heads.csv).")
    header = ["instance", "seed"] + (["overrides"] if vary else []) + \
        ["final recon", "final attn", "σ1", "σ2/σ1", "pairs matched", "min matched |cos|",
         "baseline |cos| (q, k)", "diverged at"]
    rows = []
    for n, inst in enumerate(instances):
        sv = inst.get("singular_values") or []
        loss = inst.get("final_loss") or {}
        ps = inst.get("pairs") or []
        matched = [p for p in ps if p.get("sv_index") is not None]
        h = by_instance.get(n, {})
        if inst.get("diverged_step") is not None:  # its metrics are null: say why
            rows.append([str(n), num(inst["seed"])] + ([_own(inst, vary)] if vary else []) +
                        ["-"] * 7 + [num(inst["diverged_step"])])
            continue
        min_cos = h.get("min_matched_cos")
        if min_cos is None and matched:
            min_cos = min(min(p["cos_query_u"], p["cos_key_v"]) for p in matched)
        base = (h.get("mean_baseline_cos_query_u"), h.get("mean_baseline_cos_key_v"))
        rows.append([str(n), num(inst["seed"])] + ([_own(inst, vary)] if vary else []) + [
            num(loss.get("recon")), num(loss.get("attn")),
            num(sv[0] if sv else None),
            num(sv[1] / sv[0] if len(sv) > 1 and sv[0] else None),
            f"{len(matched)} of {len(ps)}", num(min_cos),
            f"{num(base[0])}, {num(base[1])}" if h else "-", "-"])
    page.add(Table(header, rows))

    page.p("Attended pairs (summary.json; baseline from analysis/pairs.csv): the matched "
           "singular index k, |cos| of the query feature with u_k and of the key feature "
           "with v_k, and σ_k.")
    base_pairs = {}
    if pairs is not None:
        for r in _records(pairs):
            base_pairs[(r["instance"], r["query_feature"], r["key_feature"])] = r
    prows = []
    for n, inst in enumerate(instances):
        for p in inst.get("pairs") or []:
            b = base_pairs.get((n, p.get("query_feature"), p.get("key_feature")), {})
            prows.append([str(n), num(inst["seed"]),
                          f"{p.get('query_feature')} → {p.get('key_feature')}",
                          num(p.get("target")), num(p.get("sv_index")),
                          num(p.get("cos_query_u")), num(p.get("cos_key_v")),
                          num(p.get("sigma")), num(p.get("significant")),
                          f"{num(b.get('baseline_cos_query_u'))}, "
                          f"{num(b.get('baseline_cos_key_v'))}" if b else "-"])
    prows, note = _truncate(prows, "pairs")
    page.add(Table(["instance", "seed", "pair (query → key)", "target", "k", "|cos(x_q, u_k)|",
                    "|cos(x_k, v_k)|", "σ_k", "significant", "baseline |cos| (q, k)"],
                   prows, note))
    dyn = [(n, i) for n, i in enumerate(instances) if i.get("dynamics")]
    if dyn:
        page.p("During training: the first recorded step at which alignment exceeded 0.9 "
               "and attended-feature interference fell below 0.1 (never: not reached).")
        page.add(Table(["instance", "seed", "alignment > 0.9 at", "interference < 0.1 at"], [
            [str(n), num(i["seed"])] + [
                "never" if i["dynamics"].get(k, "-") is None else num(i["dynamics"].get(k, "-"))
                for k in ("step_alignment_above", "step_interference_below")]
            for n, i in dyn]))


def _transformer_results(page, s, instances, vary) -> None:
    page.p("Per instance: the best head (highest attention accuracy), its QK and OV "
           "alignment (matched |cos|: mean over attended pairs of the smaller of the two "
           "sides), and the random-rotation baseline of its QK matched |cos| (mean, and the "
           f"5–95% range over rotations). Solved: a head reaches attention accuracy "
           f"≥ {num(s.get('solved_accuracy'))}.")
    header = ["instance", "seed"] + (["overrides"] if vary else []) + \
        ["final task loss", "eval task loss", "best head", "accuracy", "QK matched",
         "QK baseline [5–95%]", "OV matched", "solved", "diverged at"]
    rows, head_rows = [], []
    for n, inst in enumerate(instances):
        loss = inst.get("final_loss") or {}
        own = [_own(inst, vary)] if vary else []
        if inst.get("diverged_step") is not None or not inst.get("heads"):
            rows.append([str(n), num(inst["seed"])] + own +
                        ["-"] * 8 + [num(inst.get("diverged_step"))])
            continue
        b = inst.get("best_head") or {"layer": inst["heads"][0]["layer"],
                                      "head": inst["heads"][0]["head"]}
        best = next(h for h in inst["heads"]
                    if (h["layer"], h["head"]) == (b["layer"], b["head"]))
        rows.append([str(n), num(inst["seed"])] + own + [
            num(loss.get("task")), num(inst.get("eval_task_loss")),
            f"L{best['layer']}H{best['head']}", num(best.get("accuracy")),
            num(best.get("qk_matched")), _baseline(best), num(best.get("ov_matched")),
            num(inst.get("solved")), "-"])
        for h in inst["heads"]:
            head_rows.append([str(n), num(inst["seed"]), f"L{h['layer']}H{h['head']}",
                              num(h.get("accuracy")), num(h.get("qk_matched")), _baseline(h),
                              num(h.get("qk_cos_query_u")), num(h.get("qk_cos_key_v")),
                              num(h.get("ov_matched")), num(h.get("qk_sigma_1")),
                              num(h.get("qk_n_significant"))])
    page.add(Table(header, rows))
    if head_rows:
        page.p("Every head (summary.json):")
        head_rows, note = _truncate(head_rows, "heads")
        page.add(Table(["instance", "seed", "head", "accuracy", "QK matched",
                        "QK baseline [5–95%]", "QK |cos| query", "QK |cos| key",
                        "OV matched", "QK σ1", "QK significant"], head_rows, note))


def _baseline(h) -> str:
    return (f"{num(h.get('qk_baseline'))} [{num(h.get('qk_baseline_low'))}–"
            f"{num(h.get('qk_baseline_high'))}]")


# ---- a sweep -------------------------------------------------------------------------

SWEEP_METRICS = {
    "toy": [("min_matched_cos", "min matched |cos|"),
            ("mean_baseline_cos_query_u", "baseline |cos| query"),
            ("mean_baseline_cos_key_v", "baseline |cos| key"),
            ("sigma_1", "σ1"), ("final_attn", "final attn")],
    "transformer": [("best_accuracy", "best head accuracy"),
                    ("best_qk_matched", "best QK matched"),
                    ("best_qk_baseline_low", "QK baseline 5%"),
                    ("best_qk_baseline_high", "QK baseline 95%"),
                    ("best_ov_matched", "best OV matched"), ("final_task", "final task loss")],
}


def _sweep_page(src: Path) -> Page:
    manifest = _json(src / "manifest.json", "sweep manifest")
    results = _parquet(src / "results.parquet")
    pairs = _parquet(src / "pairs.parquet")
    spec = manifest.get("spec") or {}
    family = "transformer" if "best_qk_matched" in results.columns else "toy"
    metrics = [(c, label) for c, label in SWEEP_METRICS[family] if c in results.columns]
    groups = manifest.get("groups") or {}
    order = manifest.get("group_order") or list(groups)

    page = Page(f"Sweep report: {src.name}")
    page.p(f"A **sweep** directory (`toymodels sweep`): preset **{spec.get('preset')}** "
           f"({family} family), {len(results)} instances in {len(order)} shape group(s), "
           f"{num(manifest.get('compiles'))} compiled training program(s); "
           f"{len(pairs)} pair rows. Spec hash `{manifest.get('spec_hash')}`.")
    if len(groups) < len(order):
        page.p(f"Only {len(groups)} of {len(order)} groups are recorded as finished; the "
               "sweep was interrupted (rerun its command to finish it).")

    page.h("Config")
    seeds = spec.get("seeds") or []
    rows = [["preset", "", num(spec.get("preset"))],
            ["seeds", "", _seed_text(seeds)]]
    for kind in ("set", "grid", "zip"):
        for k, v in (spec.get(kind) or {}).items():
            rows.append([kind, f"`{k}`", Lit(", ".join(num(x) for x in v))
                         if kind != "set" else num(v)])
    page.add(Table(["", "field", "value(s)"], rows))

    page.h("Results")
    if "min_matched_cos" in results.columns:
        page.p("Alignment per instance is `min_matched_cos`, the worst attended pair's "
               "matched |cos| (0 where it has no significant singular pair), beside the "
               "random-rotation baseline; means over the instances that did not diverge "
               "(min–max in brackets).")
    elif family == "transformer":
        page.p("Per instance: the best head (highest attention accuracy), its matched |cos| "
               "and the 5–95% range of its random-rotation baseline; means over the "
               "instances that did not diverge (min–max in brackets).")
    shape_keys = _varying(groups, order)
    header = ["group"] + [f"`{k}`" for k in shape_keys] + \
        ["instances", "diverged", "seconds", "compiles"] + [label for _, label in metrics]
    grows = []
    for gid in order:
        sub = results[results["group"] == gid]
        stat = groups.get(gid, {})
        cfg = stat.get("config", {})
        grows.append([f"`{gid}`"] + [num(cfg.get(k)) for k in shape_keys] +
                     [str(len(sub)), str(int(sub["diverged"].sum())) if "diverged" in sub
                      else "-", num(stat.get("seconds")), num(stat.get("compiles"))] +
                     [_stat(sub, c) for c, _ in metrics])
    grows, note = _truncate(grows, "groups")
    page.p("Per shape group:")
    page.add(Table(header, grows, note))
    axes = [k for kind in ("grid", "zip") for k in (spec.get(kind) or {})]
    for axis in axes:
        if axis not in results.columns:
            continue
        arows = []
        for value, sub in results.groupby(axis, sort=False, dropna=False):
            arows.append([num(value), str(len(sub)),
                          str(int(sub["diverged"].sum())) if "diverged" in sub else "-"] +
                         [_stat(sub, c) for c, _ in metrics])
        page.p(f"Per value of `{axis}` (all other axes and seeds pooled):")
        page.add(Table([f"`{axis}`", "instances", "diverged"] + [l for _, l in metrics],
                       arows))
    if not axes and len(results):
        page.p("All instances pooled:")
        page.add(Table(["instances"] + [l for _, l in metrics],
                       [[str(len(results))] + [_stat(results, c) for c, _ in metrics]]))
    seconds = sum(g.get("seconds", 0) or 0 for g in groups.values())
    _provenance(page, manifest, f"{src}/manifest.json", {"seconds (all groups)": seconds})
    return page


def _seed_text(seeds) -> str:
    seeds = list(seeds)
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(str(s) for s in seeds)


def _varying(groups: dict, order: list) -> list[str]:
    configs = [groups[g]["config"] for g in order if g in groups and "config" in groups[g]]
    if len(configs) < 2:
        return []
    keys = list(dict.fromkeys(k for c in configs for k in c))
    return [k for k in keys if len({json.dumps(c.get(k)) for c in configs}) > 1]


def _stat(frame, column) -> str:
    values = [v for v in frame[column].tolist()
              if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return "-"
    mean = sum(values) / len(values)
    if len(values) == 1:
        return num(float(mean))
    return f"{num(float(mean))} [{num(float(min(values)))}–{num(float(max(values)))}]"


# ---- a theory table ------------------------------------------------------------------


def _theory_page(src: Path) -> Page:
    record = _json(src / "theory.json", "theory")
    rows = record.get("rows")
    if not isinstance(rows, list):
        raise RunDirError(f"{src}/theory.json holds no rows")
    for r in rows:
        if not isinstance(r, dict) or not {"check", "prediction", "status"} <= set(r):
            raise RunDirError(f"{src}/theory.json has a row without check, prediction and "
                              "status")
    profile = record.get("profile") or {}

    page = Page(f"Theory report: {src.name}")
    n_pass = sum(r["status"] == "PASS" for r in rows)
    n_pred = sum(r["status"] != "INFO" for r in rows)
    n_defect = sum(bool(r.get("defect")) for r in rows)
    page.p(f"A **theory** table (`toymodels theory`), profile **{profile.get('name', '?')}**: "
           f"checks {', '.join(f'`{c}`' for c in record.get('checks', []))}. "
           f"**{n_pass} of {n_pred} predictions PASS** (INFO rows are observations); "
           f"**{n_defect}** row(s) with a foil that passes (a defect of the check: it cannot "
           "tell the prediction from a wrong model).")

    page.h("Config")
    page.add(Table(["profile field", "value"], [[f"`{k}`", num(v)]
                                                for k, v in profile.items()]))

    page.h("Results")
    page.p("Each prediction, its predicted and measured value, tolerance and verdict, and "
           "the seeds it was measured on; under it (↳) each foil, a wrong model measured "
           "the same way, which must FAIL.")
    trows = []
    for r in rows:
        held = "held out" if r.get("held_out") in (True, "True") else "design"
        trows.append([f"`{r['check']}`", Lit(r["prediction"]), num(r.get("predicted")),
                      num(r.get("measured")), num(r.get("tolerance")),
                      f"**{r['status']}**" + (" DEFECT" if r.get("defect") else ""),
                      Lit(f"{r.get('seeds', '')} ({held})")])
        for f in _foils(r):
            verdict = "FAIL (rejected)" if f["status"] == "FAIL" else f"{f['status']} DEFECT"
            trows.append(["", Lit(f"↳ foil: {f['name']}"), "", num(f["measured"]), "",
                          verdict, ""])
        if r.get("no_foil"):
            trows.append(["", Lit(f"↳ no foil: {r['no_foil']}"), "", "", "", "", ""])
    page.add(Table(["check", "prediction", "predicted", "measured", "tolerance", "verdict",
                    "seeds"], trows))
    details = [[f"`{r['check']}`", Lit(r["prediction"]), Lit(r.get("detail", ""))]
               for r in rows if r.get("detail")]
    if details:
        page.add(Details("How each row was measured", [Table(["check", "prediction",
                                                               "detail"], details)]))

    figures = sorted((src / "figures").glob("*.png")) if (src / "figures").is_dir() else []
    page.h("Figures")
    if figures:
        for path in figures:
            page.add(Figure(path, f"figures/{path.name}"))
    else:
        page.p("The theory directory holds no figures.")
    seconds = record.get("seconds") or {}
    if seconds:
        page.p("Seconds per check: " + ", ".join(f"`{k}` {num(v)}" for k, v in seconds.items())
               + f"; total {num(record.get('total_seconds'))}.")
    _provenance(page, record, f"{src}/theory.json")
    return page


def _foils(r: dict) -> list[dict]:
    """A row's foils: theory.json's list, or theory.csv's ' | '-joined columns."""
    if isinstance(r.get("foils"), list):
        return [{"name": f.get("name"), "measured": f.get("measured"),
                 "status": f.get("status")} for f in r["foils"]]
    if not r.get("foil"):
        return []
    names = str(r["foil"]).split(" | ")
    values = str(r.get("foil_measured", "")).split(" | ")
    statuses = str(r.get("foil_status", "")).split(" | ")
    return [{"name": n, "measured": v, "status": s}
            for n, v, s in zip(names, values, statuses)]


# ---- a SAD output --------------------------------------------------------------------


def _sad_page(src: Path) -> Page:
    record = _json(src / "sad.json", "SAD")
    heads = _parquet(src / "heads.parquet")
    if not (src / "firings.parquet").is_file():
        raise RunDirError(f"{src} lacks firings.parquet; it is not a finished SAD output")
    o = record.get("overall") or {}
    prompts = record.get("prompts") or {}
    shape = record.get("shape") or {}

    page = Page(f"Sparse attention decomposition report: {src.name}")
    page.p(f"A **SAD** output (`toymodels sad`) of `{record.get('model')}` "
           f"(`{record.get('architecture', '?')}`): prompts `{prompts.get('spec')}` "
           f"({num(prompts.get('count'))} prompts, {num(prompts.get('tokens_min'))}–"
           f"{num(prompts.get('tokens_max'))} tokens), {num(o.get('heads'))} heads, "
           f"{num(o.get('firings'))} firings decomposed.")

    page.h("Config")
    rows = [[f"`{k}`", num(v)] for k, v in (record.get("options") or {}).items()]
    rows += [[f"`{k}`", _cell_text(record[k])] for k in
             ("layernorm_folded", "causal", "x_meaning", "checkpoint", "model_type")
             if k in record]
    rows += [[f"shape: `{k}`", num(v)] for k, v in shape.items()]
    page.add(Table(["option", "value"], rows))

    page.h("Results")
    page.p("Each firing (a query attending to a key above the threshold) decomposed over the "
           "head's singular pairs: N_recon terms reconstruct its score; beside each number "
           "the same decomposition over randomly rotated singular bases (the control).")
    if not o.get("firings"):
        page.p("**No firings** were decomposed.")
    page.add(Table(["", "heads", "rotated control"], [
        ["share of firings with N_recon ≤ 4", num(o.get("share_n_recon_le4")),
         num(o.get("share_n_recon_le4_rot"))],
        ["median N_recon", num(o.get("median_n_recon")), num(o.get("median_n_recon_rot"))],
        ["median sparseness", num(o.get("median_sparseness")),
         num(o.get("median_sparseness_rot"))],
        [f"heads with median N_recon ≤ 4 (of {num(o.get('heads_with_firings'))} with "
         "firings)", num(o.get("heads_median_n_recon_le4")),
         num(o.get("heads_median_n_recon_rot_le4"))]]))
    spread = record.get("rotations")
    if spread and o.get("firings"):  # --rotations N: the control's spread over draws
        page.p(f"The rotated control over {num(spread.get('draws'))} Haar draws per head "
               "(draw 0 is the column above): 5%, 50% and 95% over draws.")
        keys = [("share of firings with N_recon ≤ 4", "share_n_recon_le4"),
                ("median N_recon", "median_n_recon"), ("median sparseness",
                                                       "median_sparseness"),
                ("heads with median N_recon ≤ 4", "heads_median_n_recon_le4")]
        keys += [(f"median N_recon at {f:g}", f"median_n_recon_at_{f:g}")
                 for f in (record.get("options") or {}).get("recon_fracs") or ()]
        rows = []
        for label, key in keys:
            rot = key.replace("le4", "rot_le4") if key.startswith("heads") else \
                key.replace("n_recon_at", "n_recon_rot_at") if "_at_" in key else key + "_rot"
            if rot in spread and key in o:
                rows.append([label, num(o[key]), *(num(v) for v in spread[rot]["q"])])
        page.add(Table(["", "heads", "rotated 5%", "50%", "95%"], rows))
    cols = [c for c in ("layer", "head", "firings", "median_n_recon", "median_n_recon_rot",
                        "median_n_recon_rot_q05", "median_n_recon_rot_q95",
                        "share_n_recon_le4", "share_n_recon_le4_rot", "median_sparseness",
                        "median_sparseness_rot", "sigma_1", "K") if c in heads.columns]
    hrows = [[num(r[c]) for c in cols] for r in _records(heads)]
    hrows, note = _truncate(hrows, "heads")
    page.p("Per head (heads.parquet; `_rot`: the rotated control):")
    page.add(Table([c.replace("_rot", " (rot)") for c in cols], hrows, note))

    page.h("Figures")
    shown = False
    for name, caption in (("nrecon.png", "nrecon.png: N_recon of every firing, heads and "
                           "rotated control"), ("heads.png", "heads.png: per-head medians")):
        if (src / name).is_file():
            page.add(Figure(src / name, caption))
            shown = True
    if not shown:
        page.p("The SAD directory holds no figures.")
    timing = _json(src / "timing.json", "timing") if (src / "timing.json").is_file() else {}
    _provenance(page, record, f"{src}/sad.json",
                {f"{k.replace('_s', '')} seconds" if k.endswith("_s") else k: v
                 for k, v in timing.items()})
    return page


BUILDERS = {"run": _run_page, "sweep": _sweep_page, "theory": _theory_page, "sad": _sad_page}


# ---- rendering -----------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return _md_lit(text) if isinstance(text, Lit) else \
        str(text).replace("|", "\\|").replace("\n", " ")


def _md_lit(text: str) -> str:
    """Literal text in Markdown: the characters that could start markup escaped."""
    return re.sub(r"([\\`*<\[\]|])", r"\\\1", str(text)).replace("\n", " ")


def _md_table(t: Table) -> list[str]:
    if not t.rows:
        return ["(no rows)", ""]
    head = t.header if any(t.header) else [" "] * len(t.header)
    lines = ["| " + " | ".join(_md_cell(h) for h in head) + " |",
             "|" + "|".join(":--" if i == 0 else "--:" if _numeric_column(t, i) else ":--"
                            for i in range(len(head))) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows]
    if t.note:
        lines += ["", f"*{t.note}*"]
    return lines + [""]


_NUMBER = re.compile(r"^-?(\d+\.?\d*|\.\d+)(e[-+]\d+)?$|^-$|^inf$")


def _numeric_column(t: Table, i: int) -> bool:
    cells = [r[i] for r in t.rows if i < len(r) and r[i] != ""]
    return bool(cells) and all(_NUMBER.match(c) for c in cells)


def render_markdown(page: Page, refs: dict | None = None) -> str:
    """The page as Markdown; refs maps a figure's path to how the page refers to it."""
    refs = refs or {}
    lines = [SIGNATURE, f"# {_md_lit(page.title)}", ""]

    def emit(blocks):
        for b in blocks:
            if isinstance(b, Table):
                lines.extend(_md_table(b))
            elif isinstance(b, Figure):
                lines.extend([f"![{b.caption}]({refs.get(b.path, b.path.as_posix())})", "",
                              f"*{b.caption}*", ""])
            elif isinstance(b, Details):
                lines.extend([f"<details><summary>{_html.escape(b.summary)}</summary>", ""])
                emit(b.blocks)
                lines.extend(["</details>", ""])
            elif b[0] == "h":
                lines.extend([f"## {b[1]}", ""])
            elif b[0] == "p":
                lines.extend([b[1], ""])
            elif b[0] == "list":
                lines.extend([f"- {item}" for item in b[1]] + [""])

    emit(page.blocks)
    return "\n".join(lines).rstrip() + "\n"


def _inline(text: str) -> str:
    """Escaped text with Markdown's `code` and **bold** as HTML (Lit: escaped only)."""
    out = _html.escape(str(text), quote=False)
    if isinstance(text, Lit):
        return out
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;
max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .55em;vertical-align:top}
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}
code{background:#f5f5f5;padding:0 .2em;border-radius:3px}
img{max-width:100%;border:1px solid #eee}figure{margin:1em 0}
figcaption{font-size:.85em;color:#555}.note{font-size:.85em;color:#555}"""


def render_html(page: Page) -> str:
    """The page as one HTML file: inline CSS, figures embedded as base64 data URIs."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="generator" content="toymodels report">', SIGNATURE,
             f"<title>{_html.escape(page.title)}</title>", f"<style>{CSS}</style>",
             "</head><body>", f"<h1>{_html.escape(page.title)}</h1>"]

    def emit(blocks):
        for b in blocks:
            if isinstance(b, Table):
                if not b.rows:
                    parts.append("<p>(no rows)</p>")
                    continue
                numeric = [_numeric_column(b, i) for i in range(len(b.header))]
                parts.append("<table>")
                right = ' class="n"'
                if any(b.header):
                    parts.append("<tr>" + "".join(f"<th>{_inline(h)}</th>" for h in b.header)
                                 + "</tr>")
                for row in b.rows:
                    parts.append("<tr>" + "".join(
                        f"<td{right if numeric[i] and i else ''}>{_inline(c)}</td>"
                        for i, c in enumerate(row)) + "</tr>")
                parts.append("</table>")
                if b.note:
                    parts.append(f'<p class="note">{_inline(b.note)}</p>')
            elif isinstance(b, Figure):
                parts.append(f'<figure><img alt="{_html.escape(b.caption)}" '
                             f'src="{data_uri(b.path)}"><figcaption>{_inline(b.caption)}'
                             "</figcaption></figure>")
            elif isinstance(b, Details):
                parts.append(f"<details><summary>{_html.escape(b.summary)}</summary>")
                emit(b.blocks)
                parts.append("</details>")
            elif b[0] == "h":
                parts.append(f"<h2>{_inline(b[1])}</h2>")
            elif b[0] == "p":
                parts.append(f"<p>{_inline(b[1])}</p>")
            elif b[0] == "list":
                parts.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b[1]) + "</ul>")

    emit(page.blocks)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


MIME = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg",
        ".jpeg": "image/jpeg", ".gif": "image/gif"}


def data_uri(path: Path) -> str:
    mime = MIME.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


__all__ = ["MARKERS", "detect", "num", "render_html", "render_markdown", "report"]
