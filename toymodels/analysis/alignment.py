"""The alignment metrics of every head, as tidy tables (docs/science.md).

`analyze` runs the jit-compiled core of svd.py once per circuit over all
heads, then the host-side part over all heads at once (batched_rows.py: assignments,
summaries and rows; head_rows.py defines them one head at a time). Tables:

  heads    one row per (head, circuit): spectrum, significance, pair-alignment
           summaries, MMCS and Hungarian-mean |cos| of feature sets, principal
           angles, σ-against-target fit, and the random-rotation baseline of each
  pairs    one row per (head, attended pair): Hungarian-matched and max-over-k
           alignment, with the baseline
  features one row per (feature dictionary, feature): norm, interference,
           dimensionality (Toy Models of Superposition), dead

A dead feature (an all-zero column of the dictionary, common in real SAE
dictionaries) has no direction: its cosines are 0, it is left out of every
matching and feature-set metric (a pair with a dead feature is unmatched), its
interference and dimensionality are 0, and `dead` is true in the features table.
Non-finite features or weights are refused (AnalysisInputError), never measured.

Metric definitions:
  matched |cos|   pairs take significant singular indices one-to-one, maximizing the
                  sum of |cos(w_i, u_k)|·|cos(w_j, v_k)|; a pair left without one is
                  unmatched (sv_index and cosines null). Per-head means and
                  min_matched_cos count an unmatched pair as 0; n_pairs_matched
                  says how many have an index
  max-over-k      each pair's best significant k on its own (not one-to-one)
  MMCS            mean over a feature set of max_k |cos(w_i, u_k)|, significant k
  Hungarian mean  mean over a feature set of one-to-one matched |cos(w_i, u_k)|;
                  features left without a significant vector count 0
  baseline        the same, with U and V replaced by Haar-random orthonormal bases
                  of the span of the significant singular vectors
  blocks          singular index k joins k−1's block when σ_{k−1} − σ_k < block_gap·σ_{k−1}
                  (relative gap, 1e-2 by default, as TransformerLens' svd_circuits), or
                  when neither is significant (the null space is one block). Inside a
                  block of two or more, single vectors are not defined, only their span:
                  heads.sv_blocks lists each index's block, pairs.in_block flags a matched
                  index inside one (compare spans there: principal_cos_*)

Weights come in a named layout (interop/layouts.py): toymodels' W_Q [.., H, D] or
TransformerLens' [.., d_model, d_head]; where D = H fits both, an unnamed layout is a
LayoutError, never a guess.
"""

import dataclasses
import operator

import jax
import jax.numpy as jnp
import numpy as np

from toymodels.analysis.batched_rows import sv_blocks, table_rows
from toymodels.analysis.head_rows import DEFAULT_BLOCK_GAP
from toymodels.analysis.svd import DEFAULT_REL_TOL, circuit_core, feature_geometry
from toymodels.blas import one_blas_thread
from toymodels.configs import check_template
from toymodels.errors import AnalysisInputError, ConfigError
from toymodels.interop.layouts import check_layout, to_toymodels

AXES = ("instance", "layer", "head", "offset")
"""The names leading head axes may take; unnamed axes are the last of the first three, in
this order. "offset" is the query–key offset δ of a RoPE head's per-offset Ω_δ."""


def check_axes(axes) -> tuple[str, ...]:
    """Names of leading head axes: distinct, each one of AXES."""
    axes = tuple(axes)
    unknown = [a for a in axes if a not in AXES]
    if unknown:
        raise AnalysisInputError(f"axes: unknown name {unknown[0]!r}; choose from "
                                 + ", ".join(AXES))
    if len(set(axes)) != len(axes):
        raise AnalysisInputError(f"axes {','.join(axes)} names an axis twice")
    return axes


def _numeric(name: str, array) -> np.ndarray:
    """array as float32, refusing non-numbers and NaN/inf (metrics of them would read
    like measurements)."""
    a = np.asarray(array)
    if a.dtype.kind not in "iuf":  # booleans too: True/False are no weights
        raise AnalysisInputError(f"{name} holds {a.dtype} values, not numbers")
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise AnalysisInputError(f"{name} holds NaN or infinite values "
                                 f"({int(np.sum(~np.isfinite(a)))} of {a.size})")
    return a


def _template(template, N) -> tuple:
    """The template as (int, int, float) triples, checked as configs check theirs."""
    try:
        pairs = tuple((operator.index(i), operator.index(j), float(v)) for i, j, v in template)
        check_template(pairs, N)
    except (TypeError, ValueError) as e:  # ConfigError is a ValueError
        message = str(e) if isinstance(e, ConfigError) else \
            "template must be (query_feature, key_feature, target) triples of int, int, number"
        raise AnalysisInputError(message) from None
    return pairs


