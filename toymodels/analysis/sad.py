"""Sparse attention decomposition (docs/science.md: SAD): how many singular directions of a head
carry each attention score, beside a Haar-rotated control.

Shapes:
  L layers, n heads per layer, H head dim, D residual dim, K = min(H, D+1) singular triples
  P prompts, T tokens; (d, s) a query (destination) and a key (source) position
  x [L, P, T, D] each layer's attention input;  mask [P, T, T] key s visible to query d
  W_Q, W_K [L, n, H, D];  b_Q, b_K [L, n, H]
  U, V [L, n, D+1, K];  S [L, n, K];  R [L, n, K, K] (rotation control, draw 0)
  N Haar draws of the control (options.rotations);  one layer's draws [n, N, K, K]
  (SadResult.rotation_draws(l)), draw 0 = R[l]: made per layer, so N·K² per head at a time
  per-pair arrays [L, P, n, T, T];  per-firing vectors [F];  c [F, K];  per-draw [F, N]

For one head, x̃ = [x; 1] and the augmented factors Ã = [W_Q | b_Q] / H^¼,
B̃ = [W_K | b_K] / H^¼ give the logit ℓ(d, s) = x̃_dᵀ Ω̃ x̃_s with Ω̃ = Ãᵀ B̃ = Σ_k σ_k u_k v_kᵀ
(biases and the 1/√H scale inside Ω̃). With n_d the keys visible to d:
  firing        s ≠ d, visible, attention weight ≥ 1/n_d (or a fixed threshold), rel > 0,
                n_d ≥ 2, neither token special (optional)
  rel           ℓ(d, s) − mean_{s' ≠ s visible} ℓ(d, s')
  c_k           σ_k (x̃_d·u_k)(v_k·(x̃_s − mean_{s'≠s} x̃_s')),  Σ_k c_k = rel
  N_recon       smallest m with (sum of the m largest c_k) ≥ recon_frac·max(rel, 0), up to
                RECON_RTOL·Σ|c_k| of float32 round-off (non-decreasing in recon_frac);
                also at each of options.recon_fracs: columns n_recon_at_F
  sparseness    Rolls–Tovee (mean |c_k|)² / mean c_k², from 1/K (one term) to 1 (all equal)
  top_k         argmax_k c_k, the singular index carrying the largest contribution
  rotated twin  the same with c'_k = (x̃_dᵀ U R)_k (Rᵀ S Vᵀ (x̃_s − mean))_k, R Haar: every
                score is kept, any alignment of the basis with the inputs is destroyed;
                one draw per head (columns *_rot), or N (the control's spread: draw 0 is
                the single draw, bit for bit; draw r ≥ 1 of layer l from key
                fold_in(fold_in(key(seed), r), l))

Everything runs jit-compiled, batched over prompts, heads and token pairs, in two passes per
chunk of prompts: pass 1 computes every pair's attention and rel (P·n·T·(T+K) numbers, the
chunk sized by `chunk_elements`), pass 2 decomposes only the firings, `firing_batch` at a
time (sorting K contributions is the costly step, and most pairs do not fire); with N > 1
draws, a third pass decomposes the same firings under draws 1..N-1 as a scan over draws (one
draw's [firing_batch, K, K] rotations in memory at a time). Each pass is one compiled program
reused for every chunk, so memory stays bounded. Full float32 matmul precision.
RoPE (one Ω per query–key offset) is not implemented: neither BERT nor GPT-2 uses it.
"""

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from toymodels.analysis.svd import random_rotations, thin_product_svd
from toymodels.blas import one_blas_thread
from toymodels.errors import AnalysisInputError
from toymodels.pretrained.prompts import MAX_PROMPTS

RECON_RTOL = 1e-5
"""A prefix reaches rel when its sum is within RECON_RTOL·Σ|c_k| of it (float32 round-off)."""

PAIR_METRICS = ("firing", "attn", "rel")
"""Dense per-pair arrays [L, P, n, T, T]; the decomposition itself is kept for firings only."""
FIRING_METRICS = ("n_recon", "sparseness", "top_k", "n_recon_rot", "sparseness_rot",
                  "top_k_rot")
DRAW_METRICS = ("n_recon_rot", "sparseness_rot", "top_k_rot")
"""Per firing and Haar draw, [F, N] (SadResult.draws; column 0 is the *_rot column)."""
MIN_DRAWS = 20
"""A 5–95% spread needs at least this many draws (fewer: the quantiles are the extremes)."""
MAX_DRAWS = 1000


