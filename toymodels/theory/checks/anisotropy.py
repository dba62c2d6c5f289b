"""`anisotropy` (Figure 4): fixed features at ε from 0 to 3. Predicts, two-sidedly, that
the trained head's angles ∠(u_1, x_0), ∠(v_1, x_1) are Ω*'s (within the isotropy check's
precision; foil: the naive x_0x_1ᵀ, angle 0), and reports mean alignment at the GPT-2
levels of ε under squared error and under the paper's loss against the paper's "above
0.75" (foil: a random head of the same rank and norm). Also the closed-form angles and
the Neumann and tight (Kantorovich) bounds the figure draws.
"""

import numpy as np

from toymodels.configs import preset
from toymodels.tasks.toy import second_moment
from toymodels.theory import closed_form as theory
from toymodels.theory import foils
from toymodels.theory.checks.common import (TAG_ANISOTROPY, TAG_ANISOTROPY_SPARSE,
                                            THEOREM_CFG, _fixed_head_run, _foil_rng, _naive,
                                            _omega, _star)
from toymodels.theory.rows import (Profile, Seeds, angle_error, feature_cos, features_for, row,
                                   seed_label)

ANISOTROPY_SEEDS = Seeds(700, True, "levels, rate, steps set on seeds 0–23; tolerance "
                                    "from the isotropy check")

TRAINED_ANGLE_TOL = float(np.degrees(np.arccos(0.999)))
"""A trained head is exact only to training precision: the isotropy check asks |cos| >= 0.999,
i.e. an angle of at most 2.56°; the two-sided angle row allows the same."""


# Figure 4's second series: the paper's own training (cross-entropy, sparse tokens,
# the single-pair preset's λ and target scale) on the same fixed feature sets.
PAPER_LOSS_CFG = preset("single-pair").replace(record_points=0, train_features=False,
                                               lr_schedule="cosine")


def check_anisotropy(p: Profile):
    """Figure 4. Each series' features hit ε exactly for the Σ_X its loss sees: X Xᵀ for
    one-hot tokens, X M Xᵀ for the paper's sparse tokens (M has a mean term)."""
    sd = ANISOTROPY_SEEDS
    eps = np.repeat(np.asarray(p.eps, np.float64), p.seeds)
    seeds = sd.range(len(eps))
    M_sparse = second_moment(PAPER_LOSS_CFG)
    X = np.stack([theory.anisotropic_features(features_for(TAG_ANISOTROPY, s), 20, 10, e)
                  for e, s in zip(eps, seeds)])
    X_sparse = np.stack([theory.anisotropic_features(features_for(TAG_ANISOTROPY_SPARSE, s),
                                                     20, 10, e, M=M_sparse)
                         for e, s in zip(eps, seeds)])
    mse_cfg = THEOREM_CFG.replace(steps=p.eps_steps)
    mse = _fixed_head_run(mse_cfg, X, first_seed=sd.first)
    # one run of all instances, as before blocks: with sparse tokens and cross-entropy
    # the values in blocks of 4 differ from one run's in the last bits (1e-10)
    xent = _fixed_head_run(PAPER_LOSS_CFG.replace(steps=p.eps_steps), X_sparse,
                           first_seed=sd.first, block=False)
    om = {"mse": [_omega(mse, n) for n in range(len(X))],
          "xent": [_omega(xent, n) for n in range(len(X))]}
    feats = {"mse": X, "xent": X_sparse}
    align = {k: np.array([feature_cos(o, x) for o, x in zip(om[k], feats[k])]) for k in om}
    rand = {k: np.array([feature_cos(foils.random_head(o, _foil_rng(TAG_ANISOTROPY, s)), x)
                         for o, x, s in zip(om[k], feats[k], seeds)]) for k in om}
    star = [_star(mse_cfg, x) for x in X]
    naive = [_naive(mse_cfg, x) for x in X]
    err = np.array([angle_error(o, s, x) for o, s, x in zip(om["mse"], star, X)])
    err_naive = np.array([angle_error(f, s, x) for f, s, x in zip(naive, star, X)])
    # Closed form and bounds on the query side (x_0) and the key side (x_1).
    Sigma = [theory.frame_operator(x) for x in X]
    tight = np.array([theory.tight_sin_bound(S) for S in Sigma])
    sin_star = np.array([[theory.sin_angle(np.linalg.solve(S, x[:, a]), x[:, a]) for a in (0, 1)]
                         for S, x in zip(Sigma, X)])
    angle_star = np.degrees(np.arcsin(np.clip(sin_star, 0, 1)))
    data = {"eps": eps, "bound_sin": tight,
            "neumann_sin": np.array([theory.sin_bound(S) for S in Sigma]),
            "closed_form_sin": sin_star, "align_mse": align["mse"], "align_xent": align["xent"],
            "angle_error": err, "angle_error_naive": err_naive,
            "gpt2_eps": np.asarray(theory.GPT2_EPS_RANGE), "D": 10}
    common = dict(seeds=sd.label(len(eps)), held_out=sd.held_out)
    levels = np.unique(eps)
    naive_fails = [f"{e:g}" for e in levels if err_naive[eps == e].max() > TRAINED_ANGLE_TOL]
    within = bool((sin_star <= tight[:, None] + 1e-12).all())
    rows = [row("anisotropy", "∠(u_1, x_0) and ∠(v_1, x_1) = Ω*'s (Theorem 2's angle, two-sided)",
                "Ω*'s angle", err.max(), "<=", TRAINED_ANGLE_TOL, len(X),
                f"max over instances and both sides of |∠ − ∠*| in degrees, squared-error loss, "
                f"one-hot tokens; Ω*'s angle is 0°–{angle_star.max():.1f}° (ε up to "
                f"{eps.max():g}; within the tight bound (κ−1)/(κ+1): {within}); the naive "
                f"x_0x_1ᵀ (angle 0) is off by more than the tolerance at ε = "
                f"{', '.join(naive_fails) or 'none'}; tolerance: the isotropy check's "
                f"precision (|cos| 0.999); {sd.design}",
                foils=[("naive x_0x_1ᵀ", err_naive.max())], **common)]
    for e in theory.GPT2_EPS_RANGE:
        at = np.isclose(eps, round(e, 2))
        if at.any():
            for name, label in (("mse", "squared error, one-hot"), ("xent", "paper's loss")):
                rows.append(row("anisotropy", f"mean alignment at GPT-2 level ε={e:.2f} "
                                f"({label}); paper: above 0.75", "> 0.75",
                                align[name][at].mean(), ">=", 0.75, int(at.sum()),
                                ("ε of X M Xᵀ, the matrix the sparse tokens' loss sees; "
                                 if name == "xent" else "")
                                + "the paper's claim is about alignment, so the naive answer "
                                "(aligned by construction) passes it too: the angle row "
                                "tells it from Ω*",
                                foils=[("random head, same rank and norm",
                                        rand[name][at].mean())],
                                seeds=seed_label(s for s, a in zip(seeds, at) if a),
                                held_out=sd.held_out))
    return rows, data
