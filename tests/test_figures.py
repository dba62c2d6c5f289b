"""`toymodels figures`: the registry holds every figure the Markdown shows; missing inputs are
named with their commands; figures are drawn from a tiny stored run as PNG and PDF with
their provenance, byte-identical on a second invocation; the flaws of issue 22 stay fixed."""

import fnmatch
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

import toymodels
from toymodels import figures
from toymodels.cli import main
from toymodels.figures import FIGURES
from toymodels.plots import plot_dynamics, plot_robustness, plot_transformer_run

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"figures/([A-Za-z0-9_*.-]+?)\.png")
QUICK_FIGURES = ("fig2a_single_pair", "fig3_dynamics", "single-pair_alignment")
"""The figures that read the single-pair run only."""


def linked_figures() -> set[str]:
    """Every figures/NAME.png the README and docs/ link or name (NAME may be a pattern)."""
    names = set()
    for md in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        names |= set(LINK.findall(md.read_text()))
    return names


def test_registry_holds_every_figure_the_markdown_shows():
    linked = linked_figures()
    assert {"fig2a_single_pair", "appendix_a_robustness", "sad_minilm_heads"} <= linked
    for name in linked:
        assert fnmatch.filter(FIGURES, name), f"figures/{name}.png is linked but not drawn"
    # and nothing in figures/ that the registry does not draw (no stale images)
    stored = {p.stem for p in (ROOT / "figures").glob("*") if p.suffix in (".png", ".pdf")}
    assert stored <= set(FIGURES), sorted(stored - set(FIGURES))
    # the two figures no script used to draw
    assert {"single-pair_alignment", "no-head_alignment"} <= set(FIGURES)


def test_every_input_has_a_command_that_the_cli_parses():
    from toymodels.cli import build_parser

    for spec in FIGURES.values():
        assert spec.inputs and spec.title
        for inp in spec.inputs.values():
            argv = inp.argv("runs")
            assert argv[0] in ("toymodels", "python") and "{" not in " ".join(argv)
            if argv[0] == "toymodels":
                build_parser().parse_args(argv[1:])  # exits on a command that does not parse
            else:
                assert (ROOT / argv[1]).is_file() or Path(argv[1]).is_file()


def _every_command(runs) -> set[str]:
    return {" ".join(inp.argv(runs)) for spec in FIGURES.values()
            for inp in [*spec.inputs.values(),
                        *(b for i in spec.inputs.values() for b in i.after)]}


