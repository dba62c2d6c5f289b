"""Sparse attention decomposition (analysis/sad.py): a planted head with a known answer,
contributions that sum to rel, a float64 NumPy oracle (plain and rotated), chunking, options
and tables. The command (`toymodels sad`) is tested in test_sad.py."""

import numpy as np
import pytest

from toymodels.analysis import sad, sad_tables
from toymodels.errors import AnalysisInputError


def planted_head(D=8, H=4, P=8, T=6, seed=0):
    """One head with Ω = Σ_k σ_k u_k v_kᵀ (chosen orthonormal u, v; no biases) and prompts whose
    last token carries 3·u_k and token 2 carries 3·v_k, k = prompt % H; others are small noise."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.normal(size=(D, H)))
    V, _ = np.linalg.qr(rng.normal(size=(D, H)))
    sigma = np.array([4.0, 3.0, 2.0, 1.0])[:H]
    scale = H ** 0.25
    W_Q = (np.sqrt(sigma)[:, None] * U.T * scale)[None, None].astype(np.float32)  # [1,1,H,D]
    W_K = (np.sqrt(sigma)[:, None] * V.T * scale)[None, None].astype(np.float32)
    x = rng.normal(size=(P, T, D)) * 0.05
    planted = np.arange(P) % H
    for p, k in enumerate(planted):
        x[p, T - 1] = 3 * U[:, k]
        x[p, 2] = 3 * V[:, k]
    mask = np.ones((P, T, T), bool)
    return x[None].astype(np.float32), mask, W_Q, W_K, planted, sigma


def test_planted_head_known_answer():
    x, mask, W_Q, W_K, planted, sigma = planted_head()
    result = sad.decompose(x, mask, W_Q, W_K)
    np.testing.assert_allclose(result.S[0, 0, :4], sigma, rtol=1e-5)
    P, T = x.shape[1:3]
    prompts = np.arange(P)
    firing = result.pairs["firing"][0, prompts, 0, T - 1, 2]
    assert firing.all()
    top = sad.top_singular_index(result, 0, prompts, 0, T - 1, 2)
    np.testing.assert_array_equal(top, planted)  # the matched singular direction carries it
    at = lambda name: result.lookup(name, 0, prompts, 0, T - 1, 2)  # noqa: E731
    assert (at("n_recon") == 1).all() and (at("n_recon_rot") > 1).all()
    assert (at("sparseness") < at("sparseness_rot")).all()


def random_model(L=2, n=3, H=4, D=6, P=3, T=7, seed=1):
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.normal(size=s).astype(np.float32)  # noqa: E731
    x = f(L, P, T, D)
    lengths = np.array([T, T - 2, T - 1])[:P]
    valid = np.arange(T)[None] < lengths[:, None]
    mask = valid[:, :, None] & valid[:, None, :] & np.tril(np.ones((T, T), bool))[None]
    return x, mask, f(L, n, H, D), f(L, n, H, D), f(L, n, H), f(L, n, H)


def oracle(x, mask, W_Q, W_K, b_Q, b_K, result, frac=1.0):
    """Float64, one pair at a time: firings, rel from the raw logits, and N_recon and
    sparseness from numpy's SVD of the dense Ω̃ and from the kernel's rotated bases."""
    x, W_Q, W_K, b_Q, b_K = (np.asarray(a, np.float64) for a in (x, W_Q, W_K, b_Q, b_K))
    L, P, T, D = x.shape
    n, H = W_Q.shape[1:3]
    K = min(H, D + 1)
    rows = {}

    def nrecon(c, rel):
        reached = np.cumsum(np.sort(c)[::-1]) >= frac * rel - sad.RECON_RTOL * np.abs(c).sum()
        return int(np.argmax(reached)) + 1 if reached.any() else K

    for l in range(L):
        for h in range(n):
            A = np.concatenate([W_Q[l, h], b_Q[l, h][:, None]], 1)
            B = np.concatenate([W_K[l, h], b_K[l, h][:, None]], 1)
            U, S, Vt = np.linalg.svd(A.T @ B / np.sqrt(H))
            U, S, V = U[:, :K], S[:K], Vt[:K].T
            Ur, Sr, Vr, R = (np.asarray(a, np.float64) for a in
                             (result.U[l, h], result.S[l, h], result.V[l, h], result.R[l, h]))
            for p in range(P):
                xt = np.concatenate([x[l, p], np.ones((T, 1))], 1)
                logits = (xt @ A.T) @ (xt @ B.T).T / np.sqrt(H)
                for d in range(T):
                    vis = np.flatnonzero(mask[p, d])
                    if len(vis) < 2:
                        continue
                    z = np.exp(logits[d, vis] - logits[d, vis].max())
                    attn = z / z.sum()
                    for i, s in enumerate(vis):
                        others = vis[vis != s]
                        rel = logits[d, s] - logits[d, others].mean()
                        if s == d or attn[i] < 1 / len(vis) or rel <= 0:
                            continue
                        x_rel = xt[s] - xt[others].mean(0)
                        c = S * (xt[d] @ U) * (V.T @ x_rel)
                        c_rot = (xt[d] @ Ur @ R) * ((Sr * (Vr.T @ x_rel)) @ R)
                        rows[(l, p, h, d, s)] = dict(
                            rel=rel, c_sum=c.sum(), n_recon=nrecon(c, rel),
                            sparseness=np.abs(c).mean() ** 2 / (c ** 2).mean(),
                            n_recon_rot=nrecon(c_rot, rel), top_k=int(np.argmax(c)))
    return rows


def test_matches_float64_oracle_and_sums_to_rel():
    x, mask, W_Q, W_K, b_Q, b_K = random_model()
    result = sad.decompose(x, mask, W_Q, W_K, b_Q, b_K)
    want = oracle(x, mask, W_Q, W_K, b_Q, b_K, result)
    got = {tuple(int(i) for i in idx): idx for idx in np.argwhere(result.pairs["firing"])}
    assert set(got) == set(want) and len(want) > 20
    for key, w in want.items():
        np.testing.assert_allclose(w["c_sum"], w["rel"], rtol=1e-9)
        np.testing.assert_allclose(result.pairs["rel"][key], w["rel"], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(result.lookup("rel", *key), w["rel"], rtol=1e-4, atol=1e-4)
        assert result.lookup("n_recon", *key) == w["n_recon"], key
        assert result.lookup("n_recon_rot", *key) == w["n_recon_rot"], key  # rotated, dense
        assert result.lookup("top_k", *key) == w["top_k"], key
        np.testing.assert_allclose(result.lookup("sparseness", *key), w["sparseness"],
                                   rtol=1e-3)


def test_contributions_sum_to_rel_for_every_firing():
    x, mask, W_Q, W_K, b_Q, b_K = random_model()
    result = sad.decompose(x, mask, W_Q, W_K, b_Q, b_K)
    for l in range(x.shape[0]):
        for R in (None, result.R[l]):
            c = np.asarray(sad.contributions(x[l], mask, result.U[l], result.S[l],
                                             result.V[l], R))
            f = result.pairs["firing"][l]
            np.testing.assert_allclose(c.sum(-1)[f], result.pairs["rel"][l][f],
                                       rtol=1e-4, atol=1e-5)
    # and pass 2's Σ_k c_k, per firing, equals rel from the logits
    f = result.firings
    np.testing.assert_allclose(f["rel"], result.pairs["rel"][f["layer"], f["prompt"], f["head"],
                                                             f["d"], f["s"]], rtol=1e-4, atol=1e-5)


def test_chunking_does_not_change_results():
    x, mask, W_Q, W_K, b_Q, b_K = random_model()
    whole = sad.decompose(x, mask, W_Q, W_K, b_Q, b_K)
    tiny = sad.decompose(x, mask, W_Q, W_K, b_Q, b_K,
                         options=sad.SadOptions(chunk_elements=10, firing_batch=7))
    for k in sad.PAIR_METRICS:
        np.testing.assert_allclose(tiny.pairs[k], whole.pairs[k], rtol=1e-5, atol=1e-6)
    for k, v in whole.firings.items():
        np.testing.assert_allclose(tiny.firings[k], v, rtol=1e-5, atol=1e-6)


def test_options_threshold_and_special_tokens():
    x, mask, W_Q, W_K, b_Q, b_K = random_model()
    base = sad.decompose(x, mask, W_Q, W_K, b_Q, b_K).pairs["firing"]
    half = sad.decompose(x, mask, W_Q, W_K, b_Q, b_K,
                         options=sad.SadOptions(threshold=0.5)).pairs["firing"]
    assert half.sum() < base.sum()
    special = np.zeros(mask.shape[:2], bool)
    special[:, 0] = True
    skip = sad.decompose(x, mask, W_Q, W_K, b_Q, b_K, special=special).pairs["firing"]
    assert not skip[..., 0, :].any() and not skip[..., 0].any() and skip.sum() < base.sum()
    keep = sad.decompose(x, mask, W_Q, W_K, b_Q, b_K, special=special,
                         options=sad.SadOptions(exclude_special=False)).pairs["firing"]
    np.testing.assert_array_equal(keep, base)
    with pytest.raises(AnalysisInputError, match="threshold"):
        sad.decompose(x, mask, W_Q, W_K, options=sad.SadOptions(threshold=0.0))
    with pytest.raises(AnalysisInputError, match="mask has shape"):
        sad.decompose(x, mask[:, :-1], W_Q, W_K)


def test_tables():
    pd = pytest.importorskip("pandas")
    x, mask, W_Q, W_K, b_Q, b_K = random_model()
    result = sad.decompose(x, mask, W_Q, W_K, b_Q, b_K)
    firings = pd.DataFrame(sad_tables.firing_table(result, mask))
    heads = pd.DataFrame(sad_tables.head_table(sad_tables.firing_table(result, mask), result.S))
    assert tuple(firings.columns) == sad_tables.FIRING_COLUMNS
    assert tuple(heads.columns) == sad_tables.HEAD_COLUMNS and len(heads) == 2 * 3
    assert len(firings) == result.pairs["firing"].sum() == heads["firings"].sum()
    g = firings.groupby(["layer", "head"])
    merged = heads.set_index(["layer", "head"]).join(g["n_recon"].median().rename("m"))
    np.testing.assert_allclose(merged["median_n_recon"], merged["m"])
    np.testing.assert_allclose(merged["share_n_recon_le4_rot"],
                               g["n_recon_rot"].apply(lambda v: (v <= 4).mean()))
