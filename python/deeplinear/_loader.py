"""Load the compiled core and bind the BLAS library its products run on.

The core links no BLAS library: its products go through a table of function pointers
(``cpp/include/deeplinear/blas_dispatch.hpp``) filled here, at import:

1. the OpenBLAS NumPy itself runs on, when NumPy was built on one (NumPy's wheels: the ILP64
   ``libscipy_openblas64_`` in ``numpy.libs``): its symbols are looked up in the dependency
   scope of NumPy's loaded ``_multiarray_umath`` extension, so nothing is loaded and the process
   keeps one BLAS library with one pool of worker threads.  Two pools slow each other down when
   NumPy and the core take turns (each keeps its threads spinning for a while after a call);
   ``dl.set_num_threads`` and threadpoolctl then set the thread count of NumPy and the core at
   once;
2. otherwise (NumPy built on MKL, Accelerate or a BLAS without OpenBLAS's API, or the forced
   fallback below) the OpenBLAS of the PyPI package ``scipy-openblas32``, loaded privately.

``deeplinear.build_info()`` (and ``deeplinear info``) report the library, its kernel and why it
was chosen (``blas_source``, ``blas_reason``).

Testing and debugging knob (users need neither): the environment variable
``DEEPLINEAR_BUNDLED_BLAS=1``, read at import, makes the core use scipy-openblas32 even when
NumPy's OpenBLAS could be shared; :func:`bind_blas` switches at run time (a product running in
another thread meanwhile finishes on the library it started with).
"""

from __future__ import annotations

import os

from . import _core

__all__ = ["_core", "bind_blas"]

_FORCE_BUNDLED_ENV = "DEEPLINEAR_BUNDLED_BLAS"


def _numpy_extension_path() -> str:
    """File of NumPy's compiled core (the module that links NumPy's BLAS)."""
    try:
        from numpy._core import _multiarray_umath as mu  # NumPy >= 2
    except ImportError:  # NumPy 1.x
        from numpy.core import _multiarray_umath as mu  # type: ignore[no-redef]
    return mu.__file__


def _bundled_path() -> str:
    import scipy_openblas32 as sob

    return os.path.join(sob.get_lib_dir(), f"lib{sob.get_library()}.so")


def _bind_bundled(reason: str) -> None:
    try:
        path = _bundled_path()
    except ImportError as exc:
        raise ImportError(
            f"deeplinear: the fallback BLAS (the package scipy-openblas32) is not installed ({exc}), "
            f"and the core cannot use NumPy's BLAS: {reason}") from exc
    _core._blas_bind_file(path, "bundled", reason)


def bind_blas(prefer: str = "numpy") -> str:
    """Bind the core's products to NumPy's OpenBLAS (``"numpy"``) or to scipy-openblas32
    (``"bundled"``); returns the source in use.  Testing/debugging knob: the default choice,
    made at import, is the right one."""
    if prefer not in ("numpy", "bundled"):
        raise ValueError(f"prefer: must be 'numpy' or 'bundled', got {prefer!r}")
    if not hasattr(_core, "_blas_bind_file"):  # built without BLAS (Eigen's own products)
        return "eigen"
    if prefer == "bundled":
        _bind_bundled("forced (the bundled library was asked for)")
        return "bundled"
    try:
        path = _numpy_extension_path()
    except (ImportError, AttributeError) as exc:
        _bind_bundled(f"NumPy's compiled core not found ({exc})")
        return "bundled"
    try:
        _core._blas_bind_loaded(path, "shared with NumPy (one library, one thread pool)")
    except RuntimeError as exc:
        _bind_bundled(f"NumPy's BLAS cannot be shared: {exc}")
        return "bundled"
    return "numpy"


bind_blas("bundled" if os.environ.get(_FORCE_BUNDLED_ENV, "") not in ("", "0") else "numpy")
