"""Toy transformers on the retrieval tasks: the training hooks of the family, and the
analysis of trained parameters.

Shapes:
  I instances, L layers, n heads per layer, N features, D residual width, H head dim
  accuracy [.., L, n]: attention mass the query puts on the token it should read

In training, every record point stores the parameters and measures each head's attention
accuracy on a fixed
evaluation batch and its alignment: for QK, each planted pair's best significant
singular index (min of |cos(E_i, u_k)| and |cos(E_j, v_k)|), averaged over pairs; for
OV, the same with (E_v, E_v). After training, `analyze` gives the full tables
(Hungarian-matched, with the random-rotation baseline) for every layer and head, finds
the head that solves the task from its attention accuracy, and sets the unused heads'
alignment beside the range that random rotations of their own singular bases give.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from toymodels.analysis.alignment import analyze as analyze_heads
from toymodels.analysis.head_rows import match
from toymodels.analysis.head_rows import matched_alignment as pair_alignment
from toymodels.analysis.svd import (DEFAULT_REL_TOL, best_index_cosines, feature_cosines,
                                    ov_svd, qk_svd)
from toymodels.configs import TransformerConfig, TransformerInstance
from toymodels.models.transformer import Transformer, rope_offset_queries
from toymodels.tasks.features import anisotropic_features
from toymodels.tasks.retrieval import attention_accuracy, sample, task_loss

CURVES = ("task", "attention_accuracy")
EVAL_STEP = 2 ** 31 - 1
"""The evaluation batch is drawn at this step id of an instance's data stream (training
uses 0..steps-1), so it is fixed by the seed and never trained on."""
SOLVED_ACCURACY = 0.9
"""A head solves the task when it puts at least this much attention on the right token."""


def build(cfg: TransformerConfig, rngs: nnx.Rngs) -> Transformer:
    return Transformer(N=cfg.N, D=cfg.D, H=cfg.H, n_heads=cfg.n_heads, n_layers=cfg.n_layers,
                       T=cfg.T, mlp=cfg.mlp, layernorm=cfg.layernorm, bias=cfg.bias,
                       positions=cfg.positions, rope_base=cfg.rope_base,
                       init_scale=cfg.init_scale, rngs=rngs)


def fixed_frame(cfg: TransformerConfig, seed: int) -> np.ndarray:
    """The fixed embedding E [D, N] of an instance: a frame with anisotropy cfg.anisotropy,
    drawn from the seed alone; with frame='axis', feature i on axis i (E = I)."""
    if cfg.frame == "axis":
        return np.eye(cfg.D, cfg.N, dtype=np.float32)
    return anisotropic_features(np.random.default_rng([seed, 7]), cfg.N, cfg.D,
                                cfg.anisotropy).astype(np.float32)


def host_init(cfg: TransformerConfig, instances) -> dict:
    if cfg.embedding != "fixed":
        return {}
    return {"E": np.stack([fixed_frame(cfg, inst.seed) for inst in instances])}


def frozen(cfg: TransformerConfig) -> tuple[str, ...]:
    return ("E",) if cfg.embedding == "fixed" else ()


def hparams(cfg: TransformerConfig, instances: list[TransformerInstance]) -> dict:
    return {"learning_rate": jnp.asarray([i.learning_rate for i in instances], jnp.float32),
            "p_active": jnp.asarray([i.p_active for i in instances], jnp.float32)}


def program_key(cfg: TransformerConfig) -> TransformerConfig:
    defaults = TransformerConfig()
    return cfg.replace(steps=cfg.chunk_steps, record_points=min(cfg.record_points, 1),
                       record_spacing="log", learning_rate=defaults.learning_rate,
                       p_active=defaults.p_active)


def _query_output(model, cfg, f):
    out, cache = model(f)
    return model.readout(out[:, -1], cfg.value_features), cache


def loss_fn(cfg: TransformerConfig):
    def loss(model, key, hp):
        batch = sample(key, cfg, hp["p_active"])
        output, cache = _query_output(model, cfg, batch["f"])
        acc = jnp.stack([attention_accuracy(a, batch["key_pos"], batch["asked"])
                         for a in cache["attn"]])
        loss = task_loss(output, batch["target"])
        return loss, {"task": loss, "attention_accuracy": jnp.max(acc)}
    return loss


def seen_features(cfg: TransformerConfig, E, ln1_g=None):
    """The feature dictionary as each layer's heads see it: E [.., D, N] -> [.., L, D, N].
    With pre-LayerNorm a head reads LN(x) = g ⊙ (x − mean(x)) / std(x) (+ a constant), so a
    feature's direction there is g ⊙ (E_i − mean(E_i)); the per-token 1/std only scales."""
    E = jnp.asarray(E)
    if not cfg.layernorm:
        return jnp.broadcast_to(E[..., None, :, :], E.shape[:-2] + (cfg.n_layers,) + E.shape[-2:])
    centred = E - E.mean(axis=-2, keepdims=True)
    return jnp.asarray(ln1_g)[..., :, :, None] * centred[..., None, :, :]


