"""The paper's toy model on its supervised-attention task, as a family: training hooks,
the analysis of a trained head, its summary record, sweep rows and console table.

Shapes: I instances, N features, D residual dim, H head dim, K = min(H, D) singular pairs.
"""

import jax.numpy as jnp
import numpy as np
from flax import nnx

from toymodels.analysis.svd import DEFAULT_REL_TOL
from toymodels.configs import Instance, ToyConfig
from toymodels.families import (ALIGNED, FOIL_DRAWS, FOIL_QUANTILE, Measured, final_losses,
                                foil_passes, random_twin)
from toymodels.training.divergence import DIVERGENCE_FACTOR, mark_diverged, null_pair
from toymodels.training.dynamics import first_crossings, make_recorder
from toymodels.models.toy import ToyModel
from toymodels.tasks.toy import (attention_loss, importance_weights, reconstruction_loss,
                                 sample_batch, template_matrix)

CURVES = ("recon", "attn")


def build(cfg: ToyConfig, rngs: nnx.Rngs) -> ToyModel:
    return ToyModel(cfg.N, cfg.D, cfg.H, init_scale=cfg.init_scale, rngs=rngs)


def host_init(cfg: ToyConfig, instances) -> dict:
    return {}


def frozen(cfg: ToyConfig) -> tuple[str, ...]:
    return (() if cfg.train_features else ("W",)) + (() if cfg.train_head else ("W_Q", "W_K"))


def hparams(cfg: ToyConfig, instances: list[Instance]) -> dict:
    def vector(p):
        return p if isinstance(p, tuple) else (float(p),) * cfg.N
    return {
        "lam": jnp.asarray([inst.lam for inst in instances], jnp.float32),
        "learning_rate": jnp.asarray([inst.learning_rate for inst in instances], jnp.float32),
        "p_active": jnp.asarray([vector(inst.p_active) for inst in instances], jnp.float32),
        "target_scale": jnp.asarray([inst.target_scale for inst in instances], jnp.float32),
    }


def program_key(cfg: ToyConfig) -> ToyConfig:
    defaults = ToyConfig()
    return cfg.replace(steps=cfg.chunk_steps, p_active=defaults.p_active,
                       record_points=min(cfg.record_points, 1), record_spacing="log",
                       **{name: getattr(defaults, name) for name in
                          ("lam", "learning_rate", "target_scale")})


def loss_fn(cfg: ToyConfig):
    T = jnp.asarray(template_matrix(cfg.template, cfg.N))
    importance = jnp.asarray(importance_weights(cfg))

    structure = cfg.structure

    def loss(model, key, hp):
        f_q, f_k = sample_batch(key, hp["p_active"], cfg.batch_size, cfg.m, cfg.tokens,
                                structure)
        recon = reconstruction_loss(model, f_q, f_k, importance)
        attn = attention_loss(model, f_q, f_k, T, hp["target_scale"], cfg.attn_loss)
        return recon + hp["lam"] * attn, {"recon": recon, "attn": attn}

    return loss


def recorder(cfg: ToyConfig):
    record = make_recorder(cfg)
    return lambda model, hp: record(model.W[...], model.W_Q[...], model.W_K[...])


def divergence_loss(curves: dict, inst) -> np.ndarray:
    """The training loss of one instance, for the divergence rule."""
    return curves["recon"] + inst.lam * curves["attn"]



# ---- after training ---------------------------------------------------------------

SUMMARY_PAIR_KEYS = ("query_feature", "key_feature", "target", "sv_index", "cos_query_u",
                     "cos_key_v", "sigma", "significant")
VERDICT_KEYS = ("min_matched_cos", "n_pairs_matched", "n_pairs_aligned",
                "foil_min_matched_cos", "foil_mean_matched_cos", "foil_n_pairs_matched",
                "foil_n_pairs_aligned", "foil_passes_pairs", "foil_passes_aligned")
"""An instance's verdicts beside their foil, in its summary record and its sweep row: the
head's worst pair (min over pairs of min(|cos_u|, |cos_v|), unmatched 0), how many pairs
take a significant singular index (the table's "pairs") and how many of those are aligned
(>= families.ALIGNED); then the same on the head's random twin (families.random_twin:
Haar-random singular vectors with the head's singular values; 95% quantile of its draws).
foil_passes_pairs: the twin matches as many pairs as the head (always, where every pair
finds a significant index: the count alone cannot reject a wrong head);
foil_passes_aligned: the twin's worst pair reaches the bar (a defect of the check)."""


