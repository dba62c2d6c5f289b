"""`toymodels theory`: every prediction of the toy model's theory (docs/science.md),
measured beside its value. One module per check:

  theorem1        Theorem 1's Ω*, top pair and whole matrix (foil: the naive x_0x_1ᵀ)
  isotropy        a tight frame: u_1 ∥ x_0, v_1 ∥ x_1 (foil: a random head)
  anisotropy      Figure 4: Ω*'s angle, two-sided, and alignment at GPT-2's ε
  theorem3        a fixed Ω pulls the attended features out of superposition
  multi_pair      Figure 2b: 20 pairs, ownership, σ against target, Wedin's bounds
  sigma_targets   σ_k = σ_k(Ω*) at several target scales
  pairs_beyond_h  more pairs than H: the weighted rank-H optimum and each pair's fate
  structured      (theory/structured.py) Ω* of correlated and nested tokens' own M
  common          Theorem 1's setting and what the checks share

Each check trains what it needs, measures, and returns
  rows: one per prediction (predicted value, measured value, criterion, PASS/FAIL),
        and observations reported beside them (status INFO)
  data: the arrays its figure is drawn from (stored as data/<check>.npz)

A check counts only if it would reject a wrong model (issue 19): every prediction row is
also measured, the same way and against the same tolerance, on one or more foils (wrong
models of the same shapes and scale, foils.py) that must FAIL; a foil that passes marks
the row as a defect of the check. Every row names the seeds it was measured on and
whether they were held out from the design of its setting (Seeds; the design seeds are
named in each row's detail). Each measurement is a function of a head (top_pair_cos,
matrix_error, angle_error, spectrum_error, ...), so a foil goes through the same code.
Sizes come from a profile: QUICK fits the 2-core CPU (all checks within 8 minutes),
FULL is the paper-sized version (more seeds, steps and anisotropy levels).

Everything the single module `checks.py` exported is importable from here.
"""

import dataclasses
import os
import time
from concurrent.futures import ThreadPoolExecutor

from toymodels.theory.checks.anisotropy import (  # noqa: F401
    ANISOTROPY_SEEDS, PAPER_LOSS_CFG, TRAINED_ANGLE_TOL, check_anisotropy)
from toymodels.theory.checks.common import (  # noqa: F401
    TAG_ANISOTROPY, TAG_ANISOTROPY_SPARSE, TAG_FOIL, TAG_ISOTROPY, TAG_RANK_H, TAG_SIGMA,
    TAG_THEOREM1, TAG_THEOREM3, THEOREM1_EPS, THEOREM_CFG, _feature_alignment,
    _fixed_head_run, _foil_rng, _naive, _omega, _star)
from toymodels.theory.checks.isotropy import ISOTROPY_SEEDS, check_isotropy  # noqa: F401
from toymodels.theory.checks.multi_pair import (  # noqa: F401
    HELD_OUT_SEED, MULTI_PAIR_SEEDS, _heads_metrics, analyze_heads, check_multi_pair,
    cluster_excess, owned_pairs, wedin_rows_data, wedin_slack)
from toymodels.theory.checks.pairs_beyond_h import (  # noqa: F401
    RANK_H_CFG, RANK_H_EPS, RANK_H_MARGIN, RANK_H_PAIRS, RANK_H_SEEDS, _rank_h_p_active,
    check_pairs_beyond_h, plain_truncation, rank_h_cells, rank_h_features)
from toymodels.theory.checks.sigma_targets import (  # noqa: F401
    SIGMA_SEEDS, SIGMA_TOL, TARGETS, _sigma_by_seed, check_sigma_targets, r2_through_origin)
from toymodels.theory.checks.theorem1 import THEOREM1_SEEDS, check_theorem1  # noqa: F401
from toymodels.theory.checks.theorem3 import THEOREM3_SEEDS, check_orthogonalization  # noqa: F401
from toymodels.theory.fates import FATES, SHARE_LEVEL, pair_fates  # noqa: F401
from toymodels.theory.perturbation import OWN_LEVEL  # noqa: F401
from toymodels.theory.rows import (  # noqa: F401
    FULL, PROFILES, QUICK, Profile, Seeds, _passes, angle_error, feature_cos, features_for,
    interference, largest, matrix_error, observation, row, seed_label, spectrum_error,
    top_pair_cos, worst)
from toymodels.theory.structured import check_structured
from toymodels.training.loop import train

CHECKS = {
    "theorem1": check_theorem1,
    "isotropy": check_isotropy,
    "anisotropy": check_anisotropy,
    "theorem3": check_orthogonalization,
    "multi_pair": check_multi_pair,
    "sigma_targets": check_sigma_targets,
    "pairs_beyond_h": check_pairs_beyond_h,
    "structured": lambda p: check_structured(p, THEOREM_CFG, train),
}


BESIDE = ("multi_pair",)
"""Checks run in a thread beside the others (jobs > 1). multi_pair is about half of the
quick profile's CPU time, in one program whose large products keep both cores busy; the
other checks spend much of theirs compiling (single-threaded) and stepping small models,
leaving a core idle that it can use. Values do not depend on it: every check's arithmetic
is its own (its own seeds and generators, and XLA's programs compute the same whatever runs
beside them)."""

JOBS_ENV = "TOYMODELS_THEORY_JOBS"
"""1 runs the checks one after another (to time each alone); default 2."""


def run_checks(profile: Profile, only=None, jobs: int | None = None):
    """Run the named checks (all by default): rows, data by check, wall seconds by check
    (with jobs > 1 the BESIDE checks overlap the others). Rows come in CHECKS order."""
    names = [n for n in CHECKS if not only or n in only]
    if jobs is None:
        jobs = int(os.environ.get(JOBS_ENV, "2"))
    results = {}

    def run(name):
        t0 = time.perf_counter()
        r, d = CHECKS[name](profile)
        results[name] = (r, d, time.perf_counter() - t0)

    beside = [n for n in names if n in BESIDE] if jobs > 1 and len(names) > 1 else []
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="theory-check")
    try:
        futures = [pool.submit(run, n) for n in beside]
        for name in names:
            if name not in beside:
                run(name)
        for f in futures:
            f.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    rows, data, seconds = [], {}, {}
    for name in names:
        r, d, s = results[name]
        seconds[name] = s
        rows += [x | {"seconds": round(s, 1)} for x in r]
        data[name] = d
    return rows, data, seconds


def profile_dict(p: Profile) -> dict:
    return dataclasses.asdict(p)