def head_factors(cfg: TransformerConfig, W_Q):
    """W_Q as the analysis should read it: for the RoPE task, the per-offset query map at
    the task's offset (Ω_δ = W_Qᵀ R_{−δ} W_K); otherwise W_Q itself."""
    if cfg.task == "rope":
        return rope_offset_queries(W_Q, [cfg.offset], cfg.rope_base)[..., 0, :, :]
    return W_Q


def _pair_alignment(E, U, S, V, template):
    """Mean over pairs of min(|cos(E_i, u_k)|, |cos(E_j, v_k)|) at each pair's best
    significant k (analysis.svd.best_index_cosines)."""
    cos_u, cos_v = feature_cosines(E, U, V)  # [.., N, K]
    cu, cv = best_index_cosines(cos_u, cos_v, S, [i for i, _, _ in template],
                                [j for _, j, _ in template])
    return jnp.minimum(cu, cv).mean(-1)


def recorder(cfg: TransformerConfig):
    def record(model, hp):
        batch = sample(jax.random.fold_in(hp["data_key"], EVAL_STEP), cfg, hp["p_active"])
        _, cache = model(batch["f"])
        E = seen_features(cfg, model.E[...], model.ln1_g[...] if cfg.layernorm else None)
        E = E[:, None]  # [L, 1, D, N]: one dictionary per layer, shared by its heads
        W_Q = head_factors(cfg, model.W_Q[...])
        U, S, V = qk_svd(W_Q, model.W_K[...])
        U_o, S_o, V_o = ov_svd(model.W_V[...], model.W_O[...])
        # Every parameter too (a few thousand numbers per point), so that analyses that need
        # the whole model at a step (sparse attention decomposition over training) can
        # rebuild it: dynamics.npz's param_<name> [I, R, ...].
        snapshot = {f"param_{k}": v for k, v in nnx.to_pure_dict(nnx.state(model)).items()}
        return {"accuracy": jnp.stack([attention_accuracy(a, batch["key_pos"], batch["asked"])
                                       for a in cache["attn"]]),  # [L, n]
                "qk_cos": _pair_alignment(E, U, S, V, cfg.qk_template),
                "ov_cos": _pair_alignment(E, U_o, S_o, V_o, cfg.ov_template), **snapshot}
    return record


def divergence_loss(curves: dict, inst) -> np.ndarray:
    return curves["task"]


# ---- after training ---------------------------------------------------------------


def evaluate(cfg: TransformerConfig, params: dict, instances) -> dict:
    """Task loss [I] and attention accuracy [I, L, n] on each instance's evaluation batch."""
    graphdef, state = nnx.split(nnx.eval_shape(lambda: build(cfg, nnx.Rngs(0))))

    def one_instance(pure, seed, p_active):
        own = jax.tree.map(lambda x: x, state)  # a copy: replace_by_pure_dict writes in place
        nnx.replace_by_pure_dict(own, pure)
        model = nnx.merge(graphdef, own)
        # The instance's data key (train.instance_keys), at the evaluation step id, as the
        # recorder uses it during training.
        key = jax.random.fold_in(jax.random.split(jax.random.key(seed))[1], EVAL_STEP)
        batch = sample(key, cfg, p_active)
        output, cache = _query_output(model, cfg, batch["f"])
        return task_loss(output, batch["target"]), jnp.stack(
            [attention_accuracy(a, batch["key_pos"], batch["asked"]) for a in cache["attn"]])

    pure = {k: jnp.asarray(v) for k, v in params.items()}
    loss, acc = jax.jit(jax.vmap(one_instance))(
        pure, jnp.asarray([i.seed for i in instances], jnp.uint32),
        jnp.asarray([i.p_active for i in instances], jnp.float32))
    return {"task_loss": np.asarray(loss), "accuracy": np.asarray(acc)}


