"""Each attended pair's fate in a head with fewer singular pairs than pairs: kept,
shared or dropped (the pairs-beyond-H check, checks.check_pairs_beyond_h).

Shapes: D residual dim, N features, P attended pairs, K significant singular indices.
"""

import numpy as np

from toymodels.analysis.head_rows import match
from toymodels.analysis.svd import DEFAULT_REL_TOL, significant

FATES = ("kept", "shared", "dropped")
SHARE_LEVEL = 0.5
"""|cos| on both sides above which a singular pair represents a feature pair."""


def pair_fates(Omega, X, Y, template, rel_tol: float = DEFAULT_REL_TOL) -> list[str]:
    """Each pair's fate in Ω [D, D]: 'kept' if its Hungarian-matched significant singular
    pair has |cos| >= SHARE_LEVEL on both sides; 'shared' if not, but its best significant
    singular pair (max over k of min(|cos x_i u_k|, |cos y_j v_k|)) reaches SHARE_LEVEL and
    is the matched pair of another, kept, pair; 'dropped' otherwise."""
    U, S, Vt = np.linalg.svd(np.asarray(Omega, np.float64))
    sig = np.flatnonzero(significant(S, rel_tol))
    xq = X[:, [i for i, _, _ in template]]
    yk = Y[:, [j for _, j, _ in template]]
    cu = np.abs(U[:, sig].T @ xq).T / np.linalg.norm(xq, axis=0)[:, None]  # [P, K]
    cv = np.abs(Vt[sig] @ yk).T / np.linalg.norm(yk, axis=0)[:, None]
    both = np.minimum(cu, cv)
    matched = match(cu * cv) if sig.size else np.full(len(template), -1)
    kept = [m >= 0 and both[p, m] >= SHARE_LEVEL for p, m in enumerate(matched)]
    owners = {matched[p] for p in range(len(template)) if kept[p]}
    fates = []
    for p in range(len(template)):
        best = int(np.argmax(both[p])) if sig.size else -1
        if kept[p]:
            fates.append("kept")
        elif best >= 0 and both[p, best] >= SHARE_LEVEL and best in owners:
            fates.append("shared")
        else:
            fates.append("dropped")
    return fates
