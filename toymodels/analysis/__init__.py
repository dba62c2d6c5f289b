"""Analysis of attention heads against known features.

  svd.py        jit-compiled SVDs of QK and OV from their factors, cosines, baselines
  alignment.py  Hungarian matching and the heads / pairs / features tables (analyze)
  sad.py        sparse attention decomposition of firings, with the rotated control
"""