def test_list_and_an_empty_runs_folder_name_every_missing_input(tmp_path, capsys):
    runs, out = tmp_path / "runs", tmp_path / "out"
    assert main(["figures", "--list", "--runs", str(runs)]) == 0
    listed = capsys.readouterr().out
    for name in FIGURES:
        assert re.search(rf"^{re.escape(name)}  \[missing input\]", listed, re.M)
    for command in _every_command(runs):
        assert command in listed
    assert f"0 of {len(FIGURES)} figures can be drawn" in listed

    assert main(["figures", "--out", str(out), "--runs", str(runs)]) == 2  # nothing drawn
    captured = capsys.readouterr()
    for command in _every_command(runs):
        assert command in captured.out
    assert "none of the" in captured.err and len(captured.err.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_bad_arguments_exit_2_in_one_line(tmp_path, capsys):
    assert main(["figures", "--only", "no_such_figure", "--runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no figure named 'no_such_figure'" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "file").write_text("")
    assert main(["figures", "--out", str(tmp_path / "file"), "--runs", str(tmp_path)]) == 2


def test_only_takes_patterns():
    assert figures.select(["transformer_ro*", "fig2a_single_pair"]) == [
        "fig2a_single_pair", "transformer_rope", "transformer_rope_offsets"]  # registry order


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny stored single-pair run (2 seeds, 40 steps) where the figures look for it."""
    runs = tmp_path_factory.mktemp("runs")
    cfg = toymodels.preset("single-pair").replace(steps=40, batch_size=32, chunk_steps=20)
    toymodels.train(cfg, seeds=[0, 1], progress=False).save(runs / "single-pair")
    return runs


def _png_text(path: Path) -> dict:
    from PIL import Image
    with Image.open(path) as im:
        return dict(im.text)


def test_figures_of_a_stored_run_png_and_pdf_with_provenance_byte_identical(runs, tmp_path,
                                                                             capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["figures", "--out", str(first), "--runs", str(runs)]) == 0  # some drawn
    out = capsys.readouterr().out
    assert f"{len(QUICK_FIGURES)} of {len(FIGURES)} figures drawn" in out
    assert "toymodels run no-head --seeds 0-3 --out " + str(runs / "no-head") in out
    drawn = sorted(p.name for p in first.iterdir())
    assert drawn == sorted(f"{n}.{ext}" for n in QUICK_FIGURES for ext in ("pdf", "png"))

    commit = figures.code_commit()
    assert commit and commit.split("-")[0] == subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    png = _png_text(first / "fig2a_single_pair.png")
    assert png["Source"] == f"toymodels figures --only fig2a_single_pair --runs {runs}"
    assert commit in png["Comment"] and "matplotlib" in png["Comment"]
    assert str(runs / "single-pair") in png["Comment"] and "Software" not in png
    pdf = (first / "fig2a_single_pair.pdf").read_bytes()
    assert f"/Creator (toymodels, git {commit})".encode() in pdf
    assert b"/CreationDate" not in pdf and b"/ModDate" not in pdf

    # a second invocation, in a fresh process (its own hash seed), gives the same bytes
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(Path(toymodels.__file__).parents[1]), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "toymodels", "figures", "--out", str(second),
                           "--runs", str(runs), "--only", *QUICK_FIGURES],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in drawn:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_train_runs_the_missing_commands_first(tmp_path, monkeypatch, capsys):
    """--train with a stand-in input whose command is cheap; a failing command is exit 1."""
    def draw(paths):
        fig = Figure()
        fig.subplots().plot(np.loadtxt(paths["data"] / "values.txt"))
        return fig

    make = ("python", "-c", "import pathlib, sys; p = pathlib.Path(sys.argv[1]); "
            "p.mkdir(parents=True); (p / 'values.txt').write_text('1 2 3')", "{runs}/made")
    good = figures.FigureSpec("stand_in", "a stand-in", {
        "data": figures.Input("made", ("values.txt",), make)}, draw)
    bad = figures.FigureSpec("stand_in_bad", "fails", {
        "data": figures.Input("never", ("values.txt",), ("python", "-c", "raise SystemExit(3)"))},
        draw)
    monkeypatch.setattr(figures, "FIGURES", {"stand_in": good, "stand_in_bad": bad})
    runs, out = tmp_path / "runs", tmp_path / "out"
    assert figures.figures_command(out, runs, only=["stand_in"]) == 2  # missing: not drawn
    assert figures.figures_command(out, runs, only=["stand_in"], train=True) == 0
    assert (out / "stand_in.png").is_file() and (out / "stand_in.pdf").is_file()
    assert figures.figures_command(out, runs, train=True) == 1  # the second command fails
    assert "failed: exit status 3" in capsys.readouterr().out


# ---- the flaws issue 22 names, fixed --------------------------------------------------


def test_spectrum_has_a_legend_per_seed_and_the_significance_cut_off(runs):
    from toymodels.analysis.svd import DEFAULT_REL_TOL

    fig = toymodels.plot_alignment(runs / "single-pair")
    ax = fig.axes[2]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:2] == ["seed 0", "seed 1"] and "cut-off 0.01·σ_1" in labels[2]
    S = np.load(runs / "single-pair" / "analysis.npz")["singular_values"]
    cut_offs = sorted(float(seg[0, 1]) for c in ax.collections for seg in c.get_segments())
    np.testing.assert_allclose(cut_offs, sorted(DEFAULT_REL_TOL * S[:, 0]), rtol=1e-6)


def test_dynamics_labels_both_axes_and_draws_losses_below_1e_6(runs, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs / "single-pair", run)
    curves = dict(np.load(run / "curves.npz"))
    curves["attn"] = np.full_like(curves["attn"], 1e-9)  # the single-pair run's loss reaches 1e-7
    curves["attn"][:, :3] = 1e-2
    np.savez(run / "curves.npz", **curves)
    fig = plot_dynamics(run)
    left, losses = fig.axes[:2]
    assert left.get_ylabel() and losses.get_ylabel()
    attn = next(line for line in losses.get_lines() if line.get_label() == "attn loss")
    assert attn.get_ydata().min() < 1e-8  # no floor at 1e-6


def test_robustness_colours_spread_over_the_data(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    cos = {(1, 4): 0.9990, (1, 10): 0.99999, (10, 4): 0.9999, (10, 10): 0.999999}
    rows = [{"lam": lam, "N": 20, "m": 4, "H": H, "seed": s, "min_matched_cos": c - 1e-6 * s}
            for (lam, H), c in cos.items() for s in range(2)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "results.parquet")
    fig = plot_robustness(tmp_path)
    images = [ax.get_images()[0] for ax in fig.axes if ax.get_images()]
    colours = {tuple(np.round(im.to_rgba(v), 3)) for im in images for v in im.get_array().ravel()}
    assert len(colours) == 4  # every cell its own colour (the old scale: all one yellow)
    norm = images[0].norm
    assert type(norm).__name__ == "LogNorm"
    assert norm.vmin <= 1.6e-6 and 1e-3 <= norm.vmax  # the range is set by the data
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "1.0e-03\n(1.0e-03)" in texts  # 1 − |cos| printed with its size


def test_transformer_heatmap_text_is_legible():
    from toymodels.plots.common import CELL_FONTSIZE, fmt

    assert CELL_FONTSIZE >= 7
    assert fmt(7.6e-6) == "7.6e-06" and fmt(0.5) == "0.50" and fmt(None) == "–"
    assert fmt(0) == "0" and fmt(float("nan")) == "–"
    summary = {"preset": "transformer-retrieval", "instances": [
        {"seed": 0, "heads": [{"layer": 0, "head": h, "accuracy": 0.98, "qk_matched": 0.9,
                               "qk_baseline": 0.004, "ov_matched": None} for h in range(2)]}]}

    class Stored:  # a Run-like object: summary, no dynamics
        dynamics = None

    Stored.summary = summary
    fig = plot_transformer_run(Stored())
    texts = fig.axes[0].texts
    assert {t.get_text() for t in texts} == {"0.98", "0.90", "4.0e-03", "–"}
    assert min(t.get_fontsize() for t in texts) >= 7
