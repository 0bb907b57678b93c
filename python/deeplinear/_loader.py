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

MKL (the ``mkl`` extra: the PyPI package ``mkl``, its ``libmkl_rt``) can be bound instead with
``DEEPLINEAR_BLAS_LIBRARY=mkl`` or :func:`bind_blas` (``"mkl"``): LP64 Fortran entry points through the
same table, its own OpenMP pool (whose idle threads are told to sleep at once,
``kmp_set_blocktime(0)``, unless ``KMP_BLOCKTIME`` is set, so that they do not spin against
NumPy's pool between calls); ``dl.set_num_threads`` then sets MKL's thread count, and
threadpoolctl sees it as ``mkl``.  It is not the default: on the AMD EPYC (AVX2) it was
measured on, MKL 2026.2's GEMM is slower than OpenBLAS's (benchmarks/README.md, "BLAS
libraries compared"), and it adds a second thread pool beside NumPy's.

``deeplinear.build_info()`` (and ``deeplinear info``) report the library, its kernel and why it
was chosen (``blas_source``, ``blas_reason``).

Knobs (the default needs neither), read at import: ``DEEPLINEAR_BLAS_LIBRARY`` = ``numpy`` (the
default choice above), ``bundled`` or ``mkl`` (falling back to the default choice, with the
reason in ``blas_reason``, when MKL is not installed); ``DEEPLINEAR_BUNDLED_BLAS=1`` (tests)
is ``DEEPLINEAR_BLAS_LIBRARY=bundled``.  :func:`bind_blas` switches at run time (a product running in
another thread meanwhile finishes on the library it started with).
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys

from . import _core

__all__ = ["_core", "bind_blas"]

_FORCE_BUNDLED_ENV = "DEEPLINEAR_BUNDLED_BLAS"
_CHOICE_ENV = "DEEPLINEAR_BLAS_LIBRARY"
_CHOICES = ("numpy", "bundled", "mkl")


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


def _mkl_path() -> str | None:
    """MKL's single dynamic library (``libmkl_rt.so.N``) of the PyPI package ``mkl`` in this
    environment (its ``lib`` directory), or None."""
    dirs = [os.path.join(sys.prefix, "lib"), os.path.join(sys.base_prefix, "lib")]
    try:
        from importlib import metadata

        for f in metadata.files("mkl") or ():
            if os.path.basename(str(f)).startswith("libmkl_rt.so"):
                dirs.insert(0, os.path.dirname(str(f.locate())))
    except Exception:  # not installed, or no file list: the usual directories only
        pass
    for d in dirs:
        found = sorted(glob.glob(os.path.join(d, "libmkl_rt.so*")))
        if found:
            return found[-1]
    return None


def _bind_mkl(reason: str) -> str | None:
    """Bind MKL; returns None, or why it could not be bound (the library in use then stays)."""
    path = _mkl_path()
    if path is None:
        return "MKL is not installed (pip install 'deeplinear[mkl]')"
    try:
        _core._blas_bind_file(path, "mkl", reason, True)
    except RuntimeError as exc:
        return f"MKL cannot be bound: {exc}"
    if "KMP_BLOCKTIME" not in os.environ:
        # MKL's OpenMP threads spin ~200 ms after each call by default: against NumPy's pool on
        # the same cores (a user's NumPy work between training calls) that costs time.
        iomp = os.path.join(os.path.dirname(path), "libiomp5.so")
        try:
            ctypes.CDLL(iomp).kmp_set_blocktime(0)
        except (OSError, AttributeError):
            pass
    return None


def bind_blas(prefer: str = "numpy") -> str:
    """Bind the core's products to NumPy's OpenBLAS (``"numpy"``, the default choice), to
    scipy-openblas32 (``"bundled"``) or to MKL (``"mkl"``, when installed; otherwise the
    default choice, the reason in ``build_info()["blas_reason"]``); returns the source in use.
    Testing/debugging knob: the default choice, made at import, is the right one."""
    if prefer not in _CHOICES:
        raise ValueError(f"prefer: must be one of {', '.join(map(repr, _CHOICES))}, got {prefer!r}")
    if not hasattr(_core, "_blas_bind_file"):  # built without BLAS (Eigen's own products)
        return "eigen"
    if prefer == "bundled":
        _bind_bundled("forced (the bundled library was asked for)")
        return "bundled"
    why_not_mkl = None
    if prefer == "mkl":
        why_not_mkl = _bind_mkl("asked for (DEEPLINEAR_BLAS_LIBRARY=mkl or bind_blas('mkl'))")
        if why_not_mkl is None:
            return "mkl"
    first = "" if why_not_mkl is None else f"{why_not_mkl}; "
    try:
        path = _numpy_extension_path()
    except (ImportError, AttributeError) as exc:
        _bind_bundled(f"{first}NumPy's compiled core not found ({exc})")
        return "bundled"
    try:
        _core._blas_bind_loaded(path, f"{first}shared with NumPy (one library, one thread pool)")
    except RuntimeError as exc:
        _bind_bundled(f"{first}NumPy's BLAS cannot be shared: {exc}")
        return "bundled"
    return "numpy"


def _choice_at_import() -> str:
    """The library asked for by the environment (``DEEPLINEAR_BLAS_LIBRARY``, ``DEEPLINEAR_BUNDLED_BLAS``).
    Each is checked: ``DEEPLINEAR_BUNDLED_BLAS`` is ``1`` (force the bundled library) or unset,
    empty or ``0`` (any other value, e.g. ``false``, is refused rather than read as a request);
    set to ``1`` beside a ``DEEPLINEAR_BLAS_LIBRARY`` other than ``bundled`` is a conflict."""
    raw = os.environ.get(_CHOICE_ENV, "")
    choice = raw.strip().lower()
    if choice and choice not in _CHOICES:
        raise ImportError(f"deeplinear: {_CHOICE_ENV}={raw!r}: must be one of {', '.join(_CHOICES)}")
    forced = os.environ.get(_FORCE_BUNDLED_ENV, "").strip()
    if forced not in ("", "0", "1"):
        raise ImportError(f"deeplinear: {_FORCE_BUNDLED_ENV}={forced!r}: must be 1 (force the bundled "
                          f"library) or 0 / unset")
    if forced == "1":
        if choice not in ("", "bundled"):
            raise ImportError(f"deeplinear: {_FORCE_BUNDLED_ENV}=1 asks for the bundled library but "
                              f"{_CHOICE_ENV}={raw!r} for another; set one of them")
        return "bundled"
    return choice or "numpy"


bind_blas(_choice_at_import())
