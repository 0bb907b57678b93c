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
    """Matrix completion: fit Φ on the observed entries; test loss on held-out ones.

    Two forms with the same loss:

    - dense, ``Completion(target, mask)``: ``mask`` is a 0/1 array (bool, integer or float) of
      the target's shape; the test entries are the complement of the mask.  Trains a wide
      :class:`~deeplinear.DeepLinearNetwork` or a :class:`~deeplinear.CompressedCompletion`.
    - sparse, :meth:`Completion.from_entries`: the observed entries only (COO input), plus an
      optional held-out test set; no ``d × d`` array exists.  Trains a
      :class:`~deeplinear.CompressedCompletion`.

    The mean reduction divides by **all** ``d_L·d_0`` entries, not by the number observed (the
    paper's convention, MATH.md §1).  The test error reported as ``Result.test_rmse`` is the
    relative RMSE on the test entries, ``‖P_test(Ŵ − Φ)‖ / ‖P_test(Φ)‖``.
    """

    kind = "completion"

    def __init__(self, target: np.ndarray, mask: np.ndarray, reduction: str = "mean") -> None:
        super().__init__(target, reduction)
        self.mask = V.mask01(mask, "mask", self.target.shape)
        self._entries_cache: tuple | None = None

    @classmethod
    def from_entries(cls, rows: Any, cols: Any, values: Any, shape: tuple[int, int], reduction: str = "mean",
                     test: tuple | None = None) -> "Completion":
        """A completion problem given by its observed entries ``Φ[rows[k], cols[k]] = values[k]``.

        Parameters
        ----------
        rows, cols : 1-D integer arrays
            Indices of the observed entries (any order; stored sorted by row, then column, in
            the layout of the core's kernels: row offsets, int32 columns, float64 values).
        values : 1-D real array
            Finite values, as many as ``rows``.
        shape : (int, int)
            ``(d_L, d_0)``, the shape of the matrix.
        reduction : {"mean", "sum"}
            ``c = 1/(d_L·d_0)`` (mean over all entries, MATH.md §1) or 1.
        test : (rows, cols, values), optional
            Held-out entries for the test loss and ``test_rmse``; must not overlap the
            observed ones.  Without it no test loss is recorded.

        Raises
        ------
        ValueError
            Duplicate, out-of-range or non-finite entries, a test entry that is also observed,
            arrays of different lengths, no observed entry; ``TypeError`` for non-integer
            indices.
        """
        self = cls.__new__(cls)
        Problem.__init__(self, reduction)
        shape = _shape2(shape)
        self._shape = shape
        self.target = None
        self.mask = None
        self._casts = {}
        obs, obs_keys = _entries_from_coo(rows, cols, values, shape, ("rows", "cols", "values"))
        if obs.nnz == 0:
            raise ValueError("rows: no observed entry")
        tst = None
        if test is not None:
            if not isinstance(test, (tuple, list)) or len(test) != 3:
                raise ValueError("test: must be a tuple (rows, cols, values)")
            tst, test_keys = _entries_from_coo(*test, shape, ("test rows", "test cols", "test values"))
            pos = np.searchsorted(obs_keys, test_keys)
            pos = np.minimum(pos, len(obs_keys) - 1)
            hit = obs_keys[pos] == test_keys
            if np.any(hit):
                k = int(test_keys[np.argmax(hit)])
                raise ValueError(f"test: entry ({k // shape[1]}, {k % shape[1]}) is also observed "
                                 f"({int(hit.sum())} test entries overlap the observed ones)")
        self._entries_cache = (obs, tst)
        return self

    @property
    def shape(self) -> tuple[int, int]:
        return self._shape if self.target is None else self.target.shape

    @property
    def c(self) -> float:
        return _reduction_constant(self.reduction, self.shape[0] * self.shape[1])

    @property
    def is_sparse(self) -> bool:
        """True for a problem made by :meth:`from_entries` (no dense target or mask)."""
        return self.target is None

    @property
    def n_observed(self) -> int:
        return self._entries()[0].nnz if self.is_sparse else int(np.count_nonzero(self.mask))

    @property
    def observed_fraction(self) -> float:
        return self.n_observed / (self.shape[0] * self.shape[1])

    @property
    def has_test_loss(self) -> bool:
        """True unless the problem was made by :meth:`from_entries` without ``test=``."""
        return not self.is_sparse or self._entries()[1] is not None

    def _entries(self) -> tuple:
        """(observed, test) entries in the core's layout; the dense form's test set is the
        complement of the mask (built on first use and kept)."""
        if self._entries_cache is None:
            obs = self.mask != 0
            self._entries_cache = (_Entries.from_mask(self.target, obs), _Entries.from_mask(self.target, ~obs))
        return self._entries_cache

    def test_rmse(self, test_loss: Any) -> np.ndarray | None:
        """Relative RMSE on the test entries, ``‖P_test(Ŵ − Φ)‖ / ‖P_test(Φ)‖``, from test
        losses ``(c/2)‖P_test(Ŵ − Φ)‖²``; None without test entries (or all of them zero)."""
        test = self._entries()[1]
        if test_loss is None or test is None or test.sumsq == 0:
            return None
        return np.sqrt(2.0 * np.asarray(test_loss, dtype=np.float64) / (self.c * test.sumsq))

    def _core_args(self, dtype):
        if self.is_sparse:
            raise ValueError("problem: a Completion made by from_entries has no dense target or mask; "
                             "a wide network needs Completion(target, mask), or train a dl.CompressedCompletion")
        return _cast(self.target, dtype, self._casts), _cast(self.mask, dtype, self._casts)

    def describe(self) -> dict:
        d = super().describe()
        if self.is_sparse:
            obs, tst = self._entries()
            d.update({"sparse": True, "observed": obs.nnz, "test": 0 if tst is None else tst.nnz})
        return d


