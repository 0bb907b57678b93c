"""Deep linear networks: ``W_L ⋯ W_1``, ``W_l`` of shape ``(d_l, d_{l-1})``, ``W_1`` acting first;
optionally with a ReLU after every hidden layer (MATH.md §5)."""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Sequence

import numpy as np

from . import _memory
from . import _validation as V
from ._loader import _core

_CORE_NETWORK = {np.dtype(np.float64): _core.Network64, np.dtype(np.float32): _core.Network32}

INITS = ("orthogonal", "gaussian")
ACTIVATIONS = (None, "relu")


def _activation(value: Any) -> str | None:
    if value is not None and value not in ACTIVATIONS:
        raise ValueError(f"activation: must be None or 'relu', got {value!r}")
    return value

_BUSY_LOCK = threading.Lock()  # guards the test-and-set of a model's _busy


@contextlib.contextmanager
def exclusive_training(model):
    """Marks ``model`` (a network or a compressed completion model) as being trained for the
    duration of the ``with`` block; a ``ValueError`` naming ``net`` when it already is."""
    with _BUSY_LOCK:
        if getattr(model, "_busy", False):
            raise ValueError("net: is being trained by another call of train (another thread, or a "
                             "callback of that call); train a copy (net.copy()) or wait for it to finish")
        model._busy = True
    try:
        yield model
    finally:
        model._busy = False


