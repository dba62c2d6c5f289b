"""`theorem3`: Ω fixed to a planted σ·u vᵀ (u ⊥ v), only W and b train. Predicts the
attended features' interference goes to 0 with the head (λ = 10, <= 0.05) and stays in
superposition without it (λ = 0, >= 0.05). Each row's foil is the other training.
"""

import numpy as np

from toymodels.configs import make_instances, preset
from toymodels.theory.checks.common import TAG_THEOREM3
from toymodels.theory.rows import Profile, Seeds, features_for, interference, row
from toymodels.training.loop import train

THEOREM3_SEEDS = Seeds(800, True, "λ, steps and tolerance set on seeds 0–3")


def check_orthogonalization(p: Profile):
    """Ω planted as σ u vᵀ (u ⊥ v, random), W and b trained: the attended features should
    leave superposition with the head (λ = 10) and stay in it without (λ = 0). Each row's
    foil is the other training: the features trained without the head must fail the
    first row, those trained with it the second."""
    base = preset("single-pair").replace(record_points=0, train_head=False, steps=p.steps)
    sd = THEOREM3_SEEDS
    seeds = sd.range(p.seeds)
    I = p.seeds
    W_Q, W_K = np.zeros((I, base.H, base.D)), np.zeros((I, base.H, base.D))
    for n, seed in enumerate(seeds):
        q, _ = np.linalg.qr(features_for(TAG_THEOREM3, seed).standard_normal((base.D, 2)))
        W_Q[n, 0], W_K[n, 0] = np.sqrt(base.target_scale) * q[:, 0], np.sqrt(base.target_scale) * q[:, 1]
    inter = {}
    for lam in (base.lam, 0.0):
        cfg = base.replace(lam=lam)
        params = train(cfg, make_instances(cfg, seeds), init={"W_Q": W_Q, "W_K": W_K},
                       desc=f"features under a fixed Ω, λ={lam:g}").params
        inter[lam] = np.stack([interference(params["W"][n], [0, 1]) for n in range(I)])
    with_head, without = inter[base.lam], inter[0.0]
    common = dict(seeds=sd.label(I), held_out=sd.held_out)
    return [row("theorem3", f"fixed Ω, λ={base.lam:g}: attended features' interference",
                "→ 0", with_head.max(), "<=", 0.05, I,
                f"max over instances and both features; {sd.design}",
                foils=[("features trained without the head (λ=0)", without.max())], **common),
            row("theorem3", "fixed Ω, λ=0 (no head): attended features stay in superposition",
                "> 0.05", without.min(), ">=", 0.05, I,
                f"min over instances and both features; mean {without.mean():.3f}",
                foils=[(f"features trained with the head (λ={base.lam:g})", with_head.min())],
                **common)], \
        {"interference_head": with_head, "interference_no_head": without}