@dataclasses.dataclass
class HeadAnalysis:
    """Every head's alignment: tables of rows (heads, pairs, features) and the arrays they
    come from. to_pandas(table) gives a table as a DataFrame."""

    axes: tuple[str, ...]
    """Names of the leading head axes, e.g. ('instance',) or ('layer', 'head')."""
    arrays: dict[str, np.ndarray]
    """Per circuit '<c>_S' [..., K], '<c>_cos_u', '<c>_cos_v' [..., N, K]; 'gram' etc."""
    heads: list[dict]
    pairs: list[dict]
    features: list[dict]
    layout: str = "toymodels"
    """The layout the weights were read in (interop/layouts.py)."""

    def to_pandas(self, table: str = "heads"):
        """One table ('heads', 'pairs' or 'features') as a pandas DataFrame, as its CSV
        (analysis/<table>.csv) reads back."""
        from toymodels.rundir import TABLES, _frame
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}; choose one of {', '.join(TABLES)}")
        return _frame(getattr(self, table))


def _lead_axes(shape_lead, axes):
    if axes is None:
        axes = AXES[3 - len(shape_lead):3] if len(shape_lead) <= 3 else None
    if axes is not None:
        axes = check_axes(axes)
    if axes is None or len(axes) != len(shape_lead):
        raise AnalysisInputError(
            f"weights have {len(shape_lead)} leading axes {tuple(shape_lead)}; name them "
            f"with axes=(...) from {AXES}")
    return tuple(axes)


def _check(W, factors):
    D, N = W.shape[-2:]
    for name, arr, d_axis in factors:
        if arr.shape[d_axis] != D:
            raise AnalysisInputError(f"{name} has shape {arr.shape}: its D axis is "
                                     f"{arr.shape[d_axis]}, but the features are [{D}, {N}]")


@one_blas_thread
def analyze(features, *, W_Q=None, W_K=None, W_V=None, W_O=None, template=(),
            ov_template=(), axes=None, rel_tol: float = DEFAULT_REL_TOL,
            seed: int = 0, layout=None, block_gap: float = DEFAULT_BLOCK_GAP) -> HeadAnalysis:
    """Analyse QK (if W_Q, W_K given) and OV (if W_V, W_O given) of every head.

    layout: 'toymodels' (W_Q, W_K, W_V [..., H, D], W_O [..., D, H]) or 'transformer_lens'
    ([..., d_model, d_head] and [..., d_head, d_model]). None takes toymodels' layout only
    where no other fits the shapes; D = H fits both, and raises LayoutError. block_gap:
    the relative gap below which neighbouring singular values form a block (module doc).

    features: W [D, N], or [*prefix, D, N] for one dictionary per index of the
    leading head axes' prefix (e.g. per instance). template: attended pairs
    (query_feature, key_feature, target), for the QK circuit. ov_template: the same
    for OV = W_O W_V, as (output_feature, input_feature, gain): the output feature is
    compared with the left singular vectors u, the input (value) feature with v.
    """
    from toymodels.configs import check_seed
    try:
        check_seed(seed, "seed")
    except ConfigError as e:
        raise AnalysisInputError(str(e)) from None
    W = _numeric("features", features)
    if W.ndim < 2:
        raise AnalysisInputError(f"features must be [D, N] (or [..., D, N]), got shape {W.shape}")
    template = _template(template, W.shape[-1])
    ov_template = _template(ov_template, W.shape[-1])
    given = {name: _numeric(name, a) for name, a in
             (("W_Q", W_Q), ("W_K", W_K), ("W_V", W_V), ("W_O", W_O)) if a is not None}
    for name, a in given.items():
        if a.ndim < 2:
            raise AnalysisInputError(f"{name} must have at least 2 axes, got shape {a.shape}")
    if not 0 <= block_gap < 1:
        raise AnalysisInputError(f"block_gap must be in [0, 1), got {block_gap}")
    given = to_toymodels(given, W.shape[-2], layout)
    layout = check_layout(layout) or "toymodels"
    circuits = {}
    if {"W_Q", "W_K"} & set(given):
        if not {"W_Q", "W_K"} <= set(given):
            raise AnalysisInputError("QK needs both W_Q and W_K")
        circuits["qk"] = (np.swapaxes(given["W_Q"], -1, -2), np.swapaxes(given["W_K"], -1, -2))
    if {"W_V", "W_O"} & set(given):
        if not {"W_V", "W_O"} <= set(given):
            raise AnalysisInputError("OV needs both W_V and W_O")
        circuits["ov"] = (given["W_O"], np.swapaxes(given["W_V"], -1, -2))
    if not circuits:
        raise AnalysisInputError("give W_Q and W_K, or W_V and W_O, or all four")
    # W_Q, W_K, W_V are [..., H, D]; W_O is [..., D, H].
    _check(W, [(name, a, -2 if name == "W_O" else -1) for name, a in given.items()])
    lead = next(iter(circuits.values()))[0].shape[:-2]
    for name, (A, B) in circuits.items():
        if A.shape != B.shape or A.shape[:-2] != lead:
            raise AnalysisInputError(f"{name} factors have shapes {A.shape} and {B.shape}; "
                                     "every weight needs the same leading axes")
    axes = _lead_axes(lead, axes)
    prefix = W.shape[:-2]
    if prefix != lead[:len(prefix)]:
        raise AnalysisInputError(f"features have leading axes {prefix}, which must be a "
                                 f"prefix of the heads' leading axes {lead}")
    W_b = W.reshape(prefix + (1,) * (len(lead) - len(prefix)) + W.shape[-2:])
    dead = np.linalg.norm(W, axis=-2) == 0  # [*prefix, N]
    dead_b = np.broadcast_to(dead.reshape(W_b.shape[:-2] + dead.shape[-1:]),
                             lead + dead.shape[-1:])  # each head's dictionary's dead features

    templates = {"qk": tuple(template), "ov": tuple(ov_template)}
    query_set = tuple(dict.fromkeys(i for i, _, _ in template))
    key_set = tuple(dict.fromkeys(j for _, j, _ in template))
    arrays, heads, pairs = {}, [], []
    for c_index, (name, (A, B)) in enumerate(circuits.items()):
        circuit_template = templates[name]
        c_query = tuple(dict.fromkeys(i for i, _, _ in circuit_template))
        c_key = tuple(dict.fromkeys(j for _, j, _ in circuit_template))
        core = circuit_core(jnp.asarray(A), jnp.asarray(B), jnp.asarray(W_b),
                            jax.random.fold_in(jax.random.key(seed), c_index),
                            query_set=c_query, key_set=c_key, rel_tol=rel_tol)
        core = {k: np.asarray(v) for k, v in core.items()}
        if dead.any():  # 0/0 -> 0 for dead features
            for k in ("cos_u", "cos_v", "cos_u_rot", "cos_v_rot"):
                core[k] = np.where(dead_b[..., None], 0.0, core[k]).astype(core[k].dtype)
        for k in ("S", "cos_u", "cos_v"):
            arrays[f"{name}_{k}"] = core[k]
        B = int(np.prod(lead, dtype=int))
        K = core["S"].shape[-1]
        arrays[f"{name}_block"] = sv_blocks(core["S"].reshape(B, K),
                                            core["significant"].reshape(B, K),
                                            block_gap).reshape(core["S"].shape)
        index = np.unravel_index(np.arange(B), lead) if lead else ()
        where = {**{a: ix.tolist() for a, ix in zip(axes, index)}, "circuit": [name] * B}
        circuit_heads, circuit_pairs = table_rows(
            {k: v.reshape((B,) + v.shape[len(lead):]) for k, v in core.items()},
            circuit_template, c_query, c_key, dead_b.reshape(B, -1), where, block_gap)
        heads.extend(circuit_heads)
        pairs.extend(circuit_pairs)

    geometry = {k: np.asarray(v) for k, v in feature_geometry(jnp.asarray(W)).items()}
    for k in ("interference", "dimensionality"):  # a dead feature takes no dimension
        geometry[k] = np.where(dead, 0.0, geometry[k]).astype(geometry[k].dtype)
    geometry["dead"] = dead
    arrays.update(geometry)
    return HeadAnalysis(axes=axes, arrays=arrays, heads=heads, pairs=pairs,
                        features=_feature_rows(geometry, axes[:len(prefix)], query_set,
                                               key_set), layout=layout)


