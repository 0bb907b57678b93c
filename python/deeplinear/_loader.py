"""Load the compiled core, after making its BLAS library visible.

The extension links against ``libscipy_openblas.so`` from the PyPI package ``scipy-openblas32``
(built with ``EIGEN_USE_BLAS``).  Its run path points at the sibling ``scipy_openblas32``
package of site-packages; loading the library by path first also covers other layouts
(editable installs, user sites).
"""

from __future__ import annotations

import ctypes
import os


def _preload_openblas() -> None:
    try:
        import scipy_openblas32 as sob
    except ImportError:  # built without the BLAS backend, or not installed: the import says
        return
    path = os.path.join(sob.get_lib_dir(), f"lib{sob.get_library()}.so")
    if os.path.exists(path):
        ctypes.CDLL(path, mode=getattr(os, "RTLD_GLOBAL", 0) | getattr(os, "RTLD_NOW", 0))


_preload_openblas()

from . import _core  # noqa: E402

__all__ = ["_core"]
