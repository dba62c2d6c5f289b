"""Write docs/tutorial.ipynb from docs/tutorial.py (jupytext's percent format: `# %%` opens
a code cell, `# %% [markdown]` a markdown cell whose lines start with `# `).

  python scripts/notebook.py [--check]   (--check: exit 1 if the notebook is out of date)
"""

import json
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def cells(text: str) -> list[dict]:
    """The notebook cells of a percent-format script (its header block left out)."""
    out, kind, lines = [], None, []

    def close():
        while lines and not lines[-1].strip():
            lines.pop()
        if kind is not None:
            source = [line[2:] if kind == "markdown" and line.startswith("# ") else
                      ("" if kind == "markdown" and line == "#" else line) for line in lines]
            cell = {"cell_type": kind, "metadata": {},
                    "source": [s + "\n" for s in source[:-1]] + source[-1:]}
            if kind == "code":
                cell |= {"execution_count": None, "outputs": []}
            out.append(cell)

    for line in text.splitlines():
        if line.startswith("# %%"):
            close()
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        elif kind is not None:
            lines.append(line)
    close()
    return out


def notebook(text: str) -> str:
    nb = {"cells": cells(text), "nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                      "name": "python3"},
                       "jupytext": {"formats": "ipynb,py:percent"}}}
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    want = notebook((DOCS / "tutorial.py").read_text())
    path = DOCS / "tutorial.ipynb"
    if "--check" in sys.argv:
        sys.exit(0 if path.exists() and path.read_text() == want else 1)
    path.write_text(want)
    print(f"wrote {path}")
