"""The theory table's verdict rule, written out independently of toymodels.theory: the
tests' oracle for each row's and each foil's PASS/FAIL."""

import numpy as np


def verdict(value, tolerance: str) -> str:
    """'>= 0.95' or '<= 0.05' applied to value; NaN fails."""
    criterion, threshold = tolerance.split()
    ok = np.isfinite(value) and (value >= float(threshold) if criterion == ">="
                                 else value <= float(threshold))
    return "PASS" if ok else "FAIL"
