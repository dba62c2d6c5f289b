"""Singular vectors of attention heads against a feature dictionary (docs/science.md).

Shapes:
  ...  leading head axes, any of [instance, layer, head] (or none)
  D residual dim, H head dim, N features, K = min(D, H) singular triples
  W_Q, W_K, W_V [..., H, D];  W_O [..., D, H];  features W [(...), D, N]
  A circuit's matrix is a product A Bᵀ of two [..., D, H] factors:
    QK: Ω = W_Qᵀ W_K  (A = W_Qᵀ, B = W_Kᵀ);   OV = W_O W_V  (A = W_O, B = W_Vᵀ)
  U, V [..., D, K] left/right singular vectors; S [..., K] descending
  cos_u, cos_v [..., N, K]: |cos| of feature w_i with u_k (v_k)

Everything here is jit-compiled and batched over the leading axes. A product of
rank <= H is decomposed from its thin factors when H < D (QR of each factor,
SVD of the K×K core) and densely otherwise; both are exact, and the dense route
doubles as the test oracle. Analysis always runs at full float32 matmul precision.
"""

from functools import partial

import jax
import jax.numpy as jnp
from toymodels.compile_cache import configure as _use_compile_cache  # noqa: E402

_use_compile_cache()  # before this module compiles anything


DEFAULT_REL_TOL = 0.01
"""σ_k is significant when σ_k > DEFAULT_REL_TOL · σ_1, unless a caller says otherwise."""


def _mT(x):
    return jnp.swapaxes(x, -1, -2)


def thin_product_svd(A, B):
    """SVD of A Bᵀ from its factors A, B [..., D, H]: U, V [..., D, K], S [..., K]."""
    Q, R = jnp.linalg.qr(jnp.stack([A, B]))  # one batched call for both factors
    (Q_a, Q_b), (R_a, R_b) = Q, R  # A = Q_a R_a, Q_a [.., D, K]
    U_c, S, V_ct = jnp.linalg.svd(R_a @ _mT(R_b))  # core [.., K, K]
    return Q_a @ U_c, S, Q_b @ _mT(V_ct)


def dense_product_svd(A, B):
    """SVD of the dense D×D product A Bᵀ, truncated to K = min(D, H) triples."""
    K = min(A.shape[-2], A.shape[-1])
    U, S, V_t = jnp.linalg.svd(A @ _mT(B))
    return U[..., :K], S[..., :K], _mT(V_t)[..., :K]


def product_svd(A, B):
    """The cheaper exact route for the shapes at hand (decided at trace time)."""
    D, H = A.shape[-2:]
    return thin_product_svd(A, B) if H < D else dense_product_svd(A, B)


@jax.jit
def qk_svd(W_Q, W_K):
    """SVD of Ω = W_Qᵀ W_K: (U [..., D, K], S [..., K], V [..., D, K])."""
    with jax.default_matmul_precision("highest"):
        return product_svd(_mT(W_Q), _mT(W_K))


@jax.jit
def ov_svd(W_V, W_O):
    """SVD of OV = W_O W_V: (U [..., D, K], S [..., K], V [..., D, K])."""
    with jax.default_matmul_precision("highest"):
        return product_svd(W_O, _mT(W_V))


@jax.jit
def dense_qk_svd(W_Q, W_K):
    """Oracle: SVD of the dense D×D matrix Ω, all D triples."""
    with jax.default_matmul_precision("highest"):
        U, S, V_t = jnp.linalg.svd(_mT(W_Q) @ W_K)
        return U, S, _mT(V_t)


def unit_columns(W):
    return W / jnp.linalg.norm(W, axis=-2, keepdims=True)


def _signed_cosines(W, U):
    """cos of every unit feature column of W [.., D, N] with every column of U [.., D, K].
    One dictionary for all heads (W's leading axes all 1) is a single GEMM, not a
    batched product against copies of it."""
    W_unit = unit_columns(W)
    if all(n == 1 for n in W.shape[:-2]):
        W_unit = W_unit.reshape(W.shape[-2:])
        return jnp.einsum("dn,...dk->...nk", W_unit, U)
    return _mT(W_unit) @ U


@jax.jit
def feature_cosines(W, U, V):
    """|cos| of every feature column of W [.., D, N] with every column of U and V."""
    with jax.default_matmul_precision("highest"):
        return jnp.abs(_signed_cosines(W, U)), jnp.abs(_signed_cosines(W, V))


def significant(S, rel_tol):
    """σ_k counts only when σ_k > rel_tol · σ_1: directions with negligible σ are
    arbitrary (null space), so a match there is not alignment."""
    return S > rel_tol * S[..., :1]


