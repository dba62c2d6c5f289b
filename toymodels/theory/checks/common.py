"""What the checks share: Theorem 1's setting (one pair, one-hot tokens, squared error),
a head trained on fixed features, Ω* and the naive answer of a config, and the
feature-draw and foil-draw streams (one per check and seed).

Shapes: I instances, D residual dim, N features.
"""

import numpy as np

from toymodels.configs import ToyConfig, make_instances
from toymodels.tasks.toy import second_moment, template_matrix
from toymodels.theory import closed_form as theory
from toymodels.theory import foils
from toymodels.theory.rows import feature_cos
from toymodels.training.loop import train

# One pair (feature 0 on the query attends to feature 1 on a key), one-hot tokens and
# the squared-error loss: Theorem 1's setting, where Ω* has a closed form. Only the
# head trains (W fixed) unless a check says otherwise; the cosine decay removes the
# SGD noise that would otherwise sit on top of Ω* at the end.
THEOREM_CFG = ToyConfig(N=20, D=10, H=10, m=8, tokens="onehot", attn_loss="mse", lam=1.0,
                        target_scale=1.0, learning_rate=1e-2, lr_schedule="cosine",
                        train_features=False)


def _omega(params, n):
    return params["W_Q"][n].T.astype(np.float64) @ params["W_K"][n].astype(np.float64)


BLOCK = 4
"""Instances per training run of the one-hot, squared-error checks. XLA compiles a program
(the instances' init and the training chunk) for each instance count, at 5-10 CPU s, what
2,000-3,000 steps of four instances of Theorem 1's setting cost; training is no cheaper
per instance-step at 16 instances than at 4 (both measured on the 2-core CPU). In blocks
of 4, theorem1, isotropy, anisotropy (squared error) and sigma_targets share one compiled
program of Theorem 1's setting instead of compiling one each for 4, 8 and 24 instances.
An instance's result does not depend on its neighbours (training/loop.py), and in this
setting it is the same bit for bit (the quick table's rows, equal before and after). With
sparse tokens and cross-entropy it is not: the values differ in the last bits (1e-10), so
those runs (anisotropy's paper's loss, sigma_targets') stay one run each."""


def train_blocks(cfg, instances, init: dict | None = None, desc: str = "train") -> dict:
    """train(cfg, instances, init=init).params, trained BLOCK instances at a time."""
    parts = []
    for i in range(0, len(instances), BLOCK):
        block = None if init is None else {k: v[i:i + BLOCK] for k, v in init.items()}
        parts.append(train(cfg, instances[i:i + BLOCK], init=block,
                           desc=f"{desc} ({i + 1}–{min(i + BLOCK, len(instances))} of "
                                f"{len(instances)})").params)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _fixed_head_run(cfg, X, first_seed: int = 0, block: bool = True):
    """Train the head on fixed features X [I, D, N] (one instance each, seeds first_seed + index),
    BLOCK instances at a time, or all in one run (block=False)."""
    instances = make_instances(cfg, range(first_seed, first_seed + len(X)))
    if not block:
        return train(cfg, instances, init={"W": X}, desc="head on fixed features").params
    return train_blocks(cfg, instances, init={"W": np.asarray(X)}, desc="head on fixed features")


def _star(cfg, X) -> np.ndarray:
    """Theorem 1's Ω* for cfg's template, tokens and target scale on features X [D, N]."""
    M = second_moment(cfg)
    return theory.closed_form_omega(X, X, template_matrix(cfg.template, cfg.N),
                                    cfg.target_scale, M, M)


def _naive(cfg, X) -> np.ndarray:
    """The naive answer x_i x_jᵀ of cfg's (single) pair, unscaled."""
    return foils.naive_answer(X, X, cfg.template)



THEOREM1_EPS = 3.0
"""Anisotropy of Theorem 1's fixed features: there the naive answer Ω ∝ x_0 x_1ᵀ is far
from Ω* (its top pair's |cos| with Ω*'s is 0.70–0.99, median 0.82, over random feature
sets; at ε = 0.5 it is 0.97–1.00 and cannot tell the two apart)."""
TAG_THEOREM1, TAG_ISOTROPY, TAG_ANISOTROPY, TAG_ANISOTROPY_SPARSE, TAG_THEOREM3, TAG_SIGMA, \
    TAG_RANK_H, TAG_FOIL = range(1, 9)
"""Feature-draw tags of the checks (features_for): one stream per check and seed."""


def _foil_rng(check_tag: int, seed: int) -> np.random.Generator:
    return np.random.default_rng([TAG_FOIL, check_tag, seed])



def _feature_alignment(params, n, a=0, b=1):
    """(|cos(u_1, x_a)|, |cos(v_1, x_b)|) of instance n's trained head."""
    return feature_cos(_omega(params, n), params["W"][n], a, b)

