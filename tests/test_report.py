"""`toymodels report DIR`: one page per kind of result directory (a toy run, a
toy-transformer run, a sweep, a theory table, a SAD output), with the verdict numbers read
from the stored files, figures embedded in the HTML, and bad input refused in one line
with exit code 2 before anything is written."""

import base64
import csv
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import toymodels
from toymodels.cli import main
from toymodels.report import SIGNATURE, detect, num, report

STORED_THEORY = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / \
    "theory_quick.csv"
PNG = b"\x89PNG\r\n\x1a\n"


def g4(x) -> str:
    """How the report prints a number: 4 significant digits, size always visible."""
    return f"{x:.4g}"


def files_under(root: Path) -> dict:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def embedded_images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in
            re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


# ---- the result directories, made once for the module --------------------------------


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    toymodels.train(toymodels.preset("single-pair").replace(steps=250), seeds=[0, 1],
                    progress=False).save(root / "toy")
    toymodels.train(toymodels.preset("transformer-retrieval").replace(
        steps=60, batch_size=32, chunk_steps=30), seeds=[0, 1], progress=False).save(root / "tr")
    # the same shape as the toy run (λ is batched): one group, no new compilation
    spec = root / "spec.toml"
    spec.write_text('preset = "single-pair"\nseeds = [0]\n[set]\nsteps = 250\n'
                    "[grid]\nlam = [1, 10]\n")
    assert main(["sweep", str(spec), "--out", str(root / "sweep"), "--no-progress"]) == 0
    assert main(["sad", str(root / "tr"), "--prompts", "task:8", "--out", str(root / "sad"),
                 "--no-progress"]) == 0
    _theory_dir(root / "theory")
    return root


def _theory_dir(out: Path) -> None:
    """A theory directory in the format theory/runner.py writes (theory.json with foils as
    lists, theory.csv with them joined, figures/), its rows the stored quick table's."""
    from toymodels.store import write_csv, write_json
    from toymodels.theory.runner import csv_rows

    rows = []
    with open(STORED_THEORY, newline="") as f:
        for r in csv.DictReader(f):
            names, values, statuses = (r[k].split(" | ") if r[k] else []
                                       for k in ("foil", "foil_measured", "foil_status"))
            rows.append({
                "check": r["check"], "prediction": r["prediction"],
                "predicted": r["predicted"],
                "measured": float(r["measured"]) if r["measured"] else None,
                "tolerance": r["tolerance"], "status": r["status"],
                "instances": int(r["instances"]), "seeds": r["seeds"],
                "held_out": r["held_out"] == "True", "foil": r["foil"],
                "foil_measured": r["foil_measured"], "foil_status": r["foil_status"],
                "no_foil": r["no_foil"], "defect": r["defect"], "detail": r["detail"],
                "foils": [{"name": n, "measured": float(v), "status": s}
                          for n, v, s in zip(names, values, statuses)],
                "seconds": float(r["seconds"])})
    (out / "figures").mkdir(parents=True)
    (out / "data").mkdir()
    record = {"profile": {"name": "quick", "seeds": 4, "steps": 3000},
              "checks": list(dict.fromkeys(r["check"] for r in rows)), "rows": rows,
              "seconds": {"theorem1": 22.1}, "total_seconds": 561.0,
              "versions": {"python": "3.11", "jax": "0.9.2"}, "git_commit": "abc123",
              # provenance as issue 22 item 5 asks for it (shown when a result records it)
              "command": "toymodels theory --quick --out runs/theory-quick",
              "backend": "cpu", "devices": ["TFRT_CPU_0"]}
    write_json(out / "theory.json", record)
    write_csv(out / "theory.csv", csv_rows(rows))
    import matplotlib.figure
    fig = matplotlib.figure.Figure(figsize=(2, 1.5))
    fig.add_subplot().plot([0, 1], [1, 0])
    fig.savefig(out / "figures" / "fig4_anisotropy.png", dpi=50)


# ---- one test per kind ---------------------------------------------------------------


