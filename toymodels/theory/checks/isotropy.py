"""`isotropy`: with a random tight frame (Σ_X ∝ I) Ω* ∝ x_0x_1ᵀ, so the trained head's
top pair lies along the features: |cos(u_1, x_0)|, |cos(v_1, x_1)| >= 0.999. Here the
naive answer is the prediction; the foil is a random head of the same rank and norm.
"""

import numpy as np

from toymodels.theory import closed_form as theory
from toymodels.theory import foils
from toymodels.theory.checks.common import (TAG_ISOTROPY, THEOREM_CFG, _fixed_head_run,
                                            _foil_rng, _omega)
from toymodels.theory.rows import Profile, Seeds, feature_cos, features_for, row

ISOTROPY_SEEDS = Seeds(600, True, "rate, steps and tolerance set on seeds 0–3")


def check_isotropy(p: Profile):
    sd = ISOTROPY_SEEDS
    seeds = sd.range(p.seeds)
    X = np.stack([theory.anisotropic_features(features_for(TAG_ISOTROPY, s), 20, 10, 0.0)
                  for s in seeds])
    params = _fixed_head_run(THEOREM_CFG.replace(steps=p.steps), X, first_seed=sd.first)
    om = [_omega(params, n) for n in range(p.seeds)]
    cos = np.array([feature_cos(o, x) for o, x in zip(om, X)])
    rand = np.array([feature_cos(foils.random_head(o, _foil_rng(TAG_ISOTROPY, s)), x)
                     for o, x, s in zip(om, X, seeds)])
    return [row("isotropy", "isotropic fixed features: u_1 ∥ x_0 and v_1 ∥ x_1", "|cos| = 1",
                cos.min(), ">=", 0.999, p.seeds,
                f"min |cos(u_1, x_0)| {cos[:, 0].min():.5f}, min |cos(v_1, x_1)| "
                f"{cos[:, 1].min():.5f}; here Ω* ∝ x_0x_1ᵀ, so the naive answer is the "
                f"prediction and not a foil; {sd.design}",
                seeds=sd.label(p.seeds), held_out=sd.held_out,
                foils=[("random head, same rank and norm", rand.min())])], {}
