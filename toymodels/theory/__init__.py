"""The theory of paper-notes §2 and `toymodels theory`.

  closed_form.py  float64 closed forms: Ω*, the anisotropy bound, feature frames
  checks.py       each prediction as a check: train, measure, PASS/FAIL rows
  runner.py       run the checks, store table and data, draw figures
"""
