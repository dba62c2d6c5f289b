"""The vocabulary of the theory table: sizes (Profile), seeds (Seeds), a prediction row and
its foils (row), observations, and the measurements a trained head and a foil share
(top_pair_cos, matrix_error, angle_error, spectrum_error, interference). The modules of
checks/ build each check from these.

Shapes: D residual dim, N features, K singular indices.
"""

from dataclasses import dataclass

import numpy as np

from toymodels.theory import closed_form as theory


@dataclass(frozen=True)
class Profile:
    name: str
    seeds: int            # instances per setting of the small checks
    steps: int            # training steps of the small (N=20, D=10) checks
    eps: tuple            # anisotropy levels ε = ‖E_X‖₂/α of Figure 4
    multi_seeds: int      # held-out seeds of the multi-pair check (from HELD_OUT_SEED)
    multi_steps: int | None  # None: the multi-pair preset's own step count
    rank_h_steps: int     # training steps of the pairs-beyond-H study
    eps_steps: int        # training steps of the anisotropy sweep
    rank_h_dims: tuple = (4, 8, 16)  # residual dimensions D of the pairs-beyond-H study
    rank_h_heads: tuple = (2, 4)     # head dimensions H of the pairs-beyond-H study


QUICK = Profile("quick", seeds=4, steps=3000, eps=(0.0, 0.31, 0.5, 1.0, 1.72, 3.0),
                multi_seeds=4, multi_steps=None, rank_h_steps=3000, eps_steps=2000)
# Paper-sized: 8 seeds, 12 anisotropy levels, twice the multi-pair steps. Meant for an
# accelerator; on a 2-core CPU it runs for hours (not timed).
FULL = Profile("full", seeds=8, steps=10_000,
               eps=(0.0, 0.1, 0.2, 0.31, 0.5, 0.75, 1.0, 1.25, 1.72, 2.5, 3.0, 4.0),
               multi_seeds=8, multi_steps=20_000, rank_h_steps=10_000, eps_steps=5000,
               rank_h_dims=(4, 6, 8, 12, 16), rank_h_heads=(2, 3, 4, 6))
PROFILES = {"quick": QUICK, "full": FULL}


@dataclass(frozen=True)
class Seeds:
    """Where a check's instances come from: instance n has seed first + n (its training
    stream, its head's initial values and, where the check draws them, its features), and
    whether those seeds were held out while the setting was designed (design says on what
    it was designed)."""
    first: int
    held_out: bool
    design: str

    def range(self, n: int) -> range:
        return range(self.first, self.first + n)

    def label(self, n: int) -> str:
        return f"{self.first}" if n == 1 else f"{self.first}–{self.first + n - 1}"


def seed_label(seeds) -> str:
    """Seeds as text, contiguous runs as ranges: [4, 5, 6, 9] -> '4–6, 9'."""
    seeds, runs = sorted(int(s) for s in seeds), []
    for s in seeds:
        if runs and s == runs[-1][1] + 1:
            runs[-1][1] = s
        else:
            runs.append([s, s])
    return ", ".join(f"{a}" if a == b else f"{a}–{b}" for a, b in runs)


def _passes(measured, criterion, threshold) -> bool:
    return measured is not None and bool(np.isfinite(measured)) and bool(
        measured >= threshold if criterion == ">=" else measured <= threshold)


def row(check, prediction, predicted, measured, criterion, threshold, n, detail="", *,
        seeds: str, held_out: bool, foils=(), no_foil: str | None = None):
    """One table row; criterion is '>=' or '<=' applied as measured <criterion> threshold.
    A missing or non-finite measurement FAILs: nothing measured is nothing confirmed.

    foils: (name, measured) of wrong models measured the same way; each must FAIL the same
    criterion. A foil that passes makes the row a defect of the check (the check cannot
    tell the prediction from that wrong model). no_foil: why no foil can be built; a
    prediction row has foils or says why not. seeds: the seeds measured; held_out: whether
    they were held out from the design and tuning of the setting."""
    if not foils and not no_foil:
        raise ValueError(f"{check}: a prediction row needs a foil or a reason why none exists")
    foil_rows = [{"name": name, "measured": None if v is None else float(v),
                  "status": "PASS" if _passes(v, criterion, threshold) else "FAIL"}
                 for name, v in foils]
    passing = [f["name"] for f in foil_rows if f["status"] == "PASS"]
    return {"check": check, "prediction": prediction, "predicted": predicted,
            "measured": None if measured is None else float(measured),
            "tolerance": f"{criterion} {threshold:g}",
            "status": "PASS" if _passes(measured, criterion, threshold) else "FAIL",
            "instances": n, "seeds": seeds, "held_out": bool(held_out),
            "foil": " | ".join(f["name"] for f in foil_rows),
            "foil_measured": " | ".join("-" if f["measured"] is None else f"{f['measured']:.4g}"
                                        for f in foil_rows),
            "foil_status": " | ".join(f["status"] for f in foil_rows),
            "no_foil": no_foil or "",
            "defect": ("foil passes: " + ", ".join(passing)) if passing else "",
            "detail": detail, "foils": foil_rows}


