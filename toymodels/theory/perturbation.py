"""What perturbation theory allows a trained head's singular vectors (issue 19, part C).

A head that solves a many-pair template should be near Ω* = Σ_p c_p q_p k_pᵀ: the pairs'
own directions as singular pairs. Here q_p, k_p are the attended query and key features
made orthonormal with the least change (Löwdin: Q = X (XᵀX)^{-1/2}, which keeps their
span), and c_p = q_pᵀ Ω k_p the trained head's own strength on pair p (no law of σ against
the target is assumed). Wedin's sin θ theorem (Stewart & Sun, Matrix Perturbation
Theory, Thm V.4.4) bounds how far Ω's singular vectors are from those directions:

  pair p, against Ω's singular pair k:   √(sin²θ_u + sin²θ_v) <= ρ_p / δ_p
      residuals   r = Ω k_p − c_p q_p,  s = Ωᵀ q_p − c_p k_p,  ρ_p = √(‖r‖² + ‖s‖²)
      gap         δ_p = min(min_{j≠k} |c_p − σ_j(Ω)|, c_p)
  cluster C of pairs, against |C| singular pairs of Ω (the same with matrices):
      B = Q_Cᵀ Ω K_C,  R = Ω K_C − Q_C B,  S = Ωᵀ Q_C − K_C Bᵀ,
      ‖sin Θ‖_F <= √(‖R‖_F² + ‖S‖_F²) / δ_C,  δ_C = min(min |σ(B) − σ_j(Ω)| (j outside
      the cluster's indices), min σ(B))

ρ is the trained Ω's distance from Ω* as seen from the pair (the part of Ω·k_p and
Ωᵀ·q_p off the pair), δ how far the pair's σ is from every other σ of Ω. Where δ is
small against ρ (neighbouring pairs with close σ) the bound allows the singular vectors
to mix; the cluster bound then says whether they stay inside the cluster's span.

These bounds hold for every matrix (they are a theorem); a check built on them tests
our computation and says which pairs are protected. A foil with the same σ and
randomly rotated singular vectors, measured against the trained head's bounds, shows
whether the bounds are informative enough to reject something.
"""

import numpy as np
from scipy.optimize import linear_sum_assignment

OWN_LEVEL = float(1 / np.sqrt(2))
"""|cos| above which a singular vector belongs to one feature: a unit vector has
|cos| > 1/√2 with at most one of a set of orthonormal directions."""


def lowdin(X) -> np.ndarray:
    """Q = X (XᵀX)^{-1/2} [D, P]: the orthonormal columns nearest to X's (same span)."""
    X = np.asarray(X, np.float64)
    lam, W = np.linalg.eigh(X.T @ X)
    return X @ (W / np.sqrt(lam)) @ W.T


def _angle(a, b) -> float:
    """Angle between two lines (radians, sign-free)."""
    c = abs(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.arccos(min(1.0, c)))


def pair_bounds(Omega, Xq, Yk) -> dict:
    """Per pair p (columns of Xq, Yk [D, P]): Wedin's bound for Ω's singular pair k_p whose
    σ is nearest c_p. Returns arrays [P]: c (pair strength), rho (residual), delta (gap),
    k (Ω's index), sin_bound (min(1, ρ/δ); 1 when δ <= 0), cos_u, cos_v (measured
    |cos(x_p, u_k)|, |cos(y_p, v_k)|), cos_lower_u, cos_lower_v (what the bound allows:
    cos(θ_bound + ∠(q_p, x_p)), the Löwdin step's own angle added); and U, S, V of Ω."""
    Omega = np.asarray(Omega, np.float64)
    Xq, Yk = np.asarray(Xq, np.float64), np.asarray(Yk, np.float64)
    Q, K = lowdin(Xq), lowdin(Yk)
    c = np.einsum("dp,de,ep->p", Q, Omega, K)
    K = K * np.where(c < 0, -1.0, 1.0)  # orientation: c_p >= 0
    c = np.abs(c)
    U, S, Vt = np.linalg.svd(Omega)
    V = Vt.T
    out = {k: np.zeros(len(c)) for k in ("rho", "delta", "sin_bound", "cos_u", "cos_v",
                                         "cos_lower_u", "cos_lower_v")}
    out["k"] = np.zeros(len(c), int)
    for p in range(len(c)):
        r = Omega @ K[:, p] - c[p] * Q[:, p]
        s = Omega.T @ Q[:, p] - c[p] * K[:, p]
        k = int(np.argmin(np.abs(S - c[p])))
        others = np.delete(S, k)
        delta = min(np.min(np.abs(others - c[p])) if others.size else np.inf, c[p])
        rho = float(np.sqrt(r @ r + s @ s))
        sin_b = 1.0 if delta <= 0 else min(1.0, rho / delta)
        theta = np.arcsin(sin_b)
        out["rho"][p], out["delta"][p], out["sin_bound"][p], out["k"][p] = rho, delta, sin_b, k
        out["cos_u"][p] = abs(U[:, k] @ Xq[:, p]) / np.linalg.norm(Xq[:, p])
        out["cos_v"][p] = abs(V[:, k] @ Yk[:, p]) / np.linalg.norm(Yk[:, p])
        for side, a, b in (("u", Q[:, p], Xq[:, p]), ("v", K[:, p], Yk[:, p])):
            out[f"cos_lower_{side}"][p] = np.cos(min(np.pi / 2, theta + _angle(a, b)))
    out["c"] = c
    out["U"], out["S"], out["V"] = U, S, V
    return out


