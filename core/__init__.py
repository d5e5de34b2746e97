"""Mnemo core: the memory domain. Knows nothing of HTTP, Starlette or Lambda."""

import os

__version__ = "0.1.0"

# One BLAS thread wherever Mnemo runs (mnemo serve, Lambda, the CLI, the benchmarks, the
# tests): a search's matrix product is a few milliseconds, and on a busy 2-core machine a
# second OpenBLAS thread made a 100,000-memory search 3x slower at p50 and 8x at p95 (issue 21).
# BLAS libraries read these once, when numpy is first imported, and every numpy import in this
# code base comes after `core` is. An operator's own setting is kept.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
