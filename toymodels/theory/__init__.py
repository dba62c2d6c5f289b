"""The paper's theory (docs/science.md) and `toymodels theory`.

  closed_form.py  float64 closed forms: Ω*, the anisotropy bound, feature frames
  rows.py         the table's vocabulary: profiles, seeds, a row and its foils, and the
                  measurements a trained head and a foil share
  checks/         each prediction as a check, one module per check (theorem1, isotropy,
                  anisotropy, theorem3, multi_pair, sigma_targets, pairs_beyond_h;
                  common: Theorem 1's setting): train, measure, PASS/FAIL rows, each with
                  its seeds and foils; CHECKS and run_checks in checks/__init__.py
  structured.py   the structured-tokens check (correlated and nested features)
  foils.py        wrong models of the same shapes and scale that each row must reject
  perturbation.py Wedin's sin θ bounds for the multi-pair singular vectors
  fates.py        each pair's fate (kept / shared / dropped) beyond H
  runner.py       run the checks, store table and data, draw figures
"""
