"""Learning problems (MATH.md §1) and generators of synthetic instances.

Loss, with ``c = 1`` for ``reduction="sum"`` and ``c = 1/(number of output entries)`` for
``"mean"`` (mean over **all** entries, also for completion)::

    f(W) = (c/2) ‖M ⊙ (W_L ⋯ W_1 − Φ)‖_F² + (λ/2) Σ_l ‖W_l‖_F²

with ``M`` all ones (factorization) or a 0/1 mask (completion), and for regression
``f = (c/2) ‖W_L ⋯ W_1 X − Y‖_F² + …`` with ``c = 1/(d_L·n)`` for ``"mean"``; classification
is regression onto the one-hot matrix of the labels (``c = 1/(K·n)``), through the network's
activations when it has them (MATH.md §5).  The weight
decay λ belongs to the optimizer (``dl.GD(weight_decay=λ)``).

A problem owns its data: the arrays given are copied once, at construction, into C-ordered,
read-only float64 arrays (any layout, strides and float or integer dtype accepted; complex and
object arrays refused with a TypeError naming the argument), so nothing the caller does to its
arrays afterwards changes the problem, and nothing derived from it can go stale.  A float32
network trains on a float32 copy made once per problem (:meth:`Problem._core_args`).
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


def _reduction_constant(reduction: str, entries: int) -> float:
    """c of the loss: 1 for "sum", 1/(number of output entries) for "mean" (MATH.md §1); the
    one place it is computed (the core receives it with the problem)."""
    return 1.0 if reduction == "sum" else 1.0 / float(entries)


def _cast(a: np.ndarray | None, dtype: np.dtype, cache: dict) -> np.ndarray | None:
    """The problem's (float64, read-only) array for a network of ``dtype``: itself, or a
    read-only copy made once per dtype and kept for the problem's lifetime."""
    if a is None or a.dtype == dtype:
        return a
    key = (id(a), dtype)  # a is one of the problem's own immutable arrays
    if key not in cache:
        cast = np.ascontiguousarray(a, dtype=dtype)
        cast.flags.writeable = False
        cache[key] = cast
    return cache[key]


class _TargetProblem(Problem):
    """A problem with a target Φ of the end-to-end matrix's shape ``(d_L, d_0)``."""

    def __init__(self, target: np.ndarray, reduction: str) -> None:
        super().__init__(reduction)
        self.target = V.matrix(target, "target", dtype=np.float64, copy=True)
        self._casts: dict = {}

    @property
    def shape(self) -> tuple[int, int]:
        return self.target.shape

    @property
    def c(self) -> float:
        return _reduction_constant(self.reduction, self.target.size)


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
        self.X = V.matrix(X, "X", dtype=np.float64, copy=True)
        self.Y = V.matrix(Y, "Y", dtype=np.float64, copy=True)
        if self.X.shape[1] != self.Y.shape[1]:
            raise ValueError(f"Y: has {self.Y.shape[1]} columns (samples) but X has {self.X.shape[1]}")
        self._casts: dict = {}

    @property
    def shape(self) -> tuple[int, int]:
        return (self.Y.shape[0], self.X.shape[0])

    @property
    def c(self) -> float:
        return _reduction_constant(self.reduction, self.Y.size)

    def _core_args(self, dtype):
        return _cast(self.X, dtype, self._casts), _cast(self.Y, dtype, self._casts)