def at(name: str, frac: float) -> str:
    """Column of a metric at an extra reconstruction fraction: at('n_recon', 0.9) is
    'n_recon_at_0.9'."""
    return f"{name}_at_{frac:g}"


def estimate_bytes(L: int, n: int, P: int, T: int, D: int) -> int:
    """A rough lower bound of what decomposing P prompts of T tokens takes (documented in the
    README's Bad input): each layer's input x and its padded copy [L, P, T, D] float32, and
    the dense per-pair arrays [L, P, n, T, T] (firing bool, attention and rel float32)."""
    return L * P * T * (2 * 4 * D + n * T * 9)


def check_fits(L: int, n: int, P: int, T: int, D: int, what: str) -> None:
    """AnalysisInputError if P is over MAX_PROMPTS or estimate_bytes exceeds this machine's
    memory, before anything is built."""
    from toymodels.configs import machine_bytes

    if P > MAX_PROMPTS:
        raise AnalysisInputError(f"{what}: {P:,} prompts; at most {MAX_PROMPTS:,} are allowed")
    need, have = estimate_bytes(L, n, P, T, D), machine_bytes()
    if have is not None and need > have:
        raise AnalysisInputError(f"{what}: {P:,} prompts of {T} tokens through {L} layers x "
                                 f"{n} heads need about {need / 1e9:,.1f} GB of memory; this "
                                 f"machine has {have / 1e9:,.1f} GB: use fewer prompts")


@dataclass(frozen=True)
class SadOptions:
    threshold: float | None = None
    """A firing's attention weight must be ≥ this; None: ≥ 1/n_d (uniform over visible keys)."""
    recon_frac: float = 1.0
    """N_recon counts terms until their sum reaches recon_frac · rel."""
    exclude_special: bool = True
    """Skip firings whose query or key is a special token ([CLS], [SEP], BOS)."""
    seed: int = 0
    """Seed of the Haar rotations of the control."""
    rotations: int = 1
    """Haar draws of the rotated control per head: 1 (today's single draw), or ≥ MIN_DRAWS
    for the control's 5–95% spread. Draw 0 is always the single draw of the same seed."""
    recon_fracs: tuple[float, ...] = ()
    """Extra reconstruction fractions: N_recon at each as well (columns n_recon_at_F), for
    the head, its rotated twin and every draw; recon_frac stays the main number."""
    chunk_elements: int = 1 << 22
    """Prompts per compiled call are chosen so that P·n·T·(T + K) stays under this."""
    firing_batch: int = 1 << 13
    """Firings decomposed per compiled call (the last batch is padded)."""

    def check(self):
        from toymodels.configs import check_seed
        try:
            check_seed(self.seed, "seed")
        except ValueError as e:
            raise AnalysisInputError(str(e)) from None
        if self.threshold is not None and not 0 < self.threshold <= 1:
            raise AnalysisInputError(f"threshold must be in (0, 1], got {self.threshold}")
        for frac in (self.recon_frac, *self.recon_fracs):
            if not 0 < frac <= 1:
                raise AnalysisInputError(f"reconstruction fractions must be in (0, 1], got "
                                         f"{frac:g}")
        if len(set(self.recon_fracs)) != len(self.recon_fracs):
            raise AnalysisInputError(f"recon_fracs {self.recon_fracs} repeat a value")
        if isinstance(self.rotations, bool) or not isinstance(self.rotations, (int, np.integer)) \
                or not (self.rotations == 1 or MIN_DRAWS <= self.rotations <= MAX_DRAWS):
            raise AnalysisInputError(f"rotations must be 1 (one Haar draw) or {MIN_DRAWS}–"
                                     f"{MAX_DRAWS} (a 5–95% spread needs at least {MIN_DRAWS} "
                                     f"draws), got {self.rotations!r}")
        if self.chunk_elements < 1 or self.firing_batch < 1:
            raise AnalysisInputError("chunk_elements and firing_batch must be positive")


