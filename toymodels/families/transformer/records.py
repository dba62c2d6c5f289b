"""A toy-transformer run's record, sweep rows and console table: which head solves the
task, and how well it aligns; and the inputs sparse attention decomposition reads.

Per instance: the task loss, each head's attention accuracy on the instance's evaluation
batch, the head that solves the task (found from the accuracies, never assumed), and for
every head its Hungarian-matched QK alignment with the planted pairs and OV alignment
with the value features, beside the range that random rotations of the head's own
singular bases give (the random-rotation baseline), and the foil of each verdict: the same
measurement on a random twin of the head (families.random_twin: Haar-random singular
vectors, the head's own singular values), which a check worth its name must reject.
"""

import numpy as np

from toymodels.analysis import head_rows
from toymodels.families import (ALIGNED, FOIL_DRAWS, FOIL_QUANTILE, Measured, final_losses,
                                foil_passes, random_twin)
from toymodels.families.transformer import training as family
from toymodels.families.transformer.training import SOLVED_ACCURACY

EXPORTS = ("transformer-lens",)
"""Formats `toymodels export` can write a run of this family in (interop/export.py)."""

HEAD_KEYS = ("qk_matched", "qk_cos_query_u", "qk_cos_key_v", "qk_baseline", "qk_baseline_low",
             "qk_baseline_high", "ov_matched", "ov_cos_u", "ov_cos_v", "qk_sigma_1",
             "ov_sigma_1", "qk_n_significant", "ov_n_significant", "qk_span_query",
             "qk_span_key", "qk_foil_matched", "qk_foil_cos_query_u", "qk_foil_cos_key_v",
             "ov_foil_matched", "qk_foil_passes", "ov_foil_passes", "qk_rotated_passes")
"""A head's numbers; the sweep row carries the best head's as best_<key>. The foil keys:
qk_/ov_foil_matched is the random twin's matched alignment (its 95% quantile over
families.FOIL_DRAWS draws), qk_foil_cos_query_u / _key_v its sides, and qk_/ov_foil_passes
whether that foil reaches the ALIGNED bar (0.9) that the QK and OV verdicts apply (True
would be a defect of the check: it could not reject a wrong head). qk_rotated_passes:
whether the rotated twin's high end (qk_baseline_high) reaches the bar, i.e. the QK verdict
cannot tell the head's singular basis from a rotation of it inside the same span; None at
rank one, where that rotation is the head itself and no foil."""


def head_records(cfg, params, analysis, accuracy, seeds=None) -> list[list[dict]]:
    """Per instance, per (layer, head): accuracy, alignment, baseline and foil numbers.
    seeds: each instance's seed, which seeds its random twins (default: its index)."""
    rows = {(r["instance"], r["layer"], r["head"], r["circuit"]): r for r in analysis.heads}
    pairs = {}
    for p in analysis.pairs:
        pairs.setdefault((p["instance"], p["layer"], p["head"], p["circuit"]), []).append(p)
    W_Q = np.asarray(family.head_factors(cfg, params["W_Q"]))
    features = family.features_of(cfg, params)  # [I, L, D, N]
    records = []
    for n in range(accuracy.shape[0]):
        heads = []
        for layer in range(cfg.n_layers):
            for head in range(cfg.n_heads):
                at = (n, layer, head)
                qk, ov = rows[at + ("qk",)], rows[at + ("ov",)]
                low, high = family.baseline_range(features[n, layer], W_Q[at], params["W_K"][at],
                                                  cfg.qk_template, seed=n)
                own = n if seeds is None else seeds[n]
                qk_foil = random_twin(features[n, layer],
                                      W_Q[at].T.astype(np.float64) @ params["W_K"][at],
                                      cfg.qk_template, seed=[own, layer, head, 0])
                ov_foil = random_twin(features[n, layer],
                                      params["W_O"][at].astype(np.float64) @ params["W_V"][at],
                                      cfg.ov_template, seed=[own, layer, head, 1])
                heads.append({
                    "layer": layer, "head": head, "accuracy": _finite(accuracy[at]),
                    "qk_matched": _matched(pairs.get(at + ("qk",), [])),
                    "qk_cos_query_u": qk["mean_cos_query_u"], "qk_cos_key_v": qk["mean_cos_key_v"],
                    "qk_baseline": _matched(pairs.get(at + ("qk",), []), "baseline_"),
                    "qk_baseline_low": low, "qk_baseline_high": high,
                    "ov_matched": _matched(pairs.get(at + ("ov",), [])),
                    "ov_cos_u": ov["mean_cos_query_u"], "ov_cos_v": ov["mean_cos_key_v"],
                    "qk_sigma_1": qk["sigma_1"], "ov_sigma_1": ov["sigma_1"],
                    "qk_n_significant": qk["n_significant"],
                    "qk_span_query": qk.get("principal_cos_query_min"),
                    "qk_span_key": qk.get("principal_cos_key_min"),
                    "ov_n_significant": ov["n_significant"],
                    "qk_foil_matched": qk_foil["matched"],
                    "qk_foil_cos_query_u": qk_foil["cos_query_u"],
                    "qk_foil_cos_key_v": qk_foil["cos_key_v"],
                    "ov_foil_matched": ov_foil["matched"],
                    "qk_foil_passes": foil_passes(qk_foil["matched"]),
                    "ov_foil_passes": foil_passes(ov_foil["matched"]),
                    "qk_rotated_passes": (foil_passes(high) if qk["n_significant"] > 1
                                          else None)})
        records.append(heads)
    return records