def verdicts(cfg: ToyConfig, W, W_Q, W_K, head: dict, pairs: list, seed) -> dict:
    """One instance's VERDICT_KEYS: its head's analysis row and pair rows, and its random
    twin built from W [D, N], W_Q, W_K [H, D] (seeded by seed)."""
    foil = random_twin(W, np.asarray(W_Q, np.float64).T @ np.asarray(W_K, np.float64),
                       cfg.template, seed=[seed, 19])
    aligned = sum(p["sv_index"] is not None and min(p["cos_query_u"], p["cos_key_v"]) >= ALIGNED
                  for p in pairs)
    n_matched = head.get("n_pairs_matched")
    return {"min_matched_cos": head.get("min_matched_cos"), "n_pairs_matched": n_matched,
            "n_pairs_aligned": aligned if foil["matched"] is not None else None,
            "foil_min_matched_cos": foil["min_matched"],
            "foil_mean_matched_cos": foil["matched"],
            "foil_n_pairs_matched": foil["n_matched"], "foil_n_pairs_aligned": foil["n_aligned"],
            "foil_passes_pairs": (None if foil["n_matched"] is None or n_matched is None
                                  else bool(foil["n_matched"] >= n_matched)),
            "foil_passes_aligned": foil_passes(foil["min_matched"])}


def analyze(cfg: ToyConfig, params: dict, rel_tol: float = DEFAULT_REL_TOL, seed: int = 0):
    """The full metric set of every instance's head (analysis.alignment.analyze)."""
    from toymodels.analysis.alignment import analyze as analyze_heads
    return analyze_heads(params["W"], W_Q=params["W_Q"], W_K=params["W_K"],
                         template=cfg.template, axes=("instance",), rel_tol=rel_tol, seed=seed,
                         layout="toymodels")


def measure(cfg: ToyConfig, instances: list[Instance], result, params: dict,
            diverged: list) -> Measured:
    """Per instance: its summary record (losses, spectrum, matched pairs, dynamics
    crossings) and its sweep row (losses and its head's row of the analysis)."""
    analysis = analyze(cfg, params)
    crossings = first_crossings(cfg, result.dynamics) if result.dynamics else None
    heads = {row["instance"]: row for row in analysis.heads}
    records, rows, pair_rows = [], [], []
    for n, inst in enumerate(instances):
        record = {"seed": inst.seed, "overrides": inst.overrides(),
                  "final_loss": final_losses(cfg, result.curves, n),
                  "singular_values": [float(s) for s in analysis.arrays["qk_S"][n]],
                  "pairs": [{k: p[k] for k in SUMMARY_PAIR_KEYS}
                            for p in analysis.pairs if p["instance"] == n]}
        if crossings is not None:
            record["dynamics"] = crossings[n]
        ok = diverged[n] is None
        verdict = verdicts(cfg, params["W"][n], params["W_Q"][n], params["W_K"][n], heads[n],
                           [p for p in analysis.pairs if p["instance"] == n], inst.seed)
        record |= verdict if ok else dict.fromkeys(verdict)
        records.append(record)
        row = {**{f"final_{k}": v for k, v in record["final_loss"].items()},
               **{k: v for k, v in heads[n].items() if k not in ("instance", "circuit")},
               **verdict}
        rows.append(row if ok else dict.fromkeys(row))
        pairs = [{k: v for k, v in p.items() if k not in ("instance", "circuit")}
                 for p in analysis.pairs if p["instance"] == n]
        pair_rows.append([{"lam": inst.lam, "learning_rate": inst.learning_rate,
                           "target_scale": inst.target_scale,
                           **(p if ok else null_pair(p))} for p in pairs])
    records = mark_diverged({"instances": records}, diverged)["instances"]
    arrays = {"singular_values": analysis.arrays["qk_S"],
              "cos_u": analysis.arrays["qk_cos_u"], "cos_v": analysis.arrays["qk_cos_v"]}
    return Measured(records=records, rows=rows, pair_rows=pair_rows, analysis=analysis,
                    arrays=arrays)