@dataclass
class SadResult:
    pairs: dict[str, np.ndarray]
    """PAIR_METRICS, each [L, P, n, T, T], for every (d, s)."""
    firings: dict[str, np.ndarray]
    """One entry per firing, in (layer, prompt, head, d, s) order: those five indices,
    'rel' (Σ_k c_k) and FIRING_METRICS."""
    S: np.ndarray  # [L, n, K]
    U: np.ndarray  # [L, n, D+1, K]
    V: np.ndarray  # [L, n, D+1, K]
    R: np.ndarray  # [L, n, K, K]
    options: SadOptions
    draws: dict[str, np.ndarray] | None = None
    """With options.rotations > 1: DRAW_METRICS (and n_recon_rot_at_F), each [F, N], in the
    order of firings; column 0 equals the single-draw column."""

    def rotation_draws(self, layer: int) -> np.ndarray:
        """The control's Haar rotations of one layer's heads, [n, N, K, K] (draw 0 is R[layer]);
        regenerated from options.seed, as decompose made them."""
        return np.asarray(draw_rotations(self.R[layer], jax.random.key(self.options.seed),
                                         layer, draws=self.options.rotations))

    def firing_index(self, layer, prompt, head, d, s):
        """Row of each given pair in firings (index arrays broadcast); -1 where no firing."""
        shape = self.pairs["firing"].shape
        want = np.ravel_multi_index(np.broadcast_arrays(layer, prompt, head, d, s), shape)
        have = np.ravel_multi_index(tuple(self.firings[k] for k in
                                          ("layer", "prompt", "head", "d", "s")), shape)
        if not len(have):
            return np.full(want.shape, -1)
        i = np.clip(np.searchsorted(have, want), 0, len(have) - 1)
        return np.where(have[i] == want, i, -1)

    def lookup(self, name, layer, prompt, head, d, s):
        """A firing metric at the given pairs (index arrays broadcast); -1 where no firing."""
        i = self.firing_index(layer, prompt, head, d, s)
        return np.where(i >= 0, self.firings[name][i], -1) if len(self.firings[name]) \
            else np.full(i.shape, -1)


def augmented_factors(W_Q, W_K, b_Q, b_K):
    """A, B [..., D+1, H] with Ω̃ = A Bᵀ = [W_Q | b_Q]ᵀ [W_K | b_K] / √H."""
    scale = W_Q.shape[-2] ** -0.25
    A = jnp.concatenate([W_Q, b_Q[..., None]], axis=-1) * scale
    B = jnp.concatenate([W_K, b_K[..., None]], axis=-1) * scale
    return jnp.swapaxes(A, -1, -2), jnp.swapaxes(B, -1, -2)


@jax.jit
def head_bases(W_Q, W_K, b_Q, b_K, key):
    """SVD of every head's augmented Ω̃ from its thin factors, and a Haar rotation per head:
    U, V [..., D+1, K], S [..., K], R [..., K, K]."""
    with jax.default_matmul_precision("highest"):
        A, B = augmented_factors(W_Q, W_K, b_Q, b_K)
        if A.shape[-1] < A.shape[-2]:
            U, S, V = thin_product_svd(A, B)
        else:  # H ≥ D+1: the dense route, truncated to K = D+1
            U, S, V_t = jnp.linalg.svd(A @ jnp.swapaxes(B, -1, -2))
            U, S, V = U[..., :A.shape[-2]], S[..., :A.shape[-2]], jnp.swapaxes(V_t, -1, -2)
        R = random_rotations(key, jnp.ones(S.shape, bool))
        return U, S, V, R


@partial(jax.jit, static_argnames=("draws",))
def draw_rotations(R, key, layer, *, draws):
    """One layer's draws [n, N, K, K] from its single-draw R [n, K, K]: draw 0 is R, draw
    r ≥ 1 one Haar rotation per head from fold_in(fold_in(key, r), layer)."""
    shape = R.shape[:-1]
    more = jax.vmap(lambda r: random_rotations(
        jax.random.fold_in(jax.random.fold_in(key, r), layer),
        jnp.ones(shape, bool)))(jnp.arange(1, draws))
    return jnp.moveaxis(jnp.concatenate([R[None], more], axis=0), 0, -3)


def _coords(x, U, S, V):
    """Query coordinates a = x̃ U and σ-weighted key coordinates b = S Vᵀ x̃, [P, n, T, K]."""
    xt = jnp.concatenate([x, jnp.ones(x.shape[:-1] + (1,), x.dtype)], axis=-1)
    a = jnp.einsum("ptd,ndk->pntk", xt, U)
    b = jnp.einsum("ptd,ndk->pntk", xt, V) * S[None, :, None, :]
    return a, b