def _readonly(a: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``a`` that nobody can write to."""
    out = np.array(a, order="C", copy=True)
    out.flags.writeable = False
    return out


def _any_layout(value: Any, name: str) -> np.ndarray:
    """A finite 2-D float matrix from an array of any memory layout (converted once to C
    order: the problem keeps a copy anyway)."""
    if isinstance(value, np.ndarray) and value.ndim == 2 and np.issubdtype(value.dtype, np.floating):
        value = np.ascontiguousarray(value)
    return V.matrix(value, name)


def _labels(value: Any, name: str, n: int) -> np.ndarray:
    """A 1-D integer array of ``n`` labels (bool, float and object arrays refused)."""
    if isinstance(value, (list, tuple)):
        value = np.asarray(value)
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name}: must be a 1-D integer array, got {type(value).__name__}")
    if value.dtype == np.bool_ or not np.issubdtype(value.dtype, np.integer):
        raise TypeError(f"{name}: must be an integer array, got dtype {value.dtype}"
                        + (" (whole-number floats: pass labels.astype(int))"
                           if np.issubdtype(value.dtype, np.floating) else ""))
    if value.ndim != 1:
        raise ValueError(f"{name}: must be 1-D, got shape {value.shape}")
    if value.shape[0] != n:
        raise ValueError(f"{name}: has {value.shape[0]} labels but X has {n} samples (columns)")
    return value


class Classification(Problem):
    """Classification with the squared loss onto one-hot targets (MATH.md §5)::

        f(W) = (c/2) ‖F(X) − Y‖_F²,   c = 1/(K·n) ("mean") or 1 ("sum"),

    with ``F(X) = W_L H_{L−1}`` the network's output on ``X`` (shape ``(d_0, n)``, columns
    are samples, as in :class:`Regression`) and ``Y`` the ``K × n`` one-hot matrix of the
    labels: ``Y[k, i] = 1`` iff sample i has the k-th class.

    Parameters
    ----------
    X : array of shape (d_0, n)
        Training inputs, one sample per column; finite.
    labels : integer array of length n
        Any integer values; the sorted distinct values are the classes (``classes``), mapped
        to ``0 … K−1`` (``y``); at least two classes.
    reduction : {"mean", "sum"}
    test : (X_test, labels_test), optional
        A test split: its labels must be among the training classes.  ``train`` then reports
        the test accuracy next to the training accuracy (``Result.test_accuracy``).

    Attributes
    ----------
    X, labels, classes, y, Y, X_test, labels_test, y_test : read-only arrays (copies)
    K : int, the number of classes
    """

    kind = "classification"

    def __init__(self, X: np.ndarray, labels: Any, reduction: str = "mean", *,
                 test: tuple[Any, Any] | None = None) -> None:
        super().__init__(reduction)
        X = _any_layout(X, "X")
        labels = _labels(labels, "labels", X.shape[1])
        classes, y = np.unique(labels, return_inverse=True)
        if classes.size < 2:
            raise ValueError(f"labels: need at least 2 classes, all {labels.size} samples have label {classes[0]}")
        self.X = _readonly(X)
        self.labels = _readonly(labels)
        self.classes = _readonly(classes)
        self.y = _readonly(y.reshape(-1).astype(np.int64))
        onehot = np.zeros((classes.size, X.shape[1]))
        onehot[self.y, np.arange(X.shape[1])] = 1.0
        self.Y = _readonly(onehot)
        self.X_test = self.labels_test = self.y_test = None
        if test is not None:
            if not isinstance(test, tuple) or len(test) != 2:
                raise TypeError("test: must be a tuple (X_test, labels_test)")
            Xt = _any_layout(test[0], "X_test")
            if Xt.shape[0] != X.shape[0]:
                raise ValueError(f"X_test: has {Xt.shape[0]} rows (features) but X has {X.shape[0]}")
            lt = _labels(test[1], "labels_test", Xt.shape[1])
            unseen = np.setdiff1d(lt, classes)
            if unseen.size:
                raise ValueError(f"labels_test: classes not in the training labels: {unseen[:10].tolist()}")
            self.X_test = _readonly(Xt)
            self.labels_test = _readonly(lt)
            self.y_test = _readonly(np.searchsorted(classes, lt).astype(np.int64))
        self._casts: dict = {}

    @property
    def K(self) -> int:
        return int(self.classes.size)

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        return (self.K, self.X.shape[0])

    @property
    def c(self) -> float:
        return 1.0 if self.reduction == "sum" else 1.0 / self.Y.size

    def _core_args(self, dtype):
        return _cast(self.X, dtype, self._casts), _cast(self.Y, dtype, self._casts)

    def predict(self, net, X: Any) -> np.ndarray:
        """The predicted labels (original values) of the samples ``X`` (``d_0 × n``): the class
        of the largest output, ``classes[argmax_k F(X)_k]``."""
        return self.classes[np.argmax(net.forward(X), axis=0)]

    def accuracy(self, net) -> tuple[float, float | None]:
        """``(train accuracy, test accuracy or None)``: the fraction of samples whose largest
        output is their class."""
        train = float(np.mean(np.argmax(net.forward(self.X), axis=0) == self.y))
        test = None
        if self.X_test is not None:
            test = float(np.mean(np.argmax(net.forward(self.X_test), axis=0) == self.y_test))
        return train, test

    def describe(self) -> dict:
        out = super().describe()
        out.update({"classes": self.classes.tolist(), "n_samples": self.n_samples,
                    "n_test": None if self.X_test is None else int(self.X_test.shape[1])})
        return out


# -- generators ---------------------------------------------------------------------------------

def haar_orthogonal(n: int, rng: np.random.Generator) -> np.ndarray:
    """An ``n × n`` Haar-distributed orthogonal matrix: ``Q·sign(diag R)`` from the QR of a
    standard normal matrix drawn from ``rng`` (MATH.md §1)."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def orthogonal_classes(classes: int = 5, per_class: int = 10, seed: int = 0, *,
                       reduction: str = "mean") -> Classification:
    """The paper's synthetic classification setting (MATH.md §5): ``N = classes·per_class``
    samples, the columns of an ``N × N`` Haar-orthogonal matrix (:func:`haar_orthogonal` from
    ``numpy.random.default_rng(seed)``), labels ``0 … K−1`` in blocks of ``per_class``."""
    classes = V.integer(classes, "classes", low=2)
    per_class = V.integer(per_class, "per_class", low=1)
    rng = np.random.default_rng(V.integer(seed, "seed", low=0))
    n = classes * per_class
    return Classification(haar_orthogonal(n, rng), np.repeat(np.arange(classes), per_class), reduction)


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
    rng = np.random.default_rng(V.integer(seed, "seed", low=0))
    return Factorization(low_rank_target(d, rank, rng), reduction=reduction)


def completion(d: int, rank: int, observed: float, seed: int = 0, *, reduction: str = "mean") -> Completion:
    """A random completion problem: the target of :func:`factorization` (same seed, same
    draws), then a uniform mask: entry observed iff ``U < observed``, ``U`` a d × d uniform
    matrix drawn next from the same generator."""
    d, rank = _check_sizes(d, rank)
    observed = V.real(observed, "observed", low=0.0, high=1.0, low_open=True)
    rng = np.random.default_rng(V.integer(seed, "seed", low=0))
    target = low_rank_target(d, rank, rng)
    mask = rng.random((d, d)) < observed
    return Completion(target, mask, reduction=reduction)
