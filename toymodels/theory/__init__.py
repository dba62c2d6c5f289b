"""The paper's theory (docs/science.md) and `toymodels theory`.

  closed_form.py  float64 closed forms: Ω*, the anisotropy bound, feature frames
  rows.py         the table's vocabulary: profiles, seeds, a row and its foils, and the
                  measurements a trained head and a foil share
  checks.py       each prediction as a check: train, measure, PASS/FAIL rows, each with
                  its seeds and foils
  foils.py        wrong models of the same shapes and scale that each row must reject
  perturbation.py Wedin's sin θ bounds for the multi-pair singular vectors
  fates.py        each pair's fate (kept / shared / dropped) beyond H
  runner.py       run the checks, store table and data, draw figures
"""
