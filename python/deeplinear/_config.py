"""Global settings: threads of the matrix products, build information."""

from __future__ import annotations

from . import _validation as V
from ._loader import _core


def set_num_threads(threads: int) -> None:
    """Number of threads used by the core's matrix products (OpenBLAS, or Eigen's OpenMP)."""
    _core.set_num_threads(V.integer(threads, "threads", low=1, high=2**31 - 1))


def get_num_threads() -> int:
    return _core.get_num_threads()


def build_info() -> dict:
    """How the core was built: BLAS backend and its kernel, Eigen version, SIMD, OpenMP."""
    return dict(_core.build_info())
