"""Learning problems (MATH.md §1) and generators of synthetic instances.

Loss, with ``c = 1`` for ``reduction="sum"`` and ``c = 1/(number of output entries)`` for
``"mean"`` (mean over **all** entries, also for completion)::

    f(W) = (c/2) ‖M ⊙ (W_L ⋯ W_1 − Φ)‖_F² + (λ/2) Σ_l ‖W_l‖_F²

with ``M`` all ones (factorization) or a 0/1 mask (completion), and for regression
``f = (c/2) ‖W_L ⋯ W_1 X − Y‖_F² + …`` with ``c = 1/(d_L·n)`` for ``"mean"``.  The weight
decay λ belongs to the optimizer (``dl.GD(weight_decay=λ)``).

The problem objects copy nothing: they keep validated, C-contiguous arrays (a copy is made
only where the input was not already float64/float32 C-contiguous, which is refused instead).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _validation as V

REDUCTIONS = ("sum", "mean")


class Problem:
    """Base class: a loss over the end-to-end map of a network."""

    kind: str = ""
    has_test_loss = False

    def __init__(self, reduction: str) -> None:
        self.reduction = V.choice(reduction, "reduction", REDUCTIONS)

    @property
    def shape(self) -> tuple[int, int]:
        """``(d_L, d_0)``: the shape of the end-to-end matrix the problem expects."""
        raise NotImplementedError

    def _core_args(self, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray | None]:
        """The two arrays handed to the core, cast (explicitly) to the network's dtype."""
        raise NotImplementedError

    @property
    def c(self) -> float:
        """The reduction constant c of the loss."""
        raise NotImplementedError

    def describe(self) -> dict:
        return {"kind": self.kind, "reduction": self.reduction, "shape": list(self.shape)}


def _cast(a: np.ndarray | None, dtype: np.dtype, cache: dict) -> np.ndarray | None:
    if a is None or a.dtype == dtype:
        return a
    key = (id(a), dtype)
    if key not in cache:  # one explicit cast per dtype, kept for the problem's lifetime
        cache[key] = np.ascontiguousarray(a, dtype=dtype)
    return cache[key]


class _TargetProblem(Problem):
    """A problem with a target Φ of the end-to-end matrix's shape ``(d_L, d_0)``."""

    def __init__(self, target: np.ndarray, reduction: str) -> None:
        super().__init__(reduction)
        self.target = V.matrix(target, "target")
        self._casts: dict = {}

    @property
    def shape(self) -> tuple[int, int]:
        return self.target.shape

    @property
    def c(self) -> float:
        return 1.0 if self.reduction == "sum" else 1.0 / self.target.size


class Factorization(_TargetProblem):
    """Deep matrix factorization: fit ``W_L ⋯ W_1`` to a target Φ of shape ``(d_L, d_0)``."""

    kind = "factorization"

    def __init__(self, target: np.ndarray, reduction: str = "mean") -> None:
        super().__init__(target, reduction)

    def _core_args(self, dtype):
        return _cast(self.target, dtype, self._casts), None

    def loss(self, end_to_end: np.ndarray) -> float:
        """The data term ``(c/2)‖W − Φ‖²`` at a given end-to-end matrix (NumPy, for checks)."""
        return 0.5 * self.c * float(np.sum((end_to_end - self.target) ** 2))


class Completion(_TargetProblem):
    """Matrix completion: fit Φ on the entries where ``mask == 1``; test loss on the rest.

    ``mask`` is a 0/1 array (bool, integer or float) of the target's shape.  The mean
    reduction divides by **all** ``d_L·d_0`` entries, not by the number observed (the paper's
    convention, MATH.md §1).
    """

    kind = "completion"
    has_test_loss = True

    def __init__(self, target: np.ndarray, mask: np.ndarray, reduction: str = "mean") -> None:
        super().__init__(target, reduction)
        self.mask = V.mask01(mask, "mask", self.target.shape)

    @property
    def observed_fraction(self) -> float:
        return float(self.mask.mean())

    def _core_args(self, dtype):
        return _cast(self.target, dtype, self._casts), _cast(self.mask, dtype, self._casts)


class Regression(Problem):
    """Linear regression ``Y ≈ W_L ⋯ W_1 X`` with ``X`` of shape ``(d_0, n)`` (columns are
    samples) and ``Y`` of shape ``(d_L, n)``."""

    kind = "regression"

    def __init__(self, X: np.ndarray, Y: np.ndarray, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.X = V.matrix(X, "X")
        self.Y = V.matrix(Y, "Y")
        if self.X.shape[1] != self.Y.shape[1]:
            raise ValueError(f"Y: has {self.Y.shape[1]} columns (samples) but X has {self.X.shape[1]}")
        self._casts: dict = {}

    @property
    def shape(self) -> tuple[int, int]:
        return (self.Y.shape[0], self.X.shape[0])

    @property
    def c(self) -> float:
        return 1.0 if self.reduction == "sum" else 1.0 / self.Y.size

    def _core_args(self, dtype):
        return _cast(self.X, dtype, self._casts), _cast(self.Y, dtype, self._casts)


# -- generators ---------------------------------------------------------------------------------

def low_rank_target(d: int, rank: int, rng: np.random.Generator, *, d_in: int | None = None) -> np.ndarray:
    """Gaussian low-rank target ``Φ = A Bᵀ / sqrt(rank)``, ``A`` (d × r) then ``B`` (d_in × r)
    standard normal, drawn in that order from ``rng``; entries of Φ have unit variance."""
    d_in = d if d_in is None else d_in
    A = rng.standard_normal((d, rank))
    B = rng.standard_normal((d_in, rank))
    return (A @ B.T) / np.sqrt(rank)


def _check_sizes(d: Any, rank: Any) -> tuple[int, int]:
    d = V.integer(d, "d", low=1)
    rank = V.integer(rank, "rank", low=1)
    if rank > d:
        raise ValueError(f"rank: must be <= d = {d}, got {rank}")
    return d, rank


def factorization(d: int, rank: int, seed: int = 0, *, reduction: str = "mean") -> Factorization:
    """A random rank-``rank`` factorization problem of size ``d × d``.

    Draw order from ``numpy.random.default_rng(seed)``: ``A`` (d × r), ``B`` (d × r), both
    standard normal; ``Φ = A Bᵀ / sqrt(r)``.
    """
    d, rank = _check_sizes(d, rank)
    rng = np.random.default_rng(V.integer(seed, "seed", low=0, high=None))
    return Factorization(low_rank_target(d, rank, rng), reduction=reduction)


def completion(d: int, rank: int, observed: float, seed: int = 0, *, reduction: str = "mean") -> Completion:
    """A random completion problem: the target of :func:`factorization` (same seed, same
    draws), then a uniform mask: entry observed iff ``U < observed``, ``U`` a d × d uniform
    matrix drawn next from the same generator."""
    d, rank = _check_sizes(d, rank)
    observed = V.real(observed, "observed", low=0.0, high=1.0, low_open=True)
    rng = np.random.default_rng(V.integer(seed, "seed", low=0, high=None))
    target = low_rank_target(d, rank, rng)
    mask = rng.random((d, d)) < observed
    return Completion(target, mask, reduction=reduction)