def templates(cfg: ToyConfig) -> dict:
    return {"template": cfg.to_dict()["template"]}


def figure(run, path=None):
    """The run's figure (a Run or a run directory): |cos| maps and spectra."""
    from toymodels.plots import plot_alignment
    return plot_alignment(run, path)


def planted_sequences(cfg: ToyConfig, n: int, seed: int) -> dict:
    """n sequences of the toy's own tokens, each with one planted firing whose key is known:
    f [n, m + 1, N] (keys 0..m-1, the query last), pair [n] (template pair p = prompt mod
    the number of pairs), key_pos [n]. Tokens come from the toy's own distribution
    (tasks/toy.sample_batch, p_active and structure of cfg); then the query's feature of
    pair p is set active and the key feature of pair p sits on key key_pos only (a U[0, 1]
    magnitude, as any active feature; one-hot tokens become that feature). So this is the
    task's distribution given that the query asks and exactly one key answers."""
    import jax

    if not cfg.template:
        raise ValueError("the run has no template, so no planted firing to decompose")
    key = jax.random.fold_in(jax.random.key(seed), 2 ** 30)  # not a training stream
    k_batch, k_pos, k_mag = jax.random.split(key, 3)
    f_q, f_k = (np.array(a) for a in sample_batch(
        k_batch, jnp.asarray(cfg.p_active_vector, jnp.float32), n, cfg.m, cfg.tokens,
        cfg.structure))
    pair = np.arange(n) % len(cfg.template)
    key_pos = np.asarray(jax.random.randint(k_pos, (n,), 0, cfg.m))
    mag = np.asarray(jax.random.uniform(k_mag, (n, 2)))
    rows = np.arange(n)
    qf = np.array([cfg.template[p][0] for p in pair])
    kf = np.array([cfg.template[p][1] for p in pair])
    if cfg.tokens == "onehot":
        f_q[rows] = 0.0
        f_k[rows, key_pos] = 0.0
        mag[:] = 1.0
    f_k[rows, :, kf] = 0.0  # the planted key is the only one with the key feature
    f_q[rows, qf] = np.maximum(f_q[rows, qf], mag[:, 0])
    f_k[rows, key_pos, kf] = mag[:, 1]
    return {"f": np.concatenate([f_k, f_q[:, None]], axis=1), "pair": pair,
            "key_pos": key_pos}


def sad_inputs(cfg: ToyConfig, params: dict, n: int, seed: int):
    """What `toymodels sad` decomposes for one instance: n planted_sequences, the query (last
    token) seeing the m keys (no other row sees anything). x = W f; the model's logit
    (W_Q r)·(W_K s) has no 1/√H, so both factors are scaled by H^¼ to make the
    decomposition's Ω̃ = W_Qᵀ W_K / √H the model's Ω. Returns (arrays, token names, meta)."""
    from toymodels.analysis.sad import check_fits

    T = cfg.m + 1
    check_fits(1, 1, n, T, cfg.D, f"--prompts task:{n}")
    seqs = planted_sequences(cfg, n, seed)
    W = np.asarray(params["W"], np.float32)  # [D, N]
    x = (seqs["f"] @ W.T)[None].astype(np.float32)  # [1, n, T, D]
    mask = np.zeros((n, T, T), bool)
    mask[:, T - 1, :cfg.m] = True
    scale = cfg.H ** 0.25
    W_Q = (np.asarray(params["W_Q"], np.float32) * scale)[None, None]
    W_K = (np.asarray(params["W_K"], np.float32) * scale)[None, None]
    zeros = np.zeros(W_Q.shape[:-1], np.float32)
    queries = {q for q, _, _ in cfg.template}
    keys = {k for _, k, _ in cfg.template}
    names = [[f"{t}:" + ("+".join([f"q{i}" for i in sorted(queries) if tok[i] > 0]
                                  + [f"k{j}" for j in sorted(keys) if tok[j] > 0]) or "-")
              for t, tok in enumerate(seq)] for seq in seqs["f"]]
    meta = {"architecture": "toymodels-toy", "layernorm_folded": False, "causal": False,
            "x_meaning": "the token's residual r = W f (keys 0..m-1, the query last)",
            "planted": "query (last token) -> key_pos; pair = prompt mod len(template)"}
    return {"x": x, "mask": mask, "W_Q": W_Q, "W_K": W_K, "b_Q": zeros, "b_K": zeros}, \
        names, meta