def contributions(x, mask, U, S, V, R=None):
    """Dense oracle-style c [P, n, T, T, K] for every (d, s) of one layer (rotated by
    R [n, K, K] if given). x [P, T, D], mask [P, T, T], U, V [n, D+1, K], S [n, K]."""
    a, b = _coords(x, U, S, V)
    m = mask.astype(b.dtype)
    total = jnp.einsum("pds,pnsk->pndk", m, b)  # Σ over keys visible to d
    others = jnp.maximum(jnp.sum(m, axis=-1) - 1, 1)[:, None, :, None, None]
    b_rel = b[:, :, None, :, :] - (total[:, :, :, None, :] - b[:, :, None, :, :]) / others
    if R is not None:
        a = jnp.einsum("pntk,nkj->pntj", a, R)
        b_rel = jnp.einsum("pndsk,nkj->pndsj", b_rel, R)
    return a[:, :, :, None, :] * b_rel


def recon_metrics(c, rel, recon_frac, extra_fracs=()):
    """N_recon, Rolls–Tovee sparseness and the top index of contributions c [..., K], then
    N_recon at each of extra_fracs. rel is clamped at 0 (a float32 sum a hair below 0 gets
    N_recon 1 at every fraction), so N_recon never falls as the fraction grows."""
    prefix = jnp.cumsum(-jnp.sort(-c, axis=-1), axis=-1)
    slack = RECON_RTOL * jnp.sum(jnp.abs(c), axis=-1)
    K = c.shape[-1]

    def n_recon(frac):
        reached = prefix >= (frac * jnp.maximum(rel, 0.0) - slack)[..., None]
        return jnp.where(jnp.any(reached, axis=-1), jnp.argmax(reached, axis=-1) + 1,
                         K).astype(jnp.int16)

    sparseness = jnp.mean(jnp.abs(c), axis=-1) ** 2 / jnp.maximum(jnp.mean(c ** 2, axis=-1),
                                                                  1e-30)
    return (n_recon(recon_frac), sparseness, jnp.argmax(c, axis=-1).astype(jnp.int16),
            *(n_recon(f) for f in extra_fracs))


@partial(jax.jit, static_argnames=("threshold",))
def _pass_pairs(x, mask, ok, U, S, V, R, *, threshold):
    """Pass 1, a chunk of prompts of one layer: every pair's attention and rel, which pairs
    fire, and the coordinates pass 2 needs: a, b, Σ_visible b and their rotated twins."""
    with jax.default_matmul_precision("highest"):
        T = x.shape[1]
        a, b = _coords(x, U, S, V)
        m = mask.astype(x.dtype)
        b_sum = jnp.einsum("pds,pnsk->pndk", m, b)
        logits = jnp.einsum("pntk,pnsk->pnts", a, b)
        attn = jax.nn.softmax(jnp.where(mask[:, None], logits, -1e30), axis=-1)
        n_vis = jnp.sum(m, axis=-1)[:, None, :, None]  # [P, 1, T, 1]
        row_sum = jnp.sum(jnp.where(mask[:, None], logits, 0.0), axis=-1, keepdims=True)
        rel = logits - (row_sum - logits) / jnp.maximum(n_vis - 1, 1)
        thr = 1.0 / jnp.maximum(n_vis, 1) if threshold is None else threshold
        firing = (mask[:, None] & ~jnp.eye(T, dtype=bool)[None, None] & (n_vis >= 2)
                  & (attn >= thr) & (rel > 0) & (ok[:, None, :, None] & ok[:, None, None, :]))
        rotate = partial(jnp.einsum, "pntk,nkj->pntj")
        coords = (a, b, b_sum, rotate(a, R), rotate(b, R), rotate(b_sum, R))
        return dict(firing=firing, attn=attn, rel=rel), coords, n_vis[:, 0, :, 0]


@partial(jax.jit, static_argnames=("recon_frac", "extra_fracs"))
def _pass_firings(coords, n_vis, p, h, d, s, *, recon_frac, extra_fracs=()):
    """Pass 2: decompose a batch of firings (index vectors p, h, d, s into the chunk)."""
    with jax.default_matmul_precision("highest"):
        others = jnp.maximum(n_vis[p, d] - 1, 1)[:, None]
        out = {}
        names = ("n_recon", "sparseness", "top_k") + tuple(at("n_recon", f) for f in extra_fracs)
        for suffix, (a, b, b_sum) in (("", coords[:3]), ("_rot", coords[3:])):
            b_rel = b[p, h, s] - (b_sum[p, h, d] - b[p, h, s]) / others
            c = a[p, h, d] * b_rel
            rel = jnp.sum(c, axis=-1)
            if not suffix:
                out["rel"] = rel
            for k, v in zip(names, recon_metrics(c, rel, recon_frac, extra_fracs)):
                out[k.replace("n_recon", "n_recon" + suffix, 1) if k.startswith("n_recon_at")
                    else k + suffix] = v
        return out