def observation(check, what, measured, n, detail="", *, seeds: str, held_out: bool):
    """A measured number reported beside the predictions, with no prediction to pass
    or fail (status INFO; not counted among the predictions, no foil)."""
    return {"check": check, "prediction": what, "predicted": "-",
            "measured": None if measured is None else float(measured), "tolerance": "-",
            "status": "INFO", "instances": n, "seeds": seeds, "held_out": bool(held_out),
            "foil": "", "foil_measured": "", "foil_status": "", "no_foil": "", "defect": "",
            "detail": detail, "foils": []}


def worst(values) -> float:
    """min over values; NaN when any is missing or NaN (so the row FAILs), never the
    min of the values that happen to exist."""
    values = [np.nan if v is None else float(v) for v in values]
    return float("nan") if not values or np.isnan(values).any() else min(values)


def largest(values) -> float:
    """max over values; NaN when any is missing or NaN (so a '<=' row FAILs)."""
    values = [np.nan if v is None else float(v) for v in values]
    return float("nan") if not values or np.isnan(values).any() else max(values)


def features_for(tag: int, seed: int) -> np.random.Generator:
    """The generator of a check's feature draw for one seed: the features are a function
    of (check, seed) alone, so a seed names the whole instance."""
    return np.random.default_rng([tag, seed])


# ---- measurements (a trained head and a foil go through the same function) ------------

def top_pair_cos(Omega, star) -> float:
    """min(|cos(u_1, u_1*)|, |cos(v_1, v_1*)|): Ω's top singular pair against Ω*'s."""
    u, _, v = theory.top_pair(Omega)
    u_s, _, v_s = theory.top_pair(star)
    return float(min(abs(u @ u_s), abs(v @ v_s)))


def matrix_error(Omega, star) -> float:
    """‖Ω − Ω*‖_F / ‖Ω*‖_F."""
    return float(np.linalg.norm(np.asarray(Omega) - star) / np.linalg.norm(star))


def feature_cos(Omega, X, a: int = 0, b: int = 1) -> tuple[float, float]:
    """(|cos(u_1, x_a)|, |cos(v_1, x_b)|) of Ω's top singular pair."""
    u, _, v = theory.top_pair(Omega)
    X = np.asarray(X, np.float64)
    return (float(abs(u @ X[:, a]) / np.linalg.norm(X[:, a])),
            float(abs(v @ X[:, b]) / np.linalg.norm(X[:, b])))


def angle_error(Omega, star, X, a: int = 0, b: int = 1) -> float:
    """max over sides of |∠(u_1, x_a) − ∠(u_1*, x_a)| (and v_1 against x_b), in degrees:
    Ω's top pair makes the angle with the features that Ω*'s makes (two-sided)."""
    X = np.asarray(X, np.float64)

    def angles(M):  # atan2(sin, |cos|): accurate near 0°, where arccos is not
        u, _, v = theory.top_pair(M)
        return [np.degrees(np.arctan2(theory.sin_angle(w, x), abs(w @ x) / np.linalg.norm(x)))
                for w, x in ((u, X[:, a]), (v, X[:, b]))]

    return float(max(abs(d - e) for d, e in zip(angles(Omega), angles(star))))


def spectrum_error(Omega, star) -> float:
    """max_k |σ_k(Ω) − σ_k(Ω*)| / σ_1(Ω*): the whole spectrum against Ω*'s, two-sided."""
    s = np.linalg.svd(np.asarray(Omega, np.float64), compute_uv=False)
    s_s = np.linalg.svd(np.asarray(star, np.float64), compute_uv=False)
    return float(np.max(np.abs(s - s_s)) / s_s[0])


def interference(W, feats) -> np.ndarray:
    """Σ_{j≠i} (ŵ_i·w_j)² of features feats (Toy Models of Superposition) [len(feats)]."""
    W = np.asarray(W, np.float64)
    unit = W / np.linalg.norm(W, axis=0, keepdims=True)
    G = unit[:, feats].T @ W  # [F, N]
    G[np.arange(len(feats)), feats] = 0
    return np.sum(G ** 2, axis=1)