def test_toy_run_report(dirs, tmp_path):
    run = dirs / "toy"
    assert detect(run) == "run"
    summary = json.loads((run / "summary.json").read_text())
    heads = pd.read_csv(run / "analysis" / "heads.csv")
    before = files_under(run)
    out = report(run)
    assert out == run / "report.md"
    assert set(files_under(run)) - set(before) == {"report.md"}  # nothing else in DIR
    text = out.read_text()
    assert text.startswith(SIGNATURE) and "# Run report: toy" in text
    assert "single-pair" in text  # the nearest preset of a config given in Python
    assert "| `steps` | 250 |" in text  # a non-default field
    for n, inst in enumerate(summary["instances"]):
        for value in (inst["final_loss"]["recon"], inst["final_loss"]["attn"],
                      inst["singular_values"][0],
                      heads.loc[heads.instance == n, "min_matched_cos"].item(),
                      heads.loc[heads.instance == n, "mean_baseline_cos_query_u"].item()):
            assert g4(value) in text, value
        assert f"1 of {len(inst['pairs'])}" in text
    assert "](alignment.png)" in text  # beside the report: referenced, not copied
    assert summary["git_commit"] in text and summary["versions"]["jax"] in text

    # elsewhere, with HTML: the figure copied beside the Markdown and embedded in the HTML
    assert main(["report", str(run), "--out", str(tmp_path / "notes" / "toy.md"),
                 "--html"]) == 0
    md = (tmp_path / "notes" / "toy.md").read_text()
    assert "](toy_alignment.png)" in md
    assert (tmp_path / "notes" / "toy_alignment.png").read_bytes() == \
        (run / "alignment.png").read_bytes()
    html = (tmp_path / "notes" / "toy.html").read_text()
    assert embedded_images(html) == [(run / "alignment.png").read_bytes()]
    assert g4(summary["instances"][0]["singular_values"][0]) in html
    # a second report over the first replaces it (it is ours)
    assert main(["report", str(run), "--out", str(tmp_path / "notes" / "toy.md")]) == 0


def test_a_diverged_instance_shows_its_step_and_no_metrics(dirs, tmp_path):
    import shutil

    from toymodels.training.divergence import mark_diverged

    run = tmp_path / "toy"
    shutil.copytree(dirs / "toy", run)
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps(mark_diverged(summary, [None, 17])))
    text = report(run).read_text()
    assert "| 1 | 1 | - | - | - | - | - | - | - | 17 |" in text
    assert g4(summary["instances"][0]["singular_values"][0]) in text


def test_transformer_run_report(dirs):
    run = dirs / "tr"
    summary = json.loads((run / "summary.json").read_text())
    html = report(run, html=True).with_suffix(".html").read_text()
    text = (run / "report.md").read_text()
    assert "family **transformer**" in text and "transformer-retrieval" in text
    for inst in summary["instances"]:
        b = inst["best_head"]
        best = next(h for h in inst["heads"] if (h["layer"], h["head"]) ==
                    (b["layer"], b["head"]))
        row = next(line for line in text.splitlines()
                   if line.startswith(f"| {summary['instances'].index(inst)} | {inst['seed']} | "
                                      f"{g4(inst['final_loss']['task'])} |"))
        for value in (best["accuracy"], best["qk_matched"], best["ov_matched"],
                      best["qk_baseline_low"], best["qk_baseline_high"],
                      inst["eval_task_loss"]):
            assert g4(value) in row, (value, row)
        assert f"L{b['layer']}H{b['head']}" in row
    assert len(embedded_images(html)) == 1 and embedded_images(html)[0].startswith(PNG)


def test_sweep_report(dirs):
    sweep = dirs / "sweep"
    assert detect(sweep) == "sweep"
    results = pd.read_parquet(sweep / "results.parquet")
    text = report(sweep).read_text()
    manifest = json.loads((sweep / "manifest.json").read_text())
    assert f"{len(results)} instances in {len(manifest['group_order'])} shape group" in text
    gid = manifest["group_order"][0]
    group_row = next(line for line in text.splitlines() if line.startswith(f"| `{gid}` |"))
    cos = results.min_matched_cos
    assert f"{g4(cos.mean())} [{g4(cos.min())}–{g4(cos.max())}]" in group_row
    for lam, sub in results.groupby("lam"):  # the lam axis: one seed each, so the value
        line = next(x for x in text.splitlines() if x.startswith(f"| {g4(lam)} | 1 | 0 |"))
        assert g4(sub.min_matched_cos.item()) in line
        assert g4(sub.mean_baseline_cos_query_u.item()) in line
    assert "| grid | `lam` | 1, 10 |" in text


