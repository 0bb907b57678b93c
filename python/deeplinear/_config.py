"""Global settings: threads of the matrix products, build information."""

from __future__ import annotations

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


def build_info() -> dict:
    """How the core was built and what it runs on: BLAS backend and its kernel, Eigen version,
    SIMD, OpenMP; ``blas_library`` (file), ``blas_source`` (``"numpy"``: NumPy's own OpenBLAS,
    shared; ``"bundled"``: scipy-openblas32), ``blas_reason`` (why), ``blas_int_bits`` (32, or
    64 for an ILP64 library) and ``blas_symbols`` (the GEMM symbol called)."""
    info = dict(_core.build_info())
    if info.get("blas_library"):
        info["blas_library"] = os.path.realpath(info["blas_library"])
    return info