def _finite(x):
    """x as a float, or None where it is NaN (accuracy of a task that never asks)."""
    return None if np.isnan(x) else float(x)


def best_head(heads: list[dict]) -> dict | None:
    """The head with the highest attention accuracy; None where no head has one."""
    rated = [h for h in heads if h["accuracy"] is not None]
    return max(rated, key=lambda h: h["accuracy"]) if rated else None


def _matched(pair_rows, prefix=""):
    """Mean over pairs of min(|cos| query side, |cos| key side) under the Hungarian match;
    a pair without a significant singular index counts 0."""
    if not pair_rows:
        return None
    matched = [p["sv_index"] is not None and p[f"{prefix}cos_query_u"] is not None
               for p in pair_rows]
    return head_rows.matched_alignment([p[f"{prefix}cos_query_u"] if m else 0.0
                              for p, m in zip(pair_rows, matched)],
                             [p[f"{prefix}cos_key_v"] if m else 0.0
                              for p, m in zip(pair_rows, matched)], matched)


def measure(cfg, instances, result, params: dict, diverged: list) -> Measured:
    """Per instance: its summary record (losses, evaluation, every head's accuracy and
    alignment, the solving heads) and its sweep row (the best head's numbers)."""
    evaluation = family.evaluate(cfg, params, instances)
    analysis = family.analyze(cfg, params)
    heads = head_records(cfg, params, analysis, evaluation["accuracy"],
                         seeds=[inst.seed for inst in instances])
    records, rows, pair_rows = [], [], []
    for n, inst in enumerate(instances):
        best = best_head(heads[n])
        solving = [h for h in heads[n] if (h["accuracy"] or 0.0) >= SOLVED_ACCURACY]
        ok = diverged[n] is None
        record = {
            "seed": inst.seed,
            "overrides": inst.overrides(),
            "final_loss": final_losses(cfg, result.curves, n),
            "eval_task_loss": float(evaluation["task_loss"][n]),
            "solved": bool(solving),
            "best_head": None if best is None else {"layer": best["layer"], "head": best["head"]},
            "solving_head": {"layer": best["layer"], "head": best["head"]} if solving else None,
            "solving_heads": [{"layer": h["layer"], "head": h["head"]} for h in solving],
            "heads": heads[n],
            "diverged_step": diverged[n],
        }
        best = best or heads[n][0]
        others = [h["qk_matched"] for h in heads[n]
                  if h is not best and h["qk_matched"] is not None]
        row = {**{f"final_{k}": v for k, v in record["final_loss"].items()},
               "eval_task_loss": record["eval_task_loss"],
               "n_solving_heads": len(solving),
               "best_layer": best["layer"], "best_head": best["head"],
               **{f"best_{k}": best[k] for k in ("accuracy",) + HEAD_KEYS},
               "other_heads_max_qk_matched": max(others) if others else None}
        if not ok:  # a diverged instance's losses, heads and verdict are null
            record["final_loss"] = dict.fromkeys(record["final_loss"])
            record.update(eval_task_loss=None, solved=None, best_head=None, solving_head=None,
                          solving_heads=None, heads=None)
            row = dict.fromkeys(row)
        records.append(record)
        rows.append(row)
        pairs = []
        for p in (p for p in analysis.pairs if p["instance"] == n):
            pair = {k: v for k, v in p.items() if k != "instance"}
            if not ok:
                pair |= {k: None for k in pair if k not in ("layer", "head", "circuit",
                                                            "query_feature", "key_feature",
                                                            "target")}
            pairs.append({**inst.overrides(), **pair})
        pair_rows.append(pairs)
    arrays = {"accuracy": evaluation["accuracy"],
              **{f"{c}_{k}": analysis.arrays[f"{c}_{k}"] for c in ("qk", "ov")
                 for k in ("S", "cos_u", "cos_v")}}
    if cfg.positions == "rope":
        arrays |= {f"rope_{k}": v for k, v in family.rope_offsets(cfg, params).items()}
    return Measured(records=records, rows=rows, pair_rows=pair_rows, analysis=analysis,
                    arrays=arrays, fields={"solved_accuracy": SOLVED_ACCURACY})


