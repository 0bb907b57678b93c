"""Global settings: threads of the matrix products, build information."""

from __future__ import annotations

import contextlib
import os

from . import _validation as V
from ._loader import _core


def set_num_threads(threads: int) -> None:
    """Number of threads used by the core's matrix products (OpenBLAS, or Eigen's OpenMP).

    Where the core shares NumPy's OpenBLAS (the default when NumPy runs on one, see
    ``build_info()["blas_source"]``) this is NumPy's thread count too: one pool for both.
    """
    _core.set_num_threads(V.integer(threads, "threads", low=1, high=2**31 - 1))


def get_num_threads() -> int:
    return _core.get_num_threads()


@contextlib.contextmanager
def _one_blas_thread():
    """NumPy's BLAS on one thread inside the block (internal), for the thin products
    (``d × d`` times a few columns) of code that runs between training calls: they are
    memory-bound, and a second thread only waits for a core when the cores are shared (measured
    at d = 1000 on 2 busy cores: ``compress`` 109 ms on one thread, 910 ms on two).  Where the
    core shares NumPy's OpenBLAS (``build_info()["blas_source"] == "numpy"``) that is one call
    to the library; otherwise threadpoolctl limits NumPy's.

    The setting is the library's, so it is process-wide while the block runs: products started
    meanwhile by other Python threads (a training call, NumPy) also run on one thread, and the
    previous count comes back when the block ends (blocks of several threads that overlap
    without nesting can leave the count at 1; sweeps run one network per process)."""
    if _core.build_info().get("blas_source") == "numpy":
        threads = _core.get_num_threads()
        _core.set_num_threads(1)
        try:
            yield
        finally:
            _core.set_num_threads(threads)
    else:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="blas"):
            yield


def build_info() -> dict:
    """How the core was built and what it runs on: BLAS backend and its kernel, Eigen version,
    SIMD, OpenMP; ``blas_library`` (file), ``blas_source`` (``"numpy"``: NumPy's own OpenBLAS,
    shared; ``"bundled"``: scipy-openblas32), ``blas_reason`` (why), ``blas_int_bits`` (32, or
    64 for an ILP64 library) and ``blas_symbols`` (the GEMM symbol called)."""
    info = dict(_core.build_info())
    if info.get("blas_library"):
        info["blas_library"] = os.path.realpath(info["blas_library"])
    return info
