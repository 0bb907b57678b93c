"""Helpers shared by several experiments (never copied between them)."""

from __future__ import annotations

import numpy as np

STABILITY = 0.9   # default step size: this fraction of the stability edge (see stable_lr)


def target_spectrum(d: int, rank: int, seed: int) -> np.ndarray:
    """The r singular values of ``dl.problems.factorization(d, rank, seed).target`` (same draws:
    ``A`` then ``B`` from ``default_rng(seed)``, ``Φ = A Bᵀ/√r``), in ``O(d r²)`` without the
    d × d matrix (``σ(A Bᵀ) = σ(R_A R_Bᵀ)`` for ``A = Q_A R_A``, ``B = Q_B R_B``)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((d, rank))
    b = rng.standard_normal((d, rank))
    ra = np.linalg.qr(a, mode="r")
    rb = np.linalg.qr(b, mode="r")
    return np.linalg.svd(ra @ rb.T, compute_uv=False) / np.sqrt(rank)


def stability_edge(sigma_max: float, c: float, depth: int) -> float:
    """``2 / (c L σ₁^{2−2/L})``: GD on ``(c/2)‖W_L⋯W_1 − Φ‖²`` is unstable at the balanced
    minimum above this step size (the largest Hessian eigenvalue there is ``c L σ₁^{2−2/L}``).
    With ε = 1e-3, d = 1000, r = 10 a step of 0.9× the edge reaches 1e-10 in about 18k steps; 1.0×
    oscillates and does not converge."""
    return 2.0 / (c * depth * sigma_max ** (2.0 - 2.0 / depth))


def stable_lr(sigma_max: float, c: float, depth: int, fraction: float = STABILITY) -> float:
    """``fraction`` × :func:`stability_edge`."""
    return fraction * stability_edge(sigma_max, c, depth)


def rel_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``|a − b| / |b|`` element-wise (``|b|`` floored at the smallest normal number)."""
    return np.abs(a - b) / np.maximum(np.abs(b), np.finfo(float).tiny)


def fmt(x: float, width: int, spec: str) -> str:
    """``x`` formatted right-aligned in ``width`` characters, ``-`` when not finite."""
    return f"{'-':>{width}}" if not np.isfinite(x) else f"{x:>{width}{spec}}"
