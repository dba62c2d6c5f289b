"""`toymodels theory`: run the checks, store the table and its data, draw the figures.

  DIR/theory.json   profile, rows, seconds per check, versions, git commit
  DIR/theory.csv    the table (one row per prediction with its seeds, whether they were
                    held out, and its foils' names, values and verdicts; pandas.read_csv)
  DIR/data/<check>.npz  what each figure is drawn from
  DIR/figures/      fig2b_multi_pair.png, fig4_anisotropy.png, pairs_beyond_h.png

The directory is written atomically (store.staged), and figures are drawn from the
stored files after it lands, never from memory.
"""

import time
from pathlib import Path

import numpy as np

from toymodels.theory.checks import CHECKS, Profile, profile_dict, run_checks
from toymodels.store import claim, provenance, staged, write_csv, write_json

MARKER = "theory.json"


def run_theory(profile: Profile, out_dir, *, only=None, overwrite: bool = False) -> dict:
    with claim(out_dir, overwrite, marker=MARKER) as out:  # checked and locked before work
        t0 = time.perf_counter()
        rows, data, seconds = run_checks(profile, only)
        record = {"profile": profile_dict(profile), "checks": list(data), "rows": rows,
                  "seconds": {k: round(v, 1) for k, v in seconds.items()},
                  "total_seconds": round(time.perf_counter() - t0, 1),
                  **provenance()}
        with staged(out, overwrite, marker=MARKER) as stage:
            (stage / "data").mkdir()
            for name, arrays in data.items():
                if arrays:
                    np.savez(stage / "data" / f"{name}.npz", **arrays)
            write_csv(stage / "theory.csv", csv_rows(rows))
            write_json(stage / MARKER, record)
            draw_figures(stage, stage / "figures")  # staged too, so the record lists them
    return record


def draw_figures(theory_dir, fig_dir) -> list[Path]:
    """Every figure whose data the stored theory run holds."""
    from toymodels.plots import plot_anisotropy, plot_multi_pair, plot_pairs_beyond_h

    theory_dir, fig_dir = Path(theory_dir), Path(fig_dir)
    fig_dir.mkdir(parents=True, exist_ok=True)
    drawn = []
    for check, plot, name in (("multi_pair", plot_multi_pair, "fig2b_multi_pair.png"),
                              ("anisotropy", plot_anisotropy, "fig4_anisotropy.png"),
                              ("pairs_beyond_h", plot_pairs_beyond_h, "pairs_beyond_h.png")):
        path = theory_dir / "data" / f"{check}.npz"
        if path.exists():
            with np.load(path) as f:
                plot(dict(f), fig_dir / name)
            drawn.append(fig_dir / name)
    return drawn


def theory_table(rows) -> str:
    """The table as printed: one line per row (its seeds, and whether they were held out
    from design), then one indented line per foil with the foil's value and verdict; a
    foil that passes is marked DEFECT (the check cannot tell it from the prediction)."""
    lines = [f"{'check':<16}{'prediction':<74}{'predicted':>14}{'measured':>11}"
             f"  {'tolerance':<11}{'':7}{'seeds'}"]
    lines.append("-" * (len(lines[0]) + 22))
    for r in rows:
        pred = r["prediction"] if len(r["prediction"]) <= 72 else r["prediction"][:71] + "…"
        measured = "-" if r["measured"] is None else f"{r['measured']:.4g}"
        held = "held out" if r.get("held_out") else "design"
        lines.append(f"{r['check']:<16}{pred:<74}{r['predicted']:>14}{measured:>11}"
                     f"  {r['tolerance']:<11} {r['status']:>4}  {r.get('seeds', '')} ({held})")
        for f in r.get("foils", []):
            name = f"foil: {f['name']}"
            name = name if len(name) <= 86 else name[:85] + "…"
            value = "-" if f["measured"] is None else f"{f['measured']:.4g}"
            verdict = "FAIL (rejected)" if f["status"] == "FAIL" else "PASS  DEFECT"
            lines.append(f"{'':18}{name:<86}{value:>11}  {'':12}{verdict}")
        if r.get("no_foil"):
            lines.append(f"{'':18}no foil: {r['no_foil']}")
    n_pass = sum(r["status"] == "PASS" for r in rows)
    n_pred = sum(r["status"] != "INFO" for r in rows)
    n_defect = sum(bool(r.get("defect")) for r in rows)
    lines.append(f"{n_pass} of {n_pred} predictions PASS (INFO rows are observations); "
                 f"{n_defect} rows with a foil that passes (defects of the check)")
    return "\n".join(lines)


def csv_rows(rows) -> list[dict]:
    """The rows as flat CSV records: the foils as joined columns (foil, foil_measured,
    foil_status); theory.json keeps them as lists."""
    return [{k: v for k, v in r.items() if k != "foils"} for r in rows]


__all__ = ["CHECKS", "run_theory", "draw_figures", "theory_table", "csv_rows"]