def _feature_rows(geometry, axes, query_set, key_set):
    rows = []
    norms = geometry["norms"]
    for idx in np.ndindex(*norms.shape[:-1]):
        where = dict(zip(axes, idx))
        for i in range(norms.shape[-1]):
            rows.append({**where, "feature": i, "attended_query": i in query_set,
                         "attended_key": i in key_set,
                         "norm": float(norms[idx + (i,)]),
                         "interference": float(geometry["interference"][idx + (i,)]),
                         "dimensionality": float(geometry["dimensionality"][idx + (i,)]),
                         "dead": bool(geometry["dead"][idx + (i,)])})
    return rows


def heads_overview(heads_csv) -> str:
    """Per circuit: head count and the mean of each metric next to its random-rotation
    baseline, read back from a written heads.csv."""
    import csv

    with open(heads_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    lines = [f"{'circuit':<8}{'heads':>6}  {'metric':<28}{'mean':>8}{'baseline':>10}"]
    for circuit in dict.fromkeys(r["circuit"] for r in rows):
        sub = [r for r in rows if r["circuit"] == circuit]
        metrics = [k for k in sub[0] if k.startswith(("mmcs_", "hungarian_", "mean_cos_"))
                   and any(r[k] != "" for r in sub)]
        for n, key in enumerate(["n_significant"] + metrics):
            base = "baseline_" + key if "baseline_" + key in sub[0] else None
            base = base or ("mean_baseline_" + key[5:] if key.startswith("mean_cos_") else None)

            def avg(k):
                vals = [float(r[k]) for r in sub if k and r.get(k, "") != ""]
                return f"{np.mean(vals):.4f}" if vals else "-"
            lines.append(f"{circuit if n == 0 else '':<8}{len(sub) if n == 0 else '':>6}  "
                         f"{key:<28}{avg(key):>8}{avg(base) if base else '':>10}")
    return "\n".join(lines)
