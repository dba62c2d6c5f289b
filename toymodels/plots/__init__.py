"""Figures, each drawn from stored (or in-memory) results: every plot function returns a
matplotlib Figure and saves it only when given a path. No module here changes the
matplotlib backend; the command line picks a non-interactive one for itself.

  common.py   the shared style; subplots, finish (save when asked), fmt (numbers that show
              their size)
  runs.py     a run's alignment and spectra, toy transformers' heads, RoPE offsets,
              theory figures (multi-pair, anisotropy, pairs beyond H), the realism sweep
  studies.py  the paper's Figures 1 and 3 and Appendix A, the optimizer × frame and the
              feature-structure studies
  sad.py      sparse attention decomposition: N_recon, per-head maps, over training

Which stored results each figure of the documentation reads, and the command that makes
them: toymodels.figures (`toymodels figures --list`).
"""

from toymodels.plots.common import STYLE, finish, fmt, subplots
from toymodels.plots.runs import (plot_alignment, plot_anisotropy, plot_multi_pair,
                                  plot_pairs_beyond_h, plot_realism, plot_rope_offsets,
                                  plot_transformer_run)
from toymodels.plots.sad import (plot_head_map, plot_nrecon, plot_planted_over_training,
                                 plot_sparseness_over_training)
from toymodels.plots.studies import (plot_dynamics, plot_feature_geometry,
                                     plot_feature_structure, plot_optimizer_frame,
                                     plot_robustness)

__all__ = ["STYLE", "finish", "fmt", "plot_alignment", "plot_anisotropy", "plot_dynamics",
           "plot_feature_geometry", "plot_feature_structure", "plot_head_map", "plot_multi_pair", "plot_nrecon",
           "plot_optimizer_frame", "plot_pairs_beyond_h", "plot_planted_over_training",
           "plot_realism", "plot_robustness", "plot_rope_offsets",
           "plot_sparseness_over_training", "plot_transformer_run", "subplots"]