def templates(cfg) -> dict:
    return {"template": [list(p) for p in cfg.qk_template],
            "ov_template": [list(p) for p in cfg.ov_template]}


def figure(run, path=None):
    """The run's figure (a Run or a run directory): every head, and the best through training."""
    from toymodels.plots import plot_transformer_run
    return plot_transformer_run(run, path)


def table(summary: dict) -> str:
    """One row per instance: the best head (highest attention accuracy; the first head where
    the task never asks), its alignment beside its foil (the random twin, families.
    random_twin: `!` where the foil reaches the 0.9 bar, a check that cannot reject a wrong
    head), and the other heads' QK beside their rotated-basis range."""
    header = (f"{'seed':>4} {'task loss':>9} {'best':>5} {'acc':>6} {'QK cos_u':>8} "
              f"{'QK cos_v':>8} {'QK match':>8} {'foil':>6} {'OV match':>8} {'foil':>6} "
              f"{'solving':>7}  {'other heads: QK match [baseline 5–95%]':<40}")
    lines = [header, "-" * len(header)]
    flagged, rotated = False, []
    for inst in summary["instances"]:
        if inst.get("diverged_step") is not None:  # its metrics are null: say why
            lines.append(f"{inst['seed']:>4} diverged at step {inst['diverged_step']} (task loss "
                         "NaN, inf or > 1000x its first value); metrics null")
            continue
        b = inst["best_head"] or inst["heads"][0]
        best = next(h for h in inst["heads"]
                    if (h["layer"], h["head"]) == (b["layer"], b["head"]))
        others = [h for h in inst["heads"] if h is not best]
        other_text = "; ".join(f"{h['layer']}.{h['head']} {_f(h['qk_matched'])} "
                               f"[{h['qk_baseline_low']:.2f}–{h['qk_baseline_high']:.2f}]"
                               for h in others) or "-"
        foils = [_foil(best.get(f"{c}_foil_matched")) for c in ("qk", "ov")]
        flagged |= any(best.get(f"{c}_foil_passes") for c in ("qk", "ov"))
        if best.get("qk_rotated_passes") is not None:
            rotated.append(best["qk_rotated_passes"])
        lines.append(
            f"{inst['seed']:>4} {_loss(inst['final_loss']['task'])} "
            f"{b['layer']}.{b['head']:<3} {_f(best['accuracy']):>6} {_f(best['qk_cos_query_u']):>8} "
            f"{_f(best['qk_cos_key_v']):>8} {_f(best['qk_matched']):>8} {foils[0]:>6} "
            f"{_f(best['ov_matched']):>8} {foils[1]:>6} {len(inst['solving_heads']):>7}  "
            f"{other_text:<40.80}")
    if any("qk_foil_matched" in h for inst in summary["instances"] for h in inst["heads"] or []):
        lines.append(f"foil: a random twin of the head (its singular values, Haar-random singular "
                     f"vectors), {FOIL_QUANTILE:.0%} quantile of {FOIL_DRAWS} draws; "
                     f"QK/OV >= {ALIGNED:g} is the verdict, which the foil must fail"
                     + ("; ! = the foil passes: the check cannot reject it" if flagged else ""))
    if any(rotated):
        lines.append(f"rotated twin (the head's singular bases rotated inside their own span, "
                     f"95% quantile): reaches QK >= {ALIGNED:g} in {sum(rotated)} of "
                     f"{len(rotated)} best heads of rank > 1; there the QK verdict tests the "
                     "span, not the basis inside it")
    return "\n".join(lines)