def test_theory_report(dirs):
    theory = dirs / "theory"
    record = json.loads((theory / "theory.json").read_text())
    out = report(theory, html=True)
    text, html = out.read_text(), out.with_suffix(".html").read_text()
    n_pass = sum(r["status"] == "PASS" for r in record["rows"])
    n_pred = sum(r["status"] != "INFO" for r in record["rows"])
    assert f"**{n_pass} of {n_pred} predictions PASS**" in text
    lines, at = text.splitlines(), 0
    for r in record["rows"]:  # every row in order, its value and verdict, then its foils
        at = next(i for i in range(at + 1, len(lines)) if (line := lines[i])
                  and line.startswith(f"| `{r['check']}` |")
                  and g4(r["measured"]) in line and f"**{r['status']}**" in line
                  and r["seeds"] in line)
        for k, f in enumerate(r["foils"], start=1):
            assert "foil:" in lines[at + k] and g4(f["measured"]) in lines[at + k]
            assert "FAIL (rejected)" in lines[at + k]
    assert "](figures/fig4_anisotropy.png)" in text
    assert embedded_images(html) == [(theory / "figures" / "fig4_anisotropy.png").read_bytes()]
    assert "Ω\\*" in text and "Ω*" in html  # data text is literal in both renderings
    assert "| command | toymodels theory --quick --out runs/theory-quick |" in text
    assert "| backend | cpu |" in text and "TFRT_CPU_0" in text and "`abc123`" in text


def test_sad_report(dirs):
    sad = dirs / "sad"
    o = json.loads((sad / "sad.json").read_text())["overall"]
    out = report(sad, html=True)
    text = out.read_text()
    for name, key in (("share of firings with N_recon ≤ 4", "share_n_recon_le4"),
                      ("median N_recon", "median_n_recon"),
                      ("median sparseness", "median_sparseness")):
        line = next(x for x in text.splitlines() if x.startswith(f"| {name} |"))
        assert line == f"| {name} | {g4(o[key])} | {g4(o[key + '_rot'])} |"
    heads = pd.read_parquet(sad / "heads.parquet")
    first = heads.to_dict("records")[0]
    assert f"| {first['layer']} | {first['head']} | {first['firings']} |" in text
    images = embedded_images(out.with_suffix(".html").read_text())
    assert images == [(sad / "nrecon.png").read_bytes(), (sad / "heads.png").read_bytes()]


# ---- bad input: one line, exit 2, nothing written -------------------------------------


def _refused(argv, capsys, root: Path, message: str):
    before = files_under(root)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("toymodels: error: ") and message in err
    assert files_under(root) == before


def test_bad_input_is_refused_in_one_line_and_writes_nothing(dirs, tmp_path, capsys):
    root = tmp_path
    _refused(["report", str(root / "missing")], capsys, root, "does not exist")
    (root / "plain").mkdir()
    (root / "plain" / "notes.txt").write_text("hello")
    _refused(["report", str(root / "plain")], capsys, root, "is not a run, sweep, theory")
    _refused(["report", str(root / "plain" / "notes.txt")], capsys, root, "is a file")
    # outputs: a link, a directory, and a file toymodels did not write
    run = dirs / "toy"
    (root / "target.md").write_text("mine")
    os.symlink(root / "target.md", root / "link.md")
    _refused(["report", str(run), "--out", str(root / "link.md")], capsys, root,
             "is a symbolic link")
    _refused(["report", str(run), "--out", str(root / "plain")], capsys, root,
             "is a directory")
    _refused(["report", str(run), "--out", str(root / "plain" / "notes.txt")], capsys, root,
             "is not a report toymodels wrote")
    _refused(["report", str(run), "--out", str(run / "summary.json")], capsys, run,
             "is not a report toymodels wrote")
    # a damaged result: named in one line, nothing written
    (root / "broken").mkdir()
    (root / "broken" / "sad.json").write_text("{not json")
    _refused(["report", str(root / "broken")], capsys, root, "sad.json")


def test_numbers_show_their_size():
    assert num(7.6e-06) == "7.6e-06" and num(0.0) == "0" and num(0.99994) == "0.9999"
    assert num(None) == "-" and num(float("nan")) == "-" and num(True) == "yes"
    assert num(np.float32(1.5e-7)) == "1.5e-07" and num(np.int64(3)) == "3"


def test_a_report_inside_a_run_is_replaced_by_its_overwrite(dirs, tmp_path):
    """report.md written into a run directory becomes part of it: `run --overwrite` there
    replaces it rather than refusing it as a file toymodels did not write."""
    import shutil

    from toymodels.store import foreign_files
    run = tmp_path / "run"
    shutil.copytree(dirs / "toy", run)
    assert main(["report", str(run), "--html"]) == 0
    assert foreign_files(run) == []
    (run / "notes.txt").write_text("mine")  # a user's file is still foreign
    assert foreign_files(run) == ["notes.txt"]
