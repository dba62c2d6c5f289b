"""Batched small LAPACK calls run on one BLAS thread.

On the CPU, JAX's linalg (SVD, QR, eigh) calls SciPy's OpenBLAS once per matrix. Over
thousands of small matrices OpenBLAS's own threads only contend with XLA's for the
cores: 10,000 SVDs of 50×50 matrices took 9.4 s with OpenBLAS's default two threads and
1.4 s with one on a 2-core machine (README, Benchmarks). Training, analysis and every
CLI command run inside `one_blas_thread`, which restores the caller's setting on the way
out. XLA's compiled matrix products do not go through BLAS; NumPy's own products inside
these calls do, and run on one thread there (not measured to matter).
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
