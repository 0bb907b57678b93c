"""Input validation, in one place, before anything enters the compiled core.

Every public entry point checks its arguments here and raises a ``ValueError`` (or a
``TypeError`` for a wrong type) whose message starts with the argument's name.  Arrays are
never reinterpreted or silently copied: a Fortran-ordered or strided array is refused with a
message saying how to convert it (``np.ascontiguousarray``), an integer or boolean array where
floats are expected is refused.  The one conversion done is the documented cast of a problem's
data to a float32 network's dtype.
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


def matrix(value: Any, name: str, *, dtype: Any = None, finite: bool = True) -> np.ndarray:
    """A 2-D floating array, C-contiguous, finite (by default).

    ``dtype=None`` keeps float64/float32 input as it is; otherwise the array must already have
    a floating dtype and is cast to ``dtype`` (an explicit, documented conversion).
    Integer or boolean arrays are refused: they are almost always a mistake for weights or
    targets.
    """
    value = _as_array(value, name)
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: dtype must be float64 or float32, got {value.dtype}")
    if value.ndim != 2:
        raise ValueError(f"{name}: must be 2-D, got shape {value.shape}")
    if value.shape[0] == 0 or value.shape[1] == 0:
        raise ValueError(f"{name}: must not be empty, got shape {value.shape}")
    if not value.flags.c_contiguous:
        raise ValueError(f"{name}: must be C-contiguous (row-major); pass np.ascontiguousarray({name})")
    target_dtype = value.dtype if dtype is None else resolve_dtype(dtype)
    out = value if value.dtype == target_dtype else value.astype(target_dtype)
    if finite and not np.isfinite(out).all():
        raise ValueError(f"{name}: contains NaN or Inf")
    return out


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
    """A 0/1 mask of the given shape, as float64 (bool and integer masks, arrays or nested
    lists, are converted)."""
    value = _as_array(value, name)
    if isinstance(value, np.ndarray) and (value.dtype == np.bool_ or np.issubdtype(value.dtype, np.integer)):
        if not value.flags.c_contiguous:
            raise ValueError(f"{name}: must be C-contiguous (row-major); pass np.ascontiguousarray({name})")
        value = value.astype(np.float64)
    m = matrix(value, name)
    if m.shape != shape:
        raise ValueError(f"{name}: shape {m.shape} does not match the target's shape {shape}")
    if not np.all((m == 0) | (m == 1)):
        raise ValueError(f"{name}: entries must be 0 or 1")
    return m.astype(np.float64, copy=False)


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