def _frozen(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """The arrays, made read-only (stored initial weights are shared, never written)."""
    for a in arrays:
        a.flags.writeable = False
    return arrays


class DeepLinearNetwork:
    """A deep linear network whose weights live in the compiled core.

    Parameters
    ----------
    depth : int
        Number of layers L (>= 1).
    width : int, optional
        Size of every layer, ``d_0 = … = d_L = width`` (square layers).  Give either ``width``
        or ``dims``.
    dims : sequence of int, optional
        Layer sizes ``(d_0, …, d_L)`` (length ``depth + 1``) for rectangular layers.
    init : {"orthogonal", "gaussian"}
        ``"orthogonal"``: ``W_l = ε O_l`` with ``O_l`` Haar-orthogonal (QR of a Gaussian matrix
        with the sign fix ``Q·sign(diag R)``); a rectangular ``m × n`` layer takes the top-left
        block of a ``max(m, n)`` Haar matrix (orthonormal rows or columns).  ``"gaussian"``:
        i.i.d. normal entries with standard deviation ``ε·sqrt(min(m, n)/(m·n))``.
    init_scale : float
        ε, the scale of the initialisation.
    seed : int
        Seed of the core's portable generator (xoshiro256**, Box–Muller normals).  Draw order:
        layers 1..L in turn, each Gaussian matrix filled row by row.
    dtype : float64 (default) or float32
    activation : {None, "relu"}
        ``None``: the deep linear network.  ``"relu"``: ``H_l = relu(W_l H_{l−1})`` after every
        hidden layer ``l = 1 … L−1``, never after the output layer (MATH.md §5); the backward
        pass masks by the activation pattern (derivative 0 at 0).  Training, optimizers,
        weight decay, checkpoints and singular-value tracking (``"full"``, ``"incremental"``)
        work as for the linear network; what needs the end-to-end linear map (``end_to_end``,
        ``invariant_basis``, ``compress``, ``track="structured"``) refuses a ReLU network.

    Notes
    -----
    Weights are stored row-major (C order), matching NumPy's default layout.
    """

    def __init__(self, depth: int, width: int | None = None, *, dims: Sequence[int] | None = None,
                 init: str = "orthogonal", init_scale: float = 1.0, seed: int = 0,
                 dtype: Any = np.float64, activation: str | None = None) -> None:
        depth = V.integer(depth, "depth", low=1)
        if (width is None) == (dims is None):
            raise ValueError("width: give exactly one of width= or dims=")
        size_name = "width" if width is not None else "dims"  # what a too large size is
        if width is not None:
            width = V.integer(width, "width", low=1)
            dims = [width] * (depth + 1)
        else:
            if isinstance(dims, (str, bytes)) or not isinstance(dims, Sequence):
                raise TypeError("dims: must be a sequence of ints")
            dims = [V.integer(d, "dims", low=1) for d in dims]
            if len(dims) != depth + 1:
                raise ValueError(f"dims: must have depth + 1 = {depth + 1} entries, got {len(dims)}")
        init = V.choice(init, "init", INITS)
        init_scale = V.real(init_scale, "init_scale")
        seed = V.integer(seed, "seed", low=0, high=2**64 - 1)
        self._dtype = V.resolve_dtype(dtype)
        self.activation = _activation(activation)
        n_weights = sum(dims[l] * dims[l - 1] for l in range(1, len(dims)))
        # the weights, plus one max(d_l, d_{l-1})^2 Haar matrix at a time while initialising
        _memory.require(self._dtype.itemsize * n_weights + 8 * max(dims) ** 2, "the weights", size_name)
        try:
            self._net = _CORE_NETWORK[self._dtype].init(list(dims), init, init_scale, seed, self._core_activation)
        except ValueError as exc:  # finite ε whose weights overflow the dtype (float32)
            if "NaN or Inf" not in str(exc):
                raise
            raise ValueError(f"init_scale: {init_scale:g} gives weights beyond the range of "
                             f"{self._dtype} (max {np.finfo(self._dtype).max:.3g})") from None
        self._init_weights = None  # regenerated from the seed on demand
        self._writes_before = 0  # _writes of the network a copy was made from (copy)
        self.init = init
        self.init_scale = init_scale
        self.seed = seed

    @classmethod
    def from_weights(cls, weights: Sequence[np.ndarray], *, dtype: Any = None,
                     activation: str | None = None) -> "DeepLinearNetwork":
        """A network with the given weights ``[W_1, …, W_L]`` (``W_1`` acts first), copied in.

        ``dtype`` defaults to the weights' dtype (float64 or float32, all the same);
        ``activation`` as in the constructor.  Arrays of any layout and strides are copied
        straight into the core's storage, which checks them for NaN / Inf in the same pass
        (``ValueError`` naming ``weights[i]``); only another dtype is converted first.
        """
        activation = _activation(activation)
        if isinstance(weights, np.ndarray) or not isinstance(weights, Sequence) or len(weights) == 0:
            raise TypeError("weights: must be a non-empty list of 2-D arrays")
        # no copy and no finiteness pass here: the core's copy checks (one pass over each layer)
        mats = [V.matrix(w, f"weights[{i}]", finite=False, contiguous=False) for i, w in enumerate(weights)]
        dt = V.resolve_dtype(dtype if dtype is not None else mats[0].dtype)
        if dtype is None and any(m.dtype != dt for m in mats):
            raise TypeError("weights: all layers must have the same dtype (or pass dtype=)")
        mats = [m.astype(dt, copy=False) for m in mats]
        for i in range(1, len(mats)):
            if mats[i].shape[1] != mats[i - 1].shape[0]:
                raise ValueError(
                    f"weights[{i}]: has {mats[i].shape[1]} columns but weights[{i - 1}] has "
                    f"{mats[i - 1].shape[0]} rows (W_{i + 1} W_{i} must be defined)")
        self = cls.__new__(cls)
        self._dtype = dt
        self.activation = activation
        self._net = _CORE_NETWORK[dt](mats, self._core_activation)
        # the initial weights are the core's until it is handed out for writing (_writable_core
        # keeps a copy then): no second copy of never-trained weights
        self._init_weights = None
        self._writes_before = 0
        self.init = "given"
        self.init_scale = float("nan")
        self.seed = None
        return self

    # -- the core network ------------------------------------------------------------------
    @property
    def _core_activation(self) -> str:
        return "none" if self.activation is None else self.activation

    @property
    def is_linear(self) -> bool:
        """True when the network is linear (no activation, or no hidden layer)."""
        return self.activation is None or self.depth == 1

    def _require_linear(self, what: str) -> None:
        """ValueError naming ``net`` unless the network is linear (internal)."""
        if not self.is_linear:
            raise ValueError(f"net: {what} needs a linear network (activation=None); this one has "
                             f"activation={self.activation!r}")

    def _writable_core(self):
        """The core network, for code that may change its weights (a trainer, a checkpoint
        restore; internal): given weights (:meth:`from_weights`) are copied first, as the
        initial weights to keep, while they are still the current ones.  Read-only code uses
        ``self._net``."""
        if self._writes == 0 and self._init_weights is None and self.init == "given":
            self._init_weights = _frozen(self.weights)
        return self._net

    @property
    def _writes(self) -> int:
        """Changes whenever the weights may have changed: the core network's version (every
        write access to its weights: a training step, ``set_weight``, a checkpoint restore),
        so what was computed from the weights at a value (e.g. the end of a training call)
        still holds while it is unchanged; 0 while the weights are the initial ones."""
        return self._net.version + self._writes_before

    def _at_init(self) -> bool:
        """True while the weights are certainly the initial ones: nothing has written them
        since the network was created (a copy: since the original was)."""
        return self._writes == 0

    def _training(self):
        """Marks the network as being trained for the duration of the ``with`` block; a
        ``ValueError`` naming ``net`` when it already is: by another thread (the two runs would
        interleave their updates) or by the call whose callback this is (the outer run's
        history would no longer describe the network)."""
        return exclusive_training(self)

    # -- read-only views of the state -------------------------------------------------------
    @property
    def depth(self) -> int:
        """Number of layers L."""
        return self._net.depth

    @property
    def dims(self) -> tuple[int, ...]:
        """Layer sizes ``(d_0, …, d_L)``."""
        return tuple(self._net.dims)

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def weights(self) -> list[np.ndarray]:
        """Copies of ``[W_1, …, W_L]``."""
        return [self._net.weight(i) for i in range(self.depth)]

    def weight(self, layer: int) -> np.ndarray:
        """A copy of ``W_layer`` (1-based, as in the paper)."""
        layer = V.integer(layer, "layer", low=1)
        if layer > self.depth:
            raise ValueError(f"layer: must be between 1 and {self.depth}, got {layer}")
        return self._net.weight(layer - 1)

    def initial_weights(self) -> list[np.ndarray]:
        """The weights this network started from: regenerated from its seed (same draws, so
        exactly equal) or the weights given to :meth:`from_weights`."""
        shared = self._initial_weights_shared()
        return shared if self._init_weights is None else [w.copy() for w in shared]

    def _initial_weights_shared(self) -> list[np.ndarray]:
        """:meth:`initial_weights` without the copy where there is a stored one (internal):
        the stored initial weights themselves, read-only arrays, or fresh copies of the current
        weights while they are the initial ones.  Callers must not write into them."""
        if self._init_weights is None:
            if self._at_init():  # the current weights are the initial ones: no regeneration
                return self.weights
            fresh = _CORE_NETWORK[self._dtype].init(list(self.dims), self.init, self.init_scale, self.seed,
                                                    self._core_activation)
            # Read-only views of the fresh core network (which they keep alive): one copy of the
            # initial weights in memory, not two.
            self._init_weights = [fresh.weight_view(i) for i in range(fresh.depth)]
        return list(self._init_weights)

    def _initial_weights_views(self) -> list[np.ndarray]:
        """The initial weights for read-only use right away (internal): read-only views of the
        current weights (no copy) while the network is at init without stored initial weights,
        valid only until it trains (use them within the call, keep none of them); otherwise
        :meth:`_initial_weights_shared`."""
        if self._init_weights is None and self._at_init():
            return [self._net.weight_view(i) for i in range(self.depth)]
        return self._initial_weights_shared()

    def end_to_end(self) -> np.ndarray:
        """The product ``W_L ⋯ W_1`` (a linear network's end-to-end map; a ReLU network has
        none: ``ValueError``, use :meth:`forward`)."""
        self._require_linear("end_to_end()")
        return self._net.end_to_end()

    def _inputs(self, X: Any) -> np.ndarray:
        if isinstance(X, np.ndarray) and X.ndim == 2 and np.issubdtype(X.dtype, np.floating):
            X = np.ascontiguousarray(X)  # any layout, converted once
        X = V.matrix(X, "X", dtype=self._dtype)
        if X.shape[0] != self.dims[0]:
            raise ValueError(f"X: must have d_0 = {self.dims[0]} rows (columns are samples), got {X.shape[0]}")
        return X

    def forward(self, X: Any) -> np.ndarray:
        """The network's output ``W_L H_{L−1}`` on inputs ``X`` of shape ``(d_0, n)`` (columns
        are samples), with ``H_0 = X``, ``H_l = σ(W_l H_{l−1})``; computed in the core."""
        return self._net.forward(self._inputs(X))

    def features(self, X: Any) -> list[np.ndarray]:
        """Every layer's representation of the inputs: ``[H_0 = X, H_1, …, H_{L−1}]`` with
        ``H_l = σ(W_l H_{l−1})`` (σ the identity or ReLU), each of shape ``(d_l, n)``; the
        output layer is not included (MATH.md §5).  ``H_0`` is a read-only copy of ``X``."""
        X = self._inputs(X)
        h0 = np.array(X, copy=True)
        h0.flags.writeable = False
        return [h0, *self._net.hidden(X)]

    def copy(self) -> "DeepLinearNetwork":
        """An independent copy (same weights, same metadata)."""
        new = DeepLinearNetwork.from_weights(self.weights, activation=self.activation)
        new.init, new.init_scale, new.seed = self.init, self.init_scale, self.seed
        # the stored initial weights are read-only: the copy shares them
        new._init_weights = None if self._init_weights is None else list(self._init_weights)
        new._writes_before = 0 if self._at_init() else 1  # same weights, same init: at init iff the original is
        return new

    def describe(self) -> dict:
        """Plain-data description (for results' metadata)."""
        out = {"depth": self.depth, "dims": list(self.dims), "init": self.init,
               "init_scale": self.init_scale, "seed": self.seed, "dtype": str(self.dtype)}
        if self.activation is not None:  # linear networks keep their description (and checkpoints)
            out["activation"] = self.activation
        return out

    def __repr__(self) -> str:
        d = self.dims
        shape = f"width={d[0]}" if len(set(d)) == 1 else f"dims={list(d)}"
        act = "" if self.activation is None else f", activation={self.activation!r}"
        return f"DeepLinearNetwork(depth={self.depth}, {shape}, init={self.init!r}, dtype={self.dtype}{act})"