def best_index_cosines(cos_u, cos_v, S, queries, keys, rel_tol: float = DEFAULT_REL_TOL):
    """Each planted pair's |cos| at its own best significant singular index, the k with the
    largest cos_u[i, k] · cos_v[j, k] (max over k, not one-to-one: the Hungarian match
    needs the host, so in-training records use this). cos_u, cos_v [.., N, K], S [.., K],
    queries / keys: the pairs' feature indices [P]. Returns (cos_query_u, cos_key_v) [.., P]."""
    q, k = jnp.asarray(queries, jnp.int32), jnp.asarray(keys, jnp.int32)
    cu, cv = cos_u[..., q, :], cos_v[..., k, :]  # [.., P, K]
    score = jnp.where(significant(S, rel_tol)[..., None, :], cu * cv, -1.0)
    best = jnp.argmax(score, axis=-1)[..., None]
    return (jnp.take_along_axis(cu, best, -1)[..., 0],
            jnp.take_along_axis(cv, best, -1)[..., 0])


def random_rotations(key, mask):
    """Haar-random orthogonal [..., K, K] acting only on the columns where mask [..., K]
    is True (a prefix, as significant σ are the largest), identity elsewhere.
    Give mask a leading axis to draw several sets in one QR call.

    QR of a block-diagonal matrix [[G, 0], [0, I]] is block-diagonal, so the
    rotation keeps the span of the masked columns."""
    K = mask.shape[-1]
    with jax.threefry_partitionable(False):  # half the cost on the CPU (tasks/features.py)
        G = jax.random.normal(key, mask.shape + (K,))
    both = mask[..., :, None] & mask[..., None, :]
    eye = jnp.broadcast_to(jnp.eye(K, dtype=bool), both.shape)
    G = jnp.where(both, G, eye.astype(G.dtype))
    Q, R = jnp.linalg.qr(G)
    return Q * jnp.sign(jnp.diagonal(R, axis1=-2, axis2=-1))[..., None, :]  # Haar measure


def principal_cosines(F, U, n_vectors: int, mask):
    """Cosines of the principal angles between span(F [.., D, P]) and the span of the
    first n_vectors columns of U that mask keeps; descending, min(P, n_vectors) of them."""
    Q_f, _ = jnp.linalg.qr(F)
    U_top = U[..., :n_vectors] * mask[..., None, :n_vectors]
    cos = jnp.linalg.svd(_mT(Q_f) @ U_top, compute_uv=False)
    return jnp.clip(cos[..., :min(F.shape[-1], n_vectors)], 0.0, 1.0)


@partial(jax.jit, static_argnames=("query_set", "key_set", "rel_tol"))
def circuit_core(A, B, W, key, *, query_set: tuple, key_set: tuple, rel_tol: float):
    """Everything jit-able about one circuit A Bᵀ of every head against features W.

    query_set / key_set: feature indices whose spans are compared with the left /
    right singular vectors (principal angles). Returns a dict of arrays."""
    with jax.default_matmul_precision("highest"):
        U, S, V = product_svd(A, B)
        sig = significant(S, rel_tol)
        C_u, C_v = _signed_cosines(W, U), _signed_cosines(W, V)  # [.., N, K]
        R_u, R_v = random_rotations(key, jnp.stack([sig, sig]))  # one QR for both
        # Ŵᵀ(U R) = (ŴᵀU) R: the baseline rotates the cosines, not the vectors.
        out = {"S": S, "significant": sig, "cos_u": jnp.abs(C_u), "cos_v": jnp.abs(C_v),
               "cos_u_rot": jnp.abs(C_u @ R_u), "cos_v_rot": jnp.abs(C_v @ R_v)}
        K = S.shape[-1]
        for side, feats, vectors in (("query", query_set, U), ("key", key_set, V)):
            if feats:
                F = jnp.broadcast_to(W, A.shape[:-2] + W.shape[-2:])[..., jnp.asarray(feats)]
                out[f"principal_cos_{side}"] = principal_cosines(
                    F, vectors, min(len(feats), K), sig)
        return out


@jax.jit
def feature_geometry(W):
    """Toy Models of Superposition's geometry of W [.., D, N].

    gram WᵀW [.., N, N]; norms ‖w_i‖; interference_i = Σ_{j≠i} (ŵ_i·w_j)²;
    dimensionality_i = ‖w_i‖² / Σ_j (ŵ_i·w_j)²."""
    with jax.default_matmul_precision("highest"):
        gram = _mT(W) @ W
        norms = jnp.linalg.norm(W, axis=-2)
        proj_sq = (_mT(unit_columns(W)) @ W) ** 2  # (ŵ_i·w_j)² [.., N, N]
        total = jnp.sum(proj_sq, axis=-1)
        interference = total - jnp.diagonal(proj_sq, axis1=-2, axis2=-1)
        return {"gram": gram, "norms": norms, "interference": interference,
                "dimensionality": norms ** 2 / total}