class _Entries:
    """Entries sorted by row then column, in the core's layout: ``row_ptr`` (int64, rows + 1
    offsets), ``col`` (int32), ``val`` (float64); ``sumsq`` = Σ val²."""

    def __init__(self, row_ptr: np.ndarray, col: np.ndarray, val: np.ndarray) -> None:
        self.row_ptr, self.col, self.val = row_ptr, col, val
        for a in (row_ptr, col, val):
            a.flags.writeable = False
        self.nnz = int(val.size)
        self.sumsq = float(np.dot(val, val))

    @property
    def core(self) -> tuple:
        return (self.row_ptr, self.col, self.val)

    def coo(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, cols, values) of the stored entries."""
        rows = np.repeat(np.arange(len(self.row_ptr) - 1), np.diff(self.row_ptr))
        return rows, self.col.astype(np.int64), self.val

    @classmethod
    def from_mask(cls, target: np.ndarray, mask: np.ndarray) -> "_Entries":
        r, c = np.nonzero(mask)  # row-major order: sorted by row, then column
        counts = np.bincount(r, minlength=mask.shape[0])
        row_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(row_ptr, c.astype(np.int32), np.ascontiguousarray(target[r, c], dtype=np.float64))


def _shape2(shape: Any) -> tuple[int, int]:
    if not isinstance(shape, (tuple, list)) or len(shape) != 2:
        raise ValueError(f"shape: must be a pair (rows, cols), got {shape!r}")
    d_out, d_in = (V.integer(x, "shape", low=1) for x in shape)
    if d_in >= 2 ** 31:
        raise ValueError(f"shape: at most 2**31 - 1 columns, got {d_in}")
    return d_out, d_in


def _entries_from_coo(rows: Any, cols: Any, values: Any, shape: tuple[int, int], names: tuple) -> tuple:
    """Validated entries (sorted) and their sorted keys ``row * d_in + col``."""
    idx = []
    for a, name, bound in ((rows, names[0], shape[0]), (cols, names[1], shape[1])):
        a = np.asarray(a)
        if a.ndim != 1:
            raise ValueError(f"{name}: must be 1-D, got shape {a.shape}")
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"{name}: must hold integers, got dtype {a.dtype}")
        a = a.astype(np.int64, copy=False)
        if a.size and (a.min() < 0 or a.max() >= bound):
            bad = int(a[(a < 0) | (a >= bound)][0])
            raise ValueError(f"{name}: index {bad} out of range [0, {bound})")
        idx.append(a)
    vals = np.asarray(values)
    if vals.ndim != 1:
        raise ValueError(f"{names[2]}: must be 1-D, got shape {vals.shape}")
    if vals.size and not (np.issubdtype(vals.dtype, np.floating) or np.issubdtype(vals.dtype, np.integer)):
        raise TypeError(f"{names[2]}: must be real numbers, got dtype {vals.dtype}")
    vals = vals.astype(np.float64, copy=False)
    if not (len(idx[0]) == len(idx[1]) == len(vals)):
        raise ValueError(f"{names[2]}: {names[0]}, {names[1]} and {names[2]} must have the same length, got "
                         f"{len(idx[0])}, {len(idx[1])} and {len(vals)}")
    if not np.all(np.isfinite(vals)):
        k = int(np.argmin(np.isfinite(vals)))
        raise ValueError(f"{names[2]}: contains NaN or Inf (entry {k})")
    keys = idx[0] * shape[1] + idx[1]
    del idx
    fresh = vals is not values and not np.may_share_memory(vals, np.asarray(values))
    if keys.size > 1 and not np.all(keys[1:] > keys[:-1]):
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        vals = vals[order]
        fresh = True
        del order
        dup = keys[1:] == keys[:-1]
        if np.any(dup):
            k = int(keys[1:][dup][0])
            raise ValueError(f"{names[0]}, {names[1]}: duplicate entry ({k // shape[1]}, {k % shape[1]}) "
                             f"({int(dup.sum())} duplicates)")
    r = keys // shape[1]
    counts = np.bincount(r, minlength=shape[0])
    del r
    row_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    col = (keys % shape[1]).astype(np.int32)
    # the stored values are the problem's own (read-only) copy, never the caller's array
    return _Entries(row_ptr, col, vals if fresh else vals.copy()), keys


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
    """A finite 2-D float64 matrix from an array of any memory layout and float or integer
    dtype (converted once to C order: the problem keeps a copy anyway)."""
    return V.matrix(value, name, dtype=np.float64)


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

def _generator(rng: Any) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: must be a numpy.random.Generator (numpy.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")
    return rng


def haar_orthogonal(n: int, rng: np.random.Generator) -> np.ndarray:
    """An ``n × n`` Haar-distributed orthogonal matrix: ``Q·sign(diag R)`` from the QR of a
    standard normal matrix drawn from ``rng`` (MATH.md §1)."""
    n = V.integer(n, "n", low=1)
    rng = _generator(rng)
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
    d, rank = _check_sizes(d, rank)
    d_in = d if d_in is None else V.integer(d_in, "d_in", low=1)
    if rank > d_in:
        raise ValueError(f"rank: must be <= d_in = {d_in}, got {rank}")
    rng = _generator(rng)
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
