"""`theorem1`: Theorem 1's closed form. One pair, one-hot tokens, squared error; W fixed at
an anisotropic frame (ε = 3) or learned. Predicts the trained Ω's top singular pair is
Ω*'s (|cos| >= 0.99) and Ω = Ω* as a whole matrix (relative error <= 0.05). Foil: the
naive x_0x_1ᵀ (at its best scale for the matrix row), which ε = 3 tells apart from Ω*.
"""

import numpy as np

from toymodels.configs import make_instances
from toymodels.theory import closed_form as theory
from toymodels.theory import foils
from toymodels.theory.checks.common import (TAG_THEOREM1, THEOREM1_EPS, THEOREM_CFG,
                                            _fixed_head_run, _naive, _omega, _star)
from toymodels.theory.rows import (Profile, Seeds, features_for, largest, matrix_error, row,
                                   spectrum_error, top_pair_cos, worst)
from toymodels.training.loop import train

THEOREM1_SEEDS = Seeds(500, True, "ε = 3, rate, steps and tolerances set on seeds 0–3")


def check_theorem1(p: Profile):
    rows = []
    sd = THEOREM1_SEEDS
    seeds = sd.range(p.seeds)
    X = np.stack([theory.anisotropic_features(features_for(TAG_THEOREM1, s), 20, 10,
                                              THEOREM1_EPS) for s in seeds])
    cfg = THEOREM_CFG.replace(steps=p.steps)
    fixed = _fixed_head_run(cfg, X, first_seed=sd.first)
    learned_cfg = cfg.replace(train_features=True)
    learned = train(learned_cfg, make_instances(learned_cfg, seeds),
                    desc="head and features").params
    for label, c, params in ((f"fixed anisotropic features (ε={THEOREM1_EPS:g})", cfg, fixed),
                             ("learned features", learned_cfg, learned)):
        W = [params["W"][n].astype(np.float64) for n in range(p.seeds)]
        star = [_star(c, w) for w in W]
        om = [_omega(params, n) for n in range(p.seeds)]
        naive = [_naive(c, w) for w in W]
        naive = [foils.best_scale(f, s) * f for f, s in zip(naive, star)]  # its best scale
        cos = [top_pair_cos(o, s) for o, s in zip(om, star)]
        cos_naive = [top_pair_cos(f, s) for f, s in zip(naive, star)]
        err = [matrix_error(o, s) for o, s in zip(om, star)]
        err_naive = [matrix_error(f, s) for f, s in zip(naive, star)]
        sig = [spectrum_error(o, s) for o, s in zip(om, star)]
        common = dict(seeds=sd.label(p.seeds), held_out=sd.held_out)
        rows.append(row("theorem1", f"trained Ω top pair = Ω*'s, {label}", "|cos| = 1",
                        worst(cos), ">=", 0.99, p.seeds,
                        f"min over instances; the naive x_0x_1ᵀ's top pair against Ω*'s: "
                        f"{min(cos_naive):.3f}–{max(cos_naive):.3f}; {sd.design}",
                        foils=[("naive x_0x_1ᵀ", worst(cos_naive))], **common))
        rows.append(row("theorem1", f"trained Ω = Ω* as a whole matrix, {label}",
                        "‖Ω−Ω*‖/‖Ω*‖ = 0", largest(err), "<=", 0.05, p.seeds,
                        f"max over instances (σ error max {max(sig):.2g}); the naive x_0x_1ᵀ "
                        f"at its best scale: {min(err_naive):.3f}–{max(err_naive):.3f}",
                        foils=[("naive x_0x_1ᵀ at its best scale", largest(err_naive))],
                        **common))
    return rows, {}
