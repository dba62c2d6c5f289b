"""Guards for the platform the analysis runs on."""

import subprocess
import sys
import textwrap

# Two independent batched QRs in one program: on jax 0.10.x the CPU LAPACK
# kernels each block an intra-op pool thread waiting for sub-tasks queued on the
# same pool, and on 2 cores this never returns (why pyproject excludes 0.10.x).
PROGRAM = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    rng = np.random.default_rng(0)
    a, b = (rng.normal(size=(50, 384, 32)).astype(np.float32) for _ in range(2))
    def two_qr(a, b):
        return jnp.linalg.qr(a), jnp.linalg.qr(b)
    jax.block_until_ready(jax.jit(two_qr)(a, b))
    print("done")
""")


def test_concurrent_lapack_kernels_do_not_deadlock():
    try:
        proc = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True,
                              timeout=120)
    except subprocess.TimeoutExpired:
        raise AssertionError("two concurrent batched QRs deadlocked: is jax 0.10.x installed? "
                             "pyproject.toml excludes it") from None
    assert proc.returncode == 0 and "done" in proc.stdout, proc.stderr