@partial(jax.jit, static_argnames=("recon_frac", "extra_fracs"))
def _pass_draws(coords, n_vis, R, p, h, d, s, *, recon_frac, extra_fracs=()):
    """Pass 3: the rotated control of a batch of firings under draws R [N, n, K, K], a scan
    over draws: DRAW_METRICS (and n_recon_rot_at_F) each [N, B]. Rotates the firing's own
    coordinates, so only one draw's [B, K, K] rotations are held at a time."""
    with jax.default_matmul_precision("highest"):
        a, b, b_sum = coords[:3]
        others = jnp.maximum(n_vis[p, d] - 1, 1)[:, None]
        a_d, b_s, b_d = a[p, h, d], b[p, h, s], b_sum[p, h, d]  # [B, K]
        rotate = partial(jnp.einsum, "bk,bkj->bj")

        def one_draw(R_r):  # [n, K, K]
            R_h = R_r[h]
            b_s_r = rotate(b_s, R_h)
            c = rotate(a_d, R_h) * (b_s_r - (rotate(b_d, R_h) - b_s_r) / others)
            return recon_metrics(c, jnp.sum(c, axis=-1), recon_frac, extra_fracs)

        out = jax.lax.map(one_draw, R)
        names = DRAW_METRICS + tuple(at("n_recon_rot", f) for f in extra_fracs)
        return dict(zip(names, out))


def _check_inputs(x, mask, W_Q, W_K, b_Q, b_K, special):
    if x.ndim != 4 or W_Q.ndim != 4:
        raise AnalysisInputError(f"x must be [L, P, T, D] and W_Q [L, n, H, D]; got "
                                 f"{x.shape} and {W_Q.shape}")
    L, P, T, D = x.shape
    if W_Q.shape != W_K.shape or W_Q.shape[0] != L or W_Q.shape[-1] != D:
        raise AnalysisInputError(f"W_Q {W_Q.shape} and W_K {W_K.shape} must be [L, n, H, D] "
                                 f"with L={L}, D={D} from x {x.shape}")
    for name, b in (("b_Q", b_Q), ("b_K", b_K)):
        if b.shape != W_Q.shape[:-1]:
            raise AnalysisInputError(f"{name} has shape {b.shape}, expected {W_Q.shape[:-1]}")
    if mask.shape != (P, T, T):
        raise AnalysisInputError(f"mask has shape {mask.shape}, expected {(P, T, T)}")
    if special is not None and special.shape != (P, T):
        raise AnalysisInputError(f"special has shape {special.shape}, expected {(P, T)}")