def _foil(x) -> str:
    """A foil's value, with ! where it reaches the ALIGNED bar; - where not measured."""
    return "-" if x is None else f"{x:.3f}" + ("!" if foil_passes(x) else "")


def _f(x):
    return "-" if x is None else f"{x:.3f}"


def _loss(x) -> str:
    """A loss in 9 characters that shows its size (7.6e-06, not 0.0000)."""
    if x is None:
        return f"{'-':>9}"
    return f"{x:>9.4f}" if x == 0 or abs(x) >= 1e-3 else f"{x:>9.1e}"


# ---- sparse attention decomposition of a stored toy-transformer run -----------------


def task_sequences(cfg, n: int, seed: int, p_query: float = 1.0):
    """n sequences of the run's own task (every query asking, by default), as in training
    but from a stream of their own: a batch dict (tasks.retrieval.sample)."""
    import jax

    from toymodels.tasks.retrieval import sample
    return sample(jax.random.fold_in(jax.random.key(seed), 2 ** 30),
                  cfg.replace(batch_size=n, p_query=p_query), cfg.p_active)


def token_names(cfg, f) -> list[list[str]]:
    """A readable name per token: its position and the planted features it carries."""
    f = np.asarray(f)
    names = []
    for seq in f:
        row = []
        for t, tok in enumerate(seq):
            tags = [f"q{i}" for i in cfg.queries if tok[i] > 0] + \
                   [f"k{j}" for j in cfg.keys if tok[j] > 0]
            row.append(f"{t}:{'+'.join(tags) or '-'}")
        names.append(row)
    return names


def attention_inputs(cfg, params: dict, f):
    """One instance's attention inputs on sequences f [P, T, N]: x [L, P, T, D] (what each
    layer's heads read), the causal mask [P, T, T] and the head weights [L, n, ...]."""
    import jax.numpy as jnp
    from flax import nnx

    if cfg.positions == "rope":
        raise ValueError("the decomposition takes one Ω per head; RoPE heads need one per "
                         "offset, which toymodels sad does not do yet")
    graphdef, state = nnx.split(nnx.eval_shape(lambda: family.build(cfg, nnx.Rngs(0))))
    nnx.replace_by_pure_dict(state, {k: jnp.asarray(v) for k, v in params.items()})
    _, cache = nnx.merge(graphdef, state)(jnp.asarray(f))
    P, T = f.shape[:2]
    zeros = np.zeros(params["W_Q"].shape[:-1], np.float32)
    return {"x": np.stack([np.asarray(x) for x in cache["inputs"]]),
            "mask": np.broadcast_to(np.tril(np.ones((T, T), bool)), (P, T, T)).copy(),
            "W_Q": params["W_Q"], "W_K": params["W_K"],
            "b_Q": params.get("b_Q", zeros), "b_K": params.get("b_K", zeros)}


def sad_inputs(cfg, params: dict, n: int, seed: int):
    """What `toymodels sad` decomposes for one instance (params {name: [...]}, no instance
    axis): n sequences of its own task, every query asking. Returns (arrays: x, mask, W_Q,
    W_K, b_Q, b_K as attention_inputs gives them; token names [n][T]; meta)."""
    from toymodels.analysis.sad import check_fits

    check_fits(cfg.n_layers, cfg.n_heads, n, cfg.T, cfg.D, f"--prompts task:{n}")
    batch = task_sequences(cfg, n, seed)
    arrays = attention_inputs(cfg, params, batch["f"])
    meta = {"architecture": "toymodels-transformer", "layernorm_folded": False, "causal": True,
            "x_meaning": "the layer's attention input (the residual, or its pre-LayerNorm "
                         "output), as the model computes it"}
    return arrays, token_names(cfg, batch["f"]), meta
