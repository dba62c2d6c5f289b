"""Batched small LAPACK calls run on one BLAS thread.

On the CPU, JAX's linalg (SVD, QR, eigh) calls SciPy's OpenBLAS once per matrix. Over
thousands of small matrices OpenBLAS's own threads only contend with XLA's for the
cores: 10,000 SVDs of 50×50 matrices took 9.4 s with OpenBLAS's default two threads and
1.4 s with one on a 2-core machine (benchmarks/bench_analysis.py explains the setting).
Training, analysis and every CLI command run inside `one_blas_thread`, which restores
the caller's setting on the way out. Matrix products compiled by XLA do not use BLAS, so
nothing else is slowed.
"""

import functools

import numpy  # noqa: F401  load both OpenBLAS builds (NumPy's and SciPy's, which
import scipy.linalg  # noqa: F401  jaxlib's LAPACK kernels call) before the controller
from threadpoolctl import ThreadpoolController

_CONTROLLER = ThreadpoolController()


def one_blas_thread(fn):
    """Run fn with BLAS limited to one thread (a decorator; nests)."""
    @functools.wraps(fn)
    def limited(*args, **kwargs):
        with _CONTROLLER.limit(limits=1, user_api="blas"):
            return fn(*args, **kwargs)
    return limited
