"""Input validation, in one place, before anything enters the compiled core.

Every public entry point checks its arguments here and raises a ``ValueError`` (or a
``TypeError`` for a wrong type) whose message starts with the argument's name.  Arrays of any
layout and strides are accepted and converted once to C order (as NumPy, SciPy and scikit-learn
do); integer arrays are converted to float64 (boolean ones only as masks), other float dtypes (float16,
longdouble) to float64; complex, object and non-numeric arrays are refused with a TypeError.
Problems copy their data once into read-only arrays they own (``copy=True``), so nothing the
caller does to its arrays afterwards changes them.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

FLOAT_DTYPES = {np.dtype(np.float64): "float64", np.dtype(np.float32): "float32"}


def resolve_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype: must be float64 or float32, got {dtype!r}") from exc
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype: must be float64 or float32, got {dt}")
    return dt


def matrix(value: Any, name: str, *, dtype: Any = None, finite: bool = True, copy: bool = False,
           contiguous: bool = True) -> np.ndarray:
    """A 2-D floating array, C-contiguous, finite (by default).

    ``dtype=None`` keeps float64/float32 input in its dtype and converts integer and
    other float arrays to float64; otherwise the result has ``dtype``.  Any layout is accepted
    (a copy in C order is made only where needed).  ``copy=True``: always a new array, owned by
    the caller and made read-only.  ``contiguous=False`` (with ``finite=False``, for a
    consumer that copies and checks any layout itself, e.g. the core's weights): the array in
    its layout, converted only where its dtype differs or it is not aligned.  Complex, boolean,
    object and non-numeric arrays are refused.
    """
    value = _real_array(value, name)
    if value.ndim != 2:
        raise ValueError(f"{name}: must be 2-D, got shape {value.shape}")
    if value.shape[0] == 0 or value.shape[1] == 0:
        raise ValueError(f"{name}: must not be empty, got shape {value.shape}")
    if dtype is not None:
        target_dtype = resolve_dtype(dtype)
    else:
        target_dtype = value.dtype if value.dtype in FLOAT_DTYPES else np.dtype(np.float64)
    if copy:
        out = np.array(value, dtype=target_dtype, order="C", copy=True)
    elif not contiguous:
        out = value.astype(target_dtype, copy=False)
        if not out.flags.aligned:
            out = np.ascontiguousarray(out)
    else:
        out = np.ascontiguousarray(value, dtype=target_dtype)
    if finite and not _all_finite(out):
        raise ValueError(f"{name}: contains NaN or Inf")
    if copy:
        out.flags.writeable = False
    return out


def vector(value: Any, name: str, *, finite: bool = True, min_size: int = 1) -> np.ndarray:
    """A 1-D float64 array (a new one) of at least ``min_size`` values, finite (by default),
    from an array of any layout or a list; integer and other float dtypes are converted;
    complex, boolean, object and non-numeric arrays are refused with a TypeError, other shapes
    with a ValueError, naming ``name``."""
    value = _real_array(value, name)
    if value.ndim != 1:
        raise ValueError(f"{name}: must be 1-D, got shape {value.shape}")
    if value.size < min_size:
        raise ValueError(f"{name}: must have at least {min_size} value{'s' if min_size > 1 else ''}, "
                         f"got {value.size}")
    out = np.array(value, dtype=np.float64, copy=True)
    if finite and not _all_finite(out):
        raise ValueError(f"{name}: contains NaN or Inf")
    return out


def _all_finite(a: np.ndarray) -> bool:
    """Whether every entry of ``a`` is finite: its sum is (NaN and ±Inf propagate into a sum),
    one pass without a temporary; a sum that overflows is checked entry by entry."""
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.sum(a)):
            return True
    return bool(np.isfinite(a).all())


def _real_array(value: Any, name: str) -> np.ndarray:
    """``value`` as an array of a float or integer dtype (lists converted); complex, boolean,
    object and non-numeric arrays refused with a TypeError naming ``name``."""
    value = _as_array(value, name)
    kind = value.dtype.kind
    if kind == "c":
        raise TypeError(f"{name}: must be real, got complex dtype {value.dtype}")
    if kind not in "iuf":
        raise TypeError(f"{name}: must be a float or integer array, got dtype {value.dtype}")
    return value


def _as_array(value: Any, name: str) -> np.ndarray:
    """An ndarray as it is; a (nested) list or tuple through ``np.asarray``; anything else refused."""
    if isinstance(value, np.ndarray):
        return value
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name}: must be a NumPy array, got {type(value).__name__}")
    try:
        return np.asarray(value)
    except ValueError as exc:  # ragged nested lists
        raise ValueError(f"{name}: cannot be converted to a 2-D array ({exc})") from exc


def mask01(value: Any, name: str, shape: tuple[int, int]) -> np.ndarray:
    """A 0/1 mask of the given shape, as a read-only float64 copy (bool, integer and float
    masks of any layout, arrays or nested lists, are converted)."""
    value = _as_array(value, name)
    if value.dtype == np.bool_:
        value = value.astype(np.float64)
    m = matrix(value, name, dtype=np.float64, copy=True)
    if m.shape != shape:
        raise ValueError(f"{name}: shape {m.shape} does not match the target's shape {shape}")
    if not np.all((m == 0) | (m == 1)):
        raise ValueError(f"{name}: entries must be 0 or 1")
    return m


def real(value: Any, name: str, *, low: float | None = None, high: float | None = None,
         low_open: bool = False, high_open: bool = False, allow_none: bool = False) -> float | None:
    """A finite real number in a range; bounds are closed unless *_open."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: must be a real number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name}: must be finite, got {v}")
    if low is not None and (v < low or (low_open and v == low)):
        raise ValueError(f"{name}: must be {'>' if low_open else '>='} {low}, got {v}")
    if high is not None and (v > high or (high_open and v == high)):
        raise ValueError(f"{name}: must be {'<' if high_open else '<='} {high}, got {v}")
    return v


# The largest count (steps, sizes, intervals) accepted: the core holds them in 64-bit integers,
# with room for sums such as steps + 1.
INDEX_MAX = 2**62


def integer(value: Any, name: str, *, low: int | None = None, high: int | None = INDEX_MAX,
            allow_none: bool = False) -> int | None:
    """An integer in ``[low, high]`` (``high`` defaults to :data:`INDEX_MAX`, what the core's
    64-bit integers hold; ``None`` for no bound, e.g. a NumPy seed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: must be an integer, got {type(value).__name__}")
    v = int(value)
    if low is not None and v < low:
        raise ValueError(f"{name}: must be >= {low}, got {v}")
    if high is not None and v > high:
        bound = "2**62" if high == INDEX_MAX else str(high)
        raise ValueError(f"{name}: must be <= {bound}, got {v}")
    return v


def choice(value: Any, name: str, options: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name}: must be one of {', '.join(repr(o) for o in options)}; got {value!r}")
    return value


def boolean(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: must be True or False, got {type(value).__name__}")
    return bool(value)
