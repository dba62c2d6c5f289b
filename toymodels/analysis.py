"""Singular vectors of a head's QK matrix against the planted features (paper-notes §4).

Shapes:
  ...  any leading batch axes (instances, layers, heads)
  W_Q, W_K [..., H, D];  W [..., D, N];  K = min(D, H) singular triples
  U, V [..., D, K] left/right singular vectors;  S [..., K] singular values, descending
  cos_u, cos_v [..., N, K]: |cos| between feature column w_i and u_k (resp. v_k)

Ω = W_Qᵀ W_K has rank <= H, so its SVD is taken from the thin factors: QR of
W_Qᵀ and W_Kᵀ, then the SVD of the small core R_Q R_Kᵀ. `dense_qk_svd` is the
direct route, kept as a test oracle.
"""

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linear_sum_assignment


def _mT(x):
    return jnp.swapaxes(x, -1, -2)


@jax.jit
def qk_svd(W_Q, W_K):
    """SVD of Ω = W_Qᵀ W_K from its thin factors: (U [..., D, K], S [..., K], V [..., D, K])."""
    with jax.default_matmul_precision("highest"):
        Q_q, R_q = jnp.linalg.qr(_mT(W_Q))  # W_Qᵀ = Q_q R_q, Q_q [.., D, K]
        Q_k, R_k = jnp.linalg.qr(_mT(W_K))
        U_c, S, V_ct = jnp.linalg.svd(R_q @ _mT(R_k))  # core [.., K, K]
        return Q_q @ U_c, S, Q_k @ _mT(V_ct)


@jax.jit
def dense_qk_svd(W_Q, W_K):
    """SVD of the dense D×D product (the oracle route): U, S, V with D triples."""
    with jax.default_matmul_precision("highest"):
        U, S, Vt = jnp.linalg.svd(_mT(W_Q) @ W_K)
        return U, S, _mT(Vt)


@jax.jit
def feature_cosines(W, U, V):
    """|cos| of every feature column of W [.., D, N] with every column of U and V."""
    with jax.default_matmul_precision("highest"):
        W_unit = W / jnp.linalg.norm(W, axis=-2, keepdims=True)
        return jnp.abs(_mT(W_unit) @ U), jnp.abs(_mT(W_unit) @ V)


def match_pairs(template, cos_u, cos_v, S):
    """Assign each attended pair (i, j) its own singular index, one-to-one.

    The Hungarian assignment maximizes the summed score |cos(w_i, u_k)|·|cos(w_j, v_k)|
    over pairs, rather than trusting the SVD's order. cos_u, cos_v [N, K], S [K] for
    one head. With more pairs than singular triples, the pairs left over get None.
    """
    if not template:
        return []
    cos_u, cos_v, S = np.asarray(cos_u), np.asarray(cos_v), np.asarray(S)
    query = np.array([i for i, _, _ in template])
    key = np.array([j for _, j, _ in template])
    score = cos_u[query] * cos_v[key]  # [P, K]
    rows, cols = linear_sum_assignment(score, maximize=True)
    assigned = dict(zip(rows.tolist(), cols.tolist()))
    pairs = []
    for p, (i, j, value) in enumerate(template):
        k = assigned.get(p)
        pairs.append({
            "query_feature": int(i), "key_feature": int(j), "target": float(value),
            "sv_index": None if k is None else int(k),
            "cos_query_u": None if k is None else float(cos_u[i, k]),
            "cos_key_v": None if k is None else float(cos_v[j, k]),
            "sigma": None if k is None else float(S[k]),
        })
    return pairs


def analyze_heads(W, W_Q, W_K, template):
    """Per-head spectrum, cosine matrices and matched pairs, for heads stacked on axis 0.

    Returns dict with 'singular_values' [I, K], 'cos_u', 'cos_v' [I, N, K] (NumPy) and
    'pairs', a list (one per head) of matched-pair records.
    """
    U, S, V = qk_svd(jnp.asarray(W_Q), jnp.asarray(W_K))
    cos_u, cos_v = feature_cosines(jnp.asarray(W), U, V)
    S, cos_u, cos_v = np.asarray(S), np.asarray(cos_u), np.asarray(cos_v)
    pairs = [match_pairs(template, cos_u[h], cos_v[h], S[h]) for h in range(S.shape[0])]
    return {"singular_values": S, "cos_u": cos_u, "cos_v": cos_v, "pairs": pairs}
