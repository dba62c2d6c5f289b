"""Figures, each drawn from stored (or in-memory) results: every plot function returns a
matplotlib Figure and saves it only when given a path. No module here changes the
matplotlib backend; the command line picks a non-interactive one for itself.

  common.py  the shared style; subplots and finish (save when asked)
  runs.py    a run's alignment and spectra, toy transformers' heads, RoPE offsets,
             theory figures (multi-pair, anisotropy, pairs beyond H), the realism sweep
  sad.py     sparse attention decomposition: N_recon, per-head maps, over training
"""

from toymodels.plots.common import STYLE, finish, subplots
from toymodels.plots.runs import (plot_alignment, plot_anisotropy, plot_multi_pair,
                                  plot_pairs_beyond_h, plot_realism, plot_rope_offsets,
                                  plot_transformer_run)
from toymodels.plots.sad import plot_head_map, plot_nrecon, plot_sparseness_over_training

__all__ = ["STYLE", "finish", "plot_alignment", "plot_anisotropy", "plot_head_map",
           "plot_multi_pair", "plot_nrecon", "plot_pairs_beyond_h", "plot_realism",
           "plot_rope_offsets", "plot_sparseness_over_training", "plot_transformer_run",
           "subplots"]
