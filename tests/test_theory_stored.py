"""The stored `toymodels theory --quick` table (benchmarks/results/theory_quick.csv, the
README's table): no row's foil passes, every prediction row has a foil or says why not,
every row names its seeds, and the verdicts follow from the values (issue 19)."""

import numpy as np
import pandas as pd
import pytest

from helpers import REPO, verdict

STORED = REPO / "benchmarks" / "results" / "theory_quick.csv"


@pytest.fixture(scope="module")
def table():
    return pd.read_csv(STORED, keep_default_na=False)


def test_no_foil_passes_in_the_stored_quick_table(table):
    predictions = table[table.status != "INFO"]
    assert len(predictions) > 0
    for _, r in predictions.iterrows():
        assert r.foil or r.no_foil, r.prediction
        if r.foil:
            names, values = r.foil.split(" | "), str(r.foil_measured).split(" | ")
            statuses = r.foil_status.split(" | ")
            assert len(names) == len(values) == len(statuses), r.prediction
            for name, value, st in zip(names, values, statuses):
                assert st == "FAIL", f"defect: foil {name!r} passes {r.prediction!r}"
                v = np.nan if value == "-" else float(value)
                assert verdict(v, r.tolerance) == "FAIL", (r.prediction, name)
        assert not r.defect, r.prediction


def test_stored_rows_name_their_seeds_and_verdicts_follow_from_values(table):
    for _, r in table.iterrows():
        assert r.seeds and str(r.held_out) == "True", r.prediction
        if r.status != "INFO":
            value = float(r.measured) if r.measured != "" else np.nan
            assert r.status == verdict(value, r.tolerance), r.prediction


def test_the_rows_issue_19_changed_are_in_the_stored_table(table):
    text = " ".join(table.prediction)
    assert "owns a significant singular pair" in text  # ownership, both sides
    assert "two-sided" in text  # the angle of Ω*'s u_1
    assert "σ_k = σ_k(Ω*)" in text  # values of Ω*'s spectrum
    assert "nearer Ω_H than the plain truncation" in text  # the weighted optimum
    assert "Wedin" in text
