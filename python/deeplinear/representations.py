"""Progressive separation of classes across layers (MATH.md §5, the paper's "collapse").

For each layer's features ``H_l`` (``d_l × N``, columns are samples, e.g. from
:meth:`deeplinear.DeepLinearNetwork.features`) with class means ``μ_k``, global mean ``μ_G``::

    Σ_W = (1/N) Σ_i (h_i − μ_{y_i})(h_i − μ_{y_i})ᵀ,   Σ_B = (1/K) Σ_k (μ_k − μ_G)(μ_k − μ_G)ᵀ,
    D_l = tr(Σ_W) / tr(Σ_B).

Only the traces are needed, so no ``d × d`` matrix is formed: ``tr Σ_W`` is the mean squared
distance of the samples to their class means, ``tr Σ_B`` the mean squared distance of the class
means to the global mean.  After training, ``log D_l`` decays linearly in ``l``:
:func:`decay_fit` reports the per-layer ratio ``exp(slope)`` and the R² of that fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from . import _validation as V

__all__ = ["DecayFit", "class_separation", "decay_fit"]


def _class_index(labels: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(y, counts)``: labels mapped to ``0 … K−1`` and the size of every class."""
    from .problems import _labels

    labels = _labels(labels, "labels", n)
    _, y = np.unique(labels, return_inverse=True)
    y = y.reshape(-1)
    counts = np.bincount(y)
    if counts.size < 2:
        raise ValueError("labels: need at least 2 classes")
    return y, counts


def class_separation(features: Sequence[np.ndarray] | np.ndarray, labels: Any) -> np.ndarray:
    """``D_l = tr(Σ_W)/tr(Σ_B)`` of every layer's features (MATH.md §5).

    Parameters
    ----------
    features : list of arrays of shape (d_l, N), or one such array
        One sample per column, the same N samples in every layer (``net.features(X)``).
    labels : integer array of length N
        The class of every sample (any integer values).

    Returns
    -------
    ndarray of shape (len(features),)
        ``D_l``; ``inf`` where the class means coincide but the samples do not, NaN where all
        samples of the layer are equal (e.g. a dead ReLU layer).

    Notes
    -----
    ``tr Σ_W = (1/N) Σ_i ‖h_i − μ_{y_i}‖²`` and ``tr Σ_B = (1/K) Σ_k ‖μ_k − μ_G‖²`` (``μ_G`` the
    mean of all samples), computed from the centred samples (one ``d_l × N`` temporary per
    layer, no ``d × d`` covariance).
    """
    if isinstance(features, np.ndarray):
        features = [features]
    if isinstance(features, (str, bytes)) or not isinstance(features, Sequence) or len(features) == 0:
        raise TypeError("features: must be a non-empty list of 2-D arrays (d_l x N)")
    mats = []
    for i, h in enumerate(features):
        mats.append(V.matrix(h, f"features[{i}]", dtype=np.float64))
    n = mats[0].shape[1]
    for i, h in enumerate(mats):
        if h.shape[1] != n:
            raise ValueError(f"features[{i}]: has {h.shape[1]} samples (columns), features[0] has {n}")
    y, counts = _class_index(labels, n)
    K = counts.size
    onehot = np.zeros((n, K))
    onehot[np.arange(n), y] = 1.0
    out = np.empty(len(mats))
    for i, h in enumerate(mats):
        means = (h @ onehot) / counts                       # d_l x K
        within = float(np.sum((h - means[:, y]) ** 2)) / n
        between = float(np.sum((means - h.mean(axis=1, keepdims=True)) ** 2)) / K
        with np.errstate(divide="ignore", invalid="ignore"):
            out[i] = np.float64(within) / np.float64(between)
    return out


@dataclass(frozen=True)
class DecayFit:
    """Least-squares fit ``log D_l ≈ intercept + slope·l`` over the layers ``l``.

    Attributes
    ----------
    ratio : float
        ``exp(slope)``: the factor by which ``D_l`` shrinks per layer.
    r2 : float
        Coefficient of determination of the log-linear fit (1 = exactly geometric).
    slope, intercept : float
        Of the fit of the natural logarithm.
    layers : ndarray
        The layer indices fitted.
    """

    ratio: float
    r2: float
    slope: float
    intercept: float
    layers: np.ndarray


def decay_fit(D: Any, layers: Any = None) -> DecayFit:
    """Fit ``log D_l`` linearly in ``l`` (MATH.md §5).

    Parameters
    ----------
    D : 1-D array of positive finite values
        ``D_l`` per layer, e.g. from :func:`class_separation`.
    layers : 1-D array, optional
        The layer index of every value; ``0 … len(D)−1`` by default.

    Returns
    -------
    DecayFit
        ``ratio = exp(slope)`` with ``slope = Σ (l − l̄)(log D_l − m) / Σ (l − l̄)²``, and
        ``r2 = 1 − Σ residual² / Σ (log D_l − m)²`` (``m`` the mean of ``log D_l``).
    """
    d = V.vector(D, "D", finite=False, min_size=2)
    if not (np.isfinite(d).all() and (d > 0).all()):
        raise ValueError("D: values must be finite and > 0 (log D is fitted)")
    x = np.arange(d.size, dtype=np.float64) if layers is None else V.vector(layers, "layers")
    if x.shape != d.shape:
        raise ValueError(f"layers: must be {d.size} values, one per value of D, got {x.size}")
    if np.ptp(x) == 0:
        raise ValueError("layers: must not all be equal")
    logd = np.log(d)
    xc = x - x.mean()
    yc = logd - logd.mean()
    slope = float(xc @ yc / (xc @ xc))
    intercept = float(logd.mean() - slope * x.mean())
    resid = yc - slope * xc
    ss_tot = float(yc @ yc)
    r2 = 1.0 - float(resid @ resid) / ss_tot if ss_tot > 0 else 1.0
    return DecayFit(ratio=float(np.exp(slope)), r2=r2, slope=slope, intercept=intercept, layers=x)