def table(summary: dict) -> str:
    """A short fixed-width table: one row per instance. Beside the alignment verdicts, their
    foil (VERDICT_KEYS): "aligned" counts pairs at >= families.ALIGNED, "foil" is the random
    twin's worst pair; `!` marks a verdict its foil passes (on "pairs": a random head with the
    same spectrum matches as many pairs, so the count alone rejects nothing)."""
    header = (f"{'seed':>4}  {'overrides':<28} {'recon':>8} {'attn':>8} {'σ1':>8} "
              f"{'σ2/σ1':>7} {'pairs':>5} {'min cos_u':>9} {'min cos_v':>9} "
              f"{'aligned':>7} {'foil':>6} {'align>0.9@':>10} {'interf<0.1@':>11}")
    lines = [header, "-" * len(header)]
    base = summary["config"]
    flags = set()
    for inst in summary["instances"]:
        own = {k: v for k, v in inst["overrides"].items() if v != base[k]}
        own_text = ",".join(f"{k}={v:g}" for k, v in own.items()
                            if not isinstance(v, list)) or "-"
        if inst.get("diverged_step") is not None:  # its metrics are null: say why
            lines.append(f"{inst['seed']:>4}  {own_text:<28.28} diverged at step "
                         f"{inst['diverged_step']} (loss NaN, inf or > {DIVERGENCE_FACTOR:g}x "
                         "its first value): no metrics")
            continue
        s = inst["singular_values"]
        ratio = s[1] / s[0] if len(s) > 1 and s[0] > 0 else float("nan")
        matched = [p for p in inst["pairs"] if p["sv_index"] is not None]
        cu = min((p["cos_query_u"] for p in matched), default=float("nan"))
        cv = min((p["cos_key_v"] for p in matched), default=float("nan"))
        dyn = inst.get("dynamics") or {}
        steps = [dyn.get(k, "-") for k in ("step_alignment_above", "step_interference_below")]
        steps = ["never" if s is None else s for s in steps]
        pairs_text = f"{len(matched)}" + ("!" if inst.get("foil_passes_pairs") else "")
        aligned = inst.get("n_pairs_aligned")
        aligned_text = "-" if aligned is None else f"{aligned}/{len(inst['pairs'])}"
        foil = inst.get("foil_min_matched_cos")
        foil_text = "-" if foil is None else f"{foil:.3f}" + (
            "!" if inst.get("foil_passes_aligned") else "")
        flags |= {k for k in ("foil_passes_pairs", "foil_passes_aligned") if inst.get(k)}
        lines.append(
            f"{inst['seed']:>4}  {own_text:<28.28} {_num(inst['final_loss']['recon'])} "
            f"{_num(inst['final_loss']['attn'])} {s[0]:>8.4f} {ratio:>7.4f} "
            f"{pairs_text:>5} {cu:>9.4f} {cv:>9.4f} {aligned_text:>7} {foil_text:>6} "
            f"{steps[0]:>10} {steps[1]:>11}")
    if any("foil_min_matched_cos" in inst for inst in summary["instances"]):
        lines.append(
            f"aligned: pairs with min(|cos_u|, |cos_v|) >= {ALIGNED:g}; foil: the same worst-pair "
            f"|cos| of a random twin (the head's singular values, Haar-random singular vectors), "
            f"{FOIL_QUANTILE:.0%} quantile of {FOIL_DRAWS} draws, which must stay below "
            f"{ALIGNED:g}" + ("; ! = its foil passes that verdict, so it rejects nothing: "
                              + " and ".join({"foil_passes_pairs": "pairs (a random twin with "
                                              "the same spectrum matches as many)",
                                              "foil_passes_aligned": "foil"}[k]
                                             for k in sorted(flags)) if flags else ""))
    return "\n".join(lines)


def _num(x) -> str:
    """A loss in 8 characters that shows its size (1.2e-06, not 0.0000)."""
    if x is None:
        return f"{'-':>8}"
    return f"{x:>8.4f}" if x == 0 or abs(x) >= 1e-3 else f"{x:>8.1e}"