def analyze(cfg: TransformerConfig, params: dict, rel_tol: float = DEFAULT_REL_TOL,
                   seed: int = 0):
    """Full metric tables for every instance, layer and head: QK against the planted
    pairs (at the task's offset with RoPE), OV against the value features."""
    W_Q = np.asarray(head_factors(cfg, jnp.asarray(params["W_Q"])))
    return analyze_heads(features_of(cfg, params), W_Q=W_Q, W_K=params["W_K"], W_V=params["W_V"],
                   W_O=params["W_O"], template=cfg.qk_template, ov_template=cfg.ov_template,
                   axes=("instance", "layer", "head"), rel_tol=rel_tol, seed=seed,
                   layout="toymodels")


def rope_offsets(cfg: TransformerConfig, params: dict) -> dict:
    """For RoPE: each head's per-offset Ω_δ (δ = 0..T−1) against the planted pairs: the
    matched |cos| (mean over pairs of min of both sides) qk_cos, σ_1, and the signed
    planted logit E_iᵀ Ω_δ E_j / √H (mean over pairs) that decides which offset wins;
    each [I, L, n, T]."""
    offsets = list(range(cfg.T))
    W_Q = np.asarray(rope_offset_queries(jnp.asarray(params["W_Q"]), offsets, cfg.rope_base))
    W_K = np.broadcast_to(params["W_K"][..., None, :, :], W_Q.shape)
    features = features_of(cfg, params)  # [I, L, D, N]
    res = analyze_heads(features, W_Q=W_Q, W_K=W_K, template=cfg.qk_template,
                  axes=("instance", "layer", "head", "offset"), layout="toymodels")
    shape = W_Q.shape[:4]
    cos = np.zeros(shape)
    sigma = np.zeros(shape)
    for r in res.heads:
        idx = (r["instance"], r["layer"], r["head"], r["offset"])
        cos[idx] = _nan(r["min_matched_cos"])
        sigma[idx] = r["sigma_1"]
    q = features[..., list(cfg.queries)]  # [I, L, D, P]
    k = features[..., list(cfg.keys)]
    logit = np.einsum("ilnohd,ildp,ilnohe,ilep->ilnop", W_Q, q, W_K, k) / np.sqrt(cfg.H)
    return {"offsets": np.asarray(offsets), "qk_cos": cos, "sigma_1": sigma,
            "planted_logit": logit.mean(-1)}


def features_of(cfg: TransformerConfig, params: dict) -> np.ndarray:
    """Per instance and layer, the dictionary the analysis compares heads with [I, L, D, N]."""
    return np.asarray(seen_features(cfg, params["E"], params.get("ln1_g")))


def _nan(x):
    return np.nan if x is None else x


def matched_alignment(cos_u, cos_v, sig, template) -> float:
    """Mean over pairs of min(|cos_u|, |cos_v|) under the Hungarian assignment of pairs to
    significant singular indices; a pair left without one counts 0."""
    q = np.array([i for i, _, _ in template])
    k = np.array([j for _, j, _ in template])
    cu, cv = cos_u[q][:, sig], cos_v[k][:, sig]
    if cu.shape[1] == 0:
        return 0.0
    cols = match(cu * cv)
    rows, at = np.arange(len(q)), np.maximum(cols, 0)
    return pair_alignment(cu[rows, at], cv[rows, at], cols >= 0)


def baseline_range(E, W_Q, W_K, template, n_rotations: int = 200, seed: int = 0,
                   quantiles=(0.05, 0.95)):
    """The range of matched alignment that Haar-random rotations of a head's own significant
    singular bases give (float64): (low, high) quantiles over n_rotations draws."""
    Omega = W_Q.T.astype(np.float64) @ W_K.astype(np.float64)
    U, S, Vt = np.linalg.svd(Omega)
    K = min(W_Q.shape)
    U, S, V = U[:, :K], S[:K], Vt[:K].T
    sig = S > DEFAULT_REL_TOL * S[0]
    r = int(sig.sum())
    E_unit = E / np.linalg.norm(E, axis=0, keepdims=True)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_rotations):
        Ru, Rv = (np.linalg.qr(rng.standard_normal((r, r)))[0] for _ in range(2))
        Ur, Vr = U[:, :r] @ Ru, V[:, :r] @ Rv
        values.append(matched_alignment(np.abs(E_unit.T @ Ur), np.abs(E_unit.T @ Vr),
                                        np.ones(r, bool), template))
    return tuple(float(np.quantile(values, q)) for q in quantiles)
