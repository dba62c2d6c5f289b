"""Toy transformers on the retrieval tasks, as a family.

  training.py  model, task, loss, batched hyperparameters, the in-training recorder, and
               the analysis of trained parameters (evaluate, analyze, rope_offsets,
               baseline_range)
  records.py   the per-instance record (summary.json and sweep rows from one function),
               the console table, and what sparse attention decomposition reads
"""

from toymodels.families.transformer.records import *  # noqa: F401,F403
from toymodels.families.transformer.records import _matched  # noqa: F401
from toymodels.families.transformer.training import *  # noqa: F401,F403
from toymodels.families.transformer.training import (_pair_alignment,  # noqa: F401
                                                     _query_output)