@one_blas_thread
def decompose(x, mask, W_Q, W_K, b_Q=None, b_K=None, *, special=None,
              options: SadOptions = SadOptions(), progress: bool = False) -> SadResult:
    """Decompose every firing of every head (model-agnostic).

    x [L, P, T, D]: each layer's attention input as the head sees it; mask [P, T, T]: which
    keys each query sees (False rows for padding); W_Q, W_K [L, n, H, D]; b_Q, b_K [L, n, H]
    (None: zero); special [P, T] bool: tokens excluded from firings if options say so.

    Two compiled passes per chunk of prompts: every pair's attention and rel (cheap,
    [P, n, T, T]), then the contributions of the firings only, in fixed-size batches."""
    options.check()
    x = np.asarray(x, np.float32)
    mask = np.asarray(mask, bool)
    W_Q, W_K = np.asarray(W_Q, np.float32), np.asarray(W_K, np.float32)
    b_Q = np.zeros(W_Q.shape[:-1], np.float32) if b_Q is None else np.asarray(b_Q, np.float32)
    b_K = np.zeros(W_K.shape[:-1], np.float32) if b_K is None else np.asarray(b_K, np.float32)
    _check_inputs(x, mask, W_Q, W_K, b_Q, b_K, special)
    L, P, T, D = x.shape
    n = W_Q.shape[1]
    key = jax.random.key(options.seed)
    U, S, V, R = (np.asarray(a) for a in head_bases(W_Q, W_K, b_Q, b_K, key))
    K = S.shape[-1]
    N = options.rotations
    fracs = tuple(float(f) for f in options.recon_fracs)
    ok = np.ones((P, T), bool) if special is None or not options.exclude_special \
        else ~np.asarray(special, bool)

    p_chunk = max(1, min(P, options.chunk_elements // (n * T * (T + K))))
    P_pad = -(-P // p_chunk) * p_chunk
    x_pad = np.zeros((L, P_pad, T, D), np.float32)
    x_pad[:, :P] = x
    mask_pad = np.zeros((P_pad, T, T), bool)
    mask_pad[:P] = mask
    ok_pad = np.zeros((P_pad, T), bool)
    ok_pad[:P] = ok

    pairs = {"firing": np.zeros((L, P, n, T, T), bool), "attn": np.zeros((L, P, n, T, T),
                                                                          np.float32),
             "rel": np.zeros((L, P, n, T, T), np.float32)}
    extra = tuple(at(k, f) for f in fracs for k in ("n_recon", "n_recon_rot"))
    found = {k: [] for k in ("layer", "prompt", "head", "d", "s", "rel") + FIRING_METRICS
             + extra}
    draw_names = DRAW_METRICS + tuple(at("n_recon_rot", f) for f in fracs)
    more = {k: [] for k in draw_names}
    B = options.firing_batch
    tasks = [(l, p) for l in range(L) for p in range(0, P_pad, p_chunk)]
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(tasks), desc="sad", unit="chunk", leave=False)
    R_more, R_layer = None, None
    for l, p0 in tasks:
        ps = slice(p0, p0 + p_chunk)
        if N > 1 and R_layer != l:  # pass 3 takes draws 1..N-1 [N-1, n, K, K] of this layer
            R_more = np.moveaxis(np.asarray(draw_rotations(R[l], key, l, draws=N))[:, 1:], 1, 0)
            R_layer = l
        dense, coords, n_vis = _pass_pairs(x_pad[l, ps], mask_pad[ps], ok_pad[ps], U[l], S[l],
                                           V[l], R[l], threshold=options.threshold)
        keep = slice(0, max(0, min(p_chunk, P - p0)))
        dense = {k: np.asarray(v)[keep] for k, v in dense.items()}
        for k, v in dense.items():
            pairs[k][l, p0:p0 + keep.stop] = v
        idx = np.nonzero(dense["firing"])  # (p, h, d, s) in C order
        count = len(idx[0])
        for start in range(0, count, B):
            batch = [np.zeros(B, np.int32) for _ in range(4)]
            m = min(B, count - start)
            for j in range(4):
                batch[j][:m] = idx[j][start:start + m]
            res = _pass_firings(coords, n_vis, *batch, recon_frac=options.recon_frac,
                                extra_fracs=fracs)
            for k, v in res.items():
                found[k].append(np.asarray(v)[:m])
            if R_more is not None:
                res = _pass_draws(coords, n_vis, R_more, *batch,
                                  recon_frac=options.recon_frac, extra_fracs=fracs)
                for k, v in res.items():
                    more[k].append(np.asarray(v)[:, :m].T)  # [m, N-1]
        found["layer"].append(np.full(count, l, np.int32))
        for name, i in zip(("prompt", "head", "d", "s"), idx):
            found[name].append((i + (p0 if name == "prompt" else 0)).astype(np.int32))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    dtypes = {"rel": np.float32, "sparseness": np.float32, "sparseness_rot": np.float32}
    firings = {k: np.concatenate(v) if v else np.zeros(0, dtypes.get(k, np.int32))
               for k, v in found.items()}
    draws = None
    if N > 1:  # column 0: the single draw's column itself
        draws = {k: np.concatenate([firings[k][:, None],
                                    np.concatenate(more[k]) if more[k]
                                    else np.zeros((0, N - 1), firings[k].dtype)], axis=1)
                 for k in draw_names}
    return SadResult(pairs=pairs, firings=firings, S=S, U=U, V=V, R=R, options=options,
                     draws=draws)


def top_singular_index(result: SadResult, layer, prompt, head, d, s, rotated: bool = False):
    """The singular index k carrying the largest contribution c_k of the given pairs (index
    arrays broadcast together): for toy models, compare with the index matched to a planted
    pair. Pairs that are not firings get -1."""
    return result.lookup("top_k_rot" if rotated else "top_k", layer, prompt, head, d, s)