def clusters(c, rho, delta=None, level: float = OWN_LEVEL) -> list[list[int]]:
    """Pairs the per-pair bound cannot keep apart: p and q are linked when
    |c_p − c_q| < ρ/level for either one's ρ (closer σ than that, Wedin cannot guarantee
    |cos| above `level` for p's own singular pair); clusters are the connected groups of
    two or more, each sorted by c (descending)."""
    c, rho = np.asarray(c), np.asarray(rho)
    P = len(c)
    parent = list(range(P))

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for p in range(P):
        for q in range(p + 1, P):
            if abs(c[p] - c[q]) * level < max(rho[p], rho[q]):
                parent[find(p)] = find(q)
    groups = {}
    for p in range(P):
        groups.setdefault(find(p), []).append(p)
    return [sorted(g, key=lambda p: -c[p]) for g in groups.values() if len(g) > 1]


def principal_sines(A, B) -> np.ndarray:
    """sin of the principal angles between span(A) and span(B) [min(rank)], ascending
    angle order (largest sine last)."""
    Qa, _ = np.linalg.qr(np.asarray(A, np.float64))
    Qb, _ = np.linalg.qr(np.asarray(B, np.float64))
    if Qa.shape[1] < Qb.shape[1]:
        Qa, Qb = Qb, Qa
    # the residual of span(B) off span(A): accurate near 0, where √(1 − cos²) is not
    sines = np.linalg.svd(Qb - Qa @ (Qa.T @ Qb), compute_uv=False)
    return np.sort(np.clip(sines, 0, 1))


def cluster_bound(Omega, Xq, Yk, members, S=None, U=None, V=None) -> dict:
    """Wedin's bound for the span of a cluster's pairs (columns `members` of Xq, Yk):
    the |C| singular pairs of Ω matched to σ(B) (one-to-one, nearest σ) against the span
    of the cluster's query features (u side) and key features (v side). Returns
    sin_bound (min(1, ‖(R, S)‖_F / δ_C)), the measured largest principal-angle sine on each
    side (sin_u, sin_v), the indices k, and rho, delta."""
    Omega = np.asarray(Omega, np.float64)
    if S is None:
        U, S, Vt = np.linalg.svd(Omega)
        V = Vt.T
    members = list(members)
    Xc, Yc = np.asarray(Xq, np.float64)[:, members], np.asarray(Yk, np.float64)[:, members]
    Q, K = lowdin(Xc), lowdin(Yc)
    Bm = Q.T @ Omega @ K
    lam = np.linalg.svd(Bm, compute_uv=False)
    R = Omega @ K - Q @ Bm
    Sres = Omega.T @ Q - K @ Bm.T
    rows, cols = linear_sum_assignment(np.abs(lam[:, None] - S[None, :]))
    ks = cols[np.argsort(rows)]
    others = np.delete(S, ks)
    delta = min(np.min(np.abs(lam[:, None] - others[None, :])) if others.size else np.inf,
                lam.min())
    rho = float(np.sqrt(np.sum(R ** 2) + np.sum(Sres ** 2)))
    sin_b = 1.0 if delta <= 0 else min(1.0, rho / delta)
    return {"sin_bound": sin_b, "rho": rho, "delta": float(delta), "k": ks,
            "sin_u": float(principal_sines(Xc, U[:, ks])[-1]),
            "sin_v": float(principal_sines(Yc, V[:, ks])[-1])}
