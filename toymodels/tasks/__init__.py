"""Planted-feature tasks: samplers f(key, hyperparameters) -> batch, each with its
ground truth, and the losses a task defines.

  features.py  sparse feature activations and feature frames shared by every task
  toy.py       the paper's supervised-attention task (templates, target logits)
  retrieval.py toy-transformer tasks: retrieval, multi-pair, RoPE offset, control
"""
