"""The law of parsimony (MATH.md §2, §4): invariant subspaces, the structure of every layer and
the shrinking bulk value ρ(t).

For deep matrix factorization with orthogonal init ``W_l(0) = ε O_l`` and a rank-r target,
gradient descent keeps every layer of the form::

    W_l(t) = U_l · diag(W̃_l(t), ρ(t) I_{d−2r}) · V_lᵀ,    V_{l+1} = U_l,

with fixed orthogonal ``U_l, V_l``: only a ``2r × 2r`` block learns, the other singular values of
every layer all equal ``|ρ(t)|``.  :func:`invariant_basis` computes the ``2r``-column bases
``V_{l,1}``, ``U_{l,1}`` from the target and the init, without any SVD of trained weights;
:func:`structure_residual` measures how far a network is from that form; :func:`rho_schedule`
gives ρ(t).
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from . import _validation as V
from ._config import _one_blas_thread
from ._loader import _core
from .network import DeepLinearNetwork
from .problems import Completion, Factorization, Problem, Regression

_SKETCH_SEED = 20230601  # fixed: the basis is a deterministic function of (target, init)


_V = V  # the validation module, under a name InvariantBasis's argument V does not hide


def _basis_arrays(U, V, init, rank) -> tuple[list, list, list]:
    """``(U, V, init)`` of an InvariantBasis as lists of C-ordered float64 matrices, their kinds
    and shapes checked (a TypeError / ValueError naming the argument)."""
    out = []
    for name, mats in (("U", U), ("V", V), ("init", init)):
        if isinstance(mats, (str, bytes, np.ndarray)) or not isinstance(mats, Sequence) or len(mats) == 0:
            raise TypeError(f"{name}: must be a non-empty list of 2-D arrays, one per layer")
        out.append([_V.matrix(m, f"{name}[{i}]", dtype=np.float64, finite=False) for i, m in enumerate(mats)])
    Us, Vs, Ws = out
    r2 = 2 * _V.integer(rank, "rank", low=1)
    if not len(Us) == len(Vs) == len(Ws):
        raise ValueError(f"U, V, init: must have one matrix per layer each, got {len(Us)}, {len(Vs)}, {len(Ws)}")
    for i, (u, v, w) in enumerate(zip(Us, Vs, Ws)):
        if u.shape != (w.shape[0], r2) or v.shape != (w.shape[1], r2):
            raise ValueError(f"U[{i}], V[{i}]: must be {w.shape[0]} x {r2} and {w.shape[1]} x {r2} for init[{i}] "
                             f"of shape {w.shape} and rank {r2 // 2}, got {u.shape} and {v.shape}")
    return Us, Vs, Ws


class InvariantBasis:
    """Per layer ``l = 1..L``: ``V[l-1]`` (``d_{l-1} × 2r``) and ``U[l-1]`` (``d_l × 2r``),
    orthonormal columns, with ``V[l] = U[l-1]``.

    ``init`` holds the initial weights the basis was computed from (the ``O_l = W_l(0)/ε`` that
    pair the complements), ``init_scale`` is ε.

    The basis of :func:`deeplinear.compress` of a network at init is computed lazily: it holds
    ``V_{1,1}`` and what the rest is made from, and computes ``U``, ``V`` and ``init`` together
    the first time one of them is read (the network's initial weights then: copies of its
    weights if it is still at init, else the copy of explicit weights kept when it first
    trained, or regenerated from its seed, the same draws).  Every read gives the same lists;
    nothing else changes.
    """

    def __init__(self, U: Sequence[np.ndarray], V: Sequence[np.ndarray], rank: int, method: str,
                 init_scale: float, init: Sequence[np.ndarray]) -> None:
        self._U, self._V, self._init = _basis_arrays(U, V, init, rank)
        self._net = self._chain = None  # what a lazy basis is computed from (_of_network)
        self._depth = len(self._U)
        self.rank = rank
        self.method = method
        self.init_scale = init_scale

    @classmethod
    def _of_network(cls, net: DeepLinearNetwork, rank: int, method: str, init_scale: float, *,
                    U: list | None = None, V: list | None = None,
                    chain: tuple | None = None) -> "InvariantBasis":
        """A basis whose initial weights are ``net``'s, fetched when first read, and whose
        ``U``, ``V`` are given or, for the closed form of an orthogonal init, computed then from
        ``chain = (V_{1,1}, R, images, M, orth_tol)`` (:func:`_closed_form_chain`)."""
        self = cls.__new__(cls)
        self._U, self._V, self._init = U, V, None
        self._net, self._chain = net, chain
        self._depth = net.depth
        self.rank, self.method, self.init_scale = rank, method, init_scale
        return self

    def _computed(self) -> tuple[list, list, list]:
        """``(U, V, init)``, the missing parts computed on the first call."""
        if self._init is None:
            self._init = [np.asarray(w, dtype=np.float64) for w in self._net._initial_weights_shared()]
            if self._chain is not None:
                v, R, images, mixing, orth_tol = self._chain
                with _one_blas_thread():  # d × d times r columns: see _one_blas_thread
                    self._U, self._V = _closed_form_chain(self._init, v, R, images, mixing,
                                                          self.init_scale, orth_tol)
            self._net = self._chain = None
        return self._U, self._V, self._init

    def _ready(self) -> bool:
        """Whether ``U`` and ``V`` are there without computing anything (internal)."""
        return self._U is not None and self._V is not None

    @property
    def U(self) -> list[np.ndarray]:
        """``[U_{1,1}, …, U_{L,1}]``."""
        return self._U if self._ready() else self._computed()[0]

    @property
    def V(self) -> list[np.ndarray]:
        """``[V_{1,1}, …, V_{L,1}]``."""
        return self._V if self._ready() else self._computed()[1]

    @property
    def init(self) -> list[np.ndarray]:
        """The initial weights ``[W_1(0), …, W_L(0)]`` (float64; read them, do not write)."""
        return self._computed()[2]

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def width(self) -> int:
        """``2r``: columns of every basis."""
        return 2 * self.rank if self._V is None else self._V[0].shape[1]

    def __repr__(self) -> str:
        return (f"InvariantBasis(depth={self.depth}, rank={self.rank}, method={self.method!r}, "
                f"init_scale={self.init_scale!r})")


def _orth(a: np.ndarray, width: int, rng: np.random.Generator, tol: float = 1e-12,
          mixing: list | None = None) -> np.ndarray:
    """An orthonormal basis (``width`` columns) of a space containing ``span(a)``: the numerical
    range of ``a``, padded with random orthogonal directions when it has fewer dimensions.

    ``mixing``: a list that receives ``M`` with ``q = a M`` (``M = V S⁻¹`` of the SVD) when
    ``a`` has ``width`` columns, full numerical rank and a condition number below 1e4 (so that
    ``b M`` for ``b = X a`` is ``X q`` to ~1e-12), else None."""
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    keep = int(np.sum(s > tol * max(s[0], np.finfo(float).tiny))) if s.size else 0
    if mixing is not None:
        ok = a.shape[1] == width and keep == width and s[-1] > 1e-4 * s[0]
        mixing.append(vt.T / s if ok else None)
    q = u[:, :min(keep, width)]
    while q.shape[1] < width:
        g = rng.standard_normal((a.shape[0], width - q.shape[1]))
        g -= q @ (q.T @ g)
        g -= q @ (q.T @ g)
        qq, _ = np.linalg.qr(g)
        q = np.hstack([q, qq])
    return q


def range_bases(target: np.ndarray, rank: int | None = None, *, tol: float = 1e-10,
                oversample: int = 8) -> tuple[np.ndarray, np.ndarray, int]:
    """Orthonormal ``C`` (column space) and ``R`` (row space) of a low-rank matrix, and its rank,
    in ``O(d² r)`` by a randomized range finder (exact for a matrix of rank ≤ the sketch)."""
    C, R, r, _ = _range_factors(target, rank, tol=tol, oversample=oversample)
    return C, R, r


def _range_factors_of(problem: Factorization, rank: int | None) -> tuple:
    """:func:`_range_factors` of a factorization's target, computed once per problem and rank
    (the problem owns its target read-only: the factors cannot go stale).  Callers must not
    write into the arrays."""
    cache = problem.__dict__.setdefault("_range_factors", {})
    if rank not in cache:
        factors = _range_factors(problem.target, rank)
        for a in factors[0], factors[1], factors[3]:
            a.flags.writeable = False
        cache[rank] = factors
    return cache[rank]


def _range_factors(target: np.ndarray, rank: int | None = None, *, tol: float = 1e-10,
                   oversample: int = 8) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """:func:`range_bases` plus all singular values of ``Qᵀ Φ`` (Q the sketch's basis):
    ``C diag(s[:r]) Rᵀ`` is Φ up to ``s[r]`` (and the rounding of the range finder)."""
    rng = np.random.default_rng(_SKETCH_SEED)
    m, n = target.shape
    k = min(n, (rank if rank is not None else 8) + oversample)
    while True:
        q, _ = np.linalg.qr(target @ rng.standard_normal((n, k)))
        ub, s, vbt = np.linalg.svd(q.T @ target, full_matrices=False)
        numerical = int(np.sum(s > tol * s[0])) if s[0] > 0 else 0
        if rank is not None or numerical < k or k >= min(m, n):
            break
        k = min(min(m, n), 2 * k)
    r = numerical if rank is None else rank
    if r == 0:
        raise ValueError("target: is zero, it has no range")
    return q @ ub[:, :r], vbt[:r].T, r, s


def invariant_basis(net: DeepLinearNetwork, problem: Problem, *, method: str = "closed_form",
                    rank: int | None = None) -> InvariantBasis:
    """The invariant learning subspaces of every layer (MATH.md §2 and §4).

    Parameters
    ----------
    net : DeepLinearNetwork
        Square layers of width ``d`` and an orthogonal init (for ``"closed_form"``).  The basis
        is computed from the network's **initial** weights (regenerated from its seed, or the
        weights it was created from), so it may be called before or after training.
    problem : Factorization (closed form), Factorization or Completion (gradient)
    method : {"closed_form", "gradient"}
        ``"closed_form"``: ``V_{1,1}`` an orthonormal basis of ``span(R) + span(Oᵀ C)`` with
        ``C, R`` the column/row spaces of Φ and ``O = O_L ⋯ O_1``; ``U_{l,1} = O_l ⋯ O_1 V_{1,1}``.
        Cost ``O(L d² r)``.  ``"gradient"``: from ``G = ∇_{W_1} f(0)`` (without weight decay),
        ``V_{1,1} = orth[top-r right singular vectors of G and of Gᵀ W_1(0)]``,
        ``U_{l,1} = W_{l:1}(0) V_{1,1} / ε^l`` with ``ε = ‖W_1(0)‖_F/√d``; works for completion
        and any init (the paper's §3.2 construction; for a non-orthogonal init ``U_{l,1}`` is
        orthonormalized, same span).  ``"closed_form"`` raises ``ValueError`` for an init that
        is not ε times orthogonal (e.g. ``init="gaussian"``).
    rank : int, optional
        r.  Default: the numerical rank of the target (factorization); required for completion.
    """
    return _invariant_basis(net, problem, method, rank)


def _invariant_basis(net: DeepLinearNetwork, problem: Problem, method: str = "closed_form",
                     rank: int | None = None, lazy: bool = False,
                     extras: dict | None = None) -> InvariantBasis:
    """:func:`invariant_basis`; ``lazy`` (what :func:`deeplinear.compress` asks for a network at
    init): for an orthogonal init, the ``U_{l,1}`` (and ``V_{l+1,1} = U_{l,1}``) and the kept
    initial weights are computed when the basis is first read (:class:`InvariantBasis`), and
    ``extras["phi_tilde"]`` receives ``Φ̃ = U_{L,1}ᵀ Φ V_{1,1}`` from the range finder's
    factors when Φ is numerically of rank r (no pass over Φ, nor the chain)."""
    method = V.choice(method, "method", ("closed_form", "gradient"))
    if not isinstance(net, DeepLinearNetwork):
        raise TypeError(f"net: must be a DeepLinearNetwork, got {type(net).__name__}")
    net._require_linear("the invariant basis (MATH.md §2)")
    dims = net.dims
    if len(set(dims)) != 1:
        raise ValueError(f"net: the invariant basis needs square layers (all widths equal), got dims {list(dims)}")
    d = dims[0]
    rank = V.integer(rank, "rank", low=1, allow_none=True)
    if isinstance(problem, Regression) or not isinstance(problem, (Factorization, Completion)):
        raise TypeError(f"problem: must be a Factorization or Completion, got {type(problem).__name__}")
    if problem.shape != (d, d):
        raise ValueError(f"problem: shape {problem.shape} does not match the network's width {d}")
    if getattr(problem, "is_sparse", False):
        raise ValueError("problem: a sparse Completion (Completion.from_entries) has no dense target to "
                         "compute the invariant basis from; dl.CompressedCompletion trains it compressed")
    # Read-only: the network's stored initial weights themselves, or views of its current
    # weights while they are the initial ones (used only within this call when lazy, else
    # copies); a float32 network's are cast.
    init = [np.asarray(w, dtype=np.float64) for w in
            (net._initial_weights_views() if lazy else net._initial_weights_shared())]
    _check_init_scale(init)
    orth_tol = structure_tol(net)
    rng = np.random.default_rng(_SKETCH_SEED + 1)
    if method == "closed_form":
        if not isinstance(problem, Factorization):
            raise ValueError("method: 'closed_form' is for factorization; use method='gradient' for completion")
        eps = _init_scale_of(init[0], d)
        C, R, r, sv = _range_factors_of(problem, rank)
        if 2 * r > d:
            raise ValueError(f"rank: 2r = {2 * r} exceeds the width {d}")
        # Explicit weights (lazy: compress at init) are checked to be ε times orthogonal in the
        # same passes: _PROBES random rows ride along with Cᵀ (see _reverse_chain)
        probes = _PROBES if lazy and net.init == "given" else 0
        images = _reverse_chain(init, C, eps, probes, orth_tol)
        x = images[-1]
        mixing: list = []
        v = _orth(np.hstack([R, x]), 2 * r, rng, mixing=mixing)
        if lazy and extras is not None and sv.size > r and sv[r] <= 1e-13 * sv[0]:
            # Φ = C S Rᵀ to rounding and U_{L,1} = O V_{1,1} (O = O_L ⋯ O_1, by definition), so
            # Φ̃ = U_{L,1}ᵀ Φ V_{1,1} = (V_{1,1}ᵀ Oᵀ C) S (Rᵀ V_{1,1}): O(d r²), no product with
            # Φ or the layers
            extras["phi_tilde"] = ((v.T @ x) * sv[:r]) @ (R.T @ v)
        if mixing[0] is not None and (net.init == "orthogonal" or probes):
            # V_{1,1} = [R, Oᵀ C] M, so U_{l,1} = O_l ⋯ O_1 V_{1,1} = [O_l ⋯ O_1 R, images[L-l]] M
            # (O_l ⋯ O_1 Oᵀ C = O_{l+1}ᵀ ⋯ O_Lᵀ C for orthogonal O_l): only R (r columns, not 2r)
            # goes through the d × d layers.
            if lazy:  # computed when first read (lift), from the initial weights then
                return InvariantBasis._of_network(net, r, "closed_form", eps,
                                                  chain=(v, R, images, mixing[0], orth_tol))
            Us, Vs = _closed_form_chain(init, v, R, images, mixing[0], eps, orth_tol)
            return InvariantBasis(U=Us, V=Vs, rank=r, method="closed_form", init_scale=eps, init=init)
    else:
        if rank is None:
            if not isinstance(problem, Factorization):
                raise ValueError("rank: required for method='gradient' on completion")
            _, _, rank = range_bases(problem.target)
        r = rank
        if 2 * r > d:
            raise ValueError(f"rank: 2r = {2 * r} exceeds the width {d}")
        eps = _init_scale_of(init[0], d)
        # G = ∇_{W_1} f at init without the weight-decay term: W_{L:2}ᵀ R
        p = init[0]
        for w in init[1:]:
            p = w @ p
        resid = p - problem.target
        if isinstance(problem, Completion):
            resid = resid * problem.mask
        s = resid * problem.c
        for w in reversed(init[1:]):
            s = w.T @ s
        g = s
        _, _, vt1 = np.linalg.svd(g, full_matrices=False)
        _, _, vt2 = np.linalg.svd(g.T @ init[0], full_matrices=False)
        v = _orth(np.hstack([vt1[:r].T, vt2[:r].T]), 2 * r, rng)
    Vs, Us = [], []
    cur = v
    eye = np.eye(v.shape[1])
    for l, w in enumerate(init, start=1):
        Vs.append(cur)
        cur = (w @ cur) / eps  # O_l V_{l,1}, O_l = W_l(0)/ε (no d × d division)
        if np.max(np.abs(cur.T @ cur - eye)) > orth_tol:  # O_l is not orthogonal on this subspace
            if method == "closed_form":
                raise ValueError(f"net: layer {l}'s initial weights are not ε times an orthogonal matrix; "
                                 f"method='closed_form' needs an orthogonal init, use method='gradient'")
            q, rr = np.linalg.qr(cur)
            cur = q * np.where(np.diag(rr) < 0, -1.0, 1.0)  # same span, orthonormal columns
        Us.append(cur)
    if lazy:  # init holds views of weights that may train: the basis fetches its own copies
        return InvariantBasis._of_network(net, r, method, eps, U=Us, V=Vs)
    return InvariantBasis(U=Us, V=Vs, rank=r, method=method, init_scale=eps, init=init)


def target_off_basis(problem: Factorization, basis: InvariantBasis) -> float:
    """‖Φ − P_U Φ P_V‖_F / ‖Φ‖_F with P_U, P_V the projections on span(U_{L,1}), span(V_{1,1}):
    how far the target is from the basis's span, whose being 0 is the condition for the
    invariant form to last under GD (MATH.md §2).  O(d² r).  A ``ValueError`` naming ``basis``
    when its sizes do not match the problem's."""
    U, Vb = basis.U[-1], basis.V[0]
    phi = problem.target
    if U.shape[0] != phi.shape[0] or Vb.shape[0] != phi.shape[1]:
        raise ValueError("basis: does not match the problem's shape")
    outside = phi - U @ ((U.T @ phi @ Vb) @ Vb.T)
    return float(np.linalg.norm(outside)) / max(float(np.linalg.norm(phi)), np.finfo(np.float64).tiny)


def structure_tol(net: DeepLinearNetwork) -> float:
    """The tolerance of the structure checks for ``net``'s precision: 1e-8 in float64; for
    float32, whose weights are rounded to ~6e-8 relative, ``100 sqrt(d) ε_float32`` (~7e-5 at
    d = 30): an orthogonal init passes, a Gaussian one (off by O(1)) does not."""
    eps = float(np.finfo(net.dtype).eps)
    return max(1e-8, 100.0 * np.sqrt(max(net.dims)) * eps) if net.dtype != np.float64 else 1e-8


def _init_scale_of(w: np.ndarray, d: int) -> float:
    """ε = ‖W_1(0)‖_F / sqrt(d), scaled by the largest entry first (the squares of an init at
    ε ~ 1e-170 underflow to 0)."""
    m = float(np.max(np.abs(w)))
    return m * float(np.linalg.norm(w / m)) / np.sqrt(d) if m > 0 else 0.0


def _check_init_scale(init: list[np.ndarray]) -> None:
    """``ValueError`` naming ``net`` when a layer's initial weights are zero (ε = 0, e.g.
    ``init_scale=0``): the bases divide by ε, and a zero init has no gradient to read them from."""
    for l, w in enumerate(init, start=1):
        if not (np.any(w[0]) or np.any(w)):  # the first row decides for almost every init
            raise ValueError(f"net: layer {l}'s initial weights are zero (init_scale=0?); the invariant "
                             "basis is defined by a nonzero initialization")


_PROBES = 2  # random rows of the orthogonality check of explicit weights (_reverse_chain)


def _reverse_chain(init, C, eps, probes: int = 0, orth_tol: float = 1e-8) -> list[np.ndarray]:
    """``images[j] = O_{L-j+1}ᵀ ⋯ O_Lᵀ C`` for ``j = 0..L`` (``images[L] = Oᵀ C``), ``O_l = W_l(0)/ε``:
    one product of ``r`` rows with every layer, as rows ``(Cᵀ O_L ⋯)ᵀ`` (OpenBLAS reads a
    transposed ``d × d`` operand ~3x slower, measured d = 1000).

    ``probes > 0``: that many random unit rows orthogonal to ``Cᵀ`` go through the layers with
    it and the Gram matrix of all rows must stay the identity (to ``orth_tol``), which a layer
    passes (almost surely) only if ``W_l W_lᵀ = ε² I``: a randomized check that explicit weights
    are ε times orthogonal, in the same passes (``ValueError`` naming ``net`` otherwise)."""
    r = C.shape[1]
    xt = np.ascontiguousarray(C.T)
    if probes:
        g = np.random.default_rng(_SKETCH_SEED + 2).standard_normal((C.shape[0], probes))
        g -= C @ (C.T @ g)
        g -= C @ (C.T @ g)
        q, _ = np.linalg.qr(g)
        xt = np.vstack([xt, q.T])
        eye = np.eye(r + probes)
    images = [C]
    L = len(init)
    for j, w in enumerate(reversed(init)):
        xt = xt @ w
        xt /= eps
        if probes and np.max(np.abs(xt @ xt.T - eye)) > orth_tol:
            raise ValueError(f"net: layer {L - j}'s initial weights are not ε times an orthogonal matrix; "
                             f"method='closed_form' needs an orthogonal init, use method='gradient'")
        images.append(xt[:r].T)
    return images


def _closed_form_chain(init, v, R, images, mixing, eps, orth_tol: float = 1e-8) -> tuple[list, list]:
    """``(U, V)`` of the closed-form basis of an orthogonal init from ``V_{1,1} = [R, Oᵀ C] M``:
    see :func:`invariant_basis`."""
    Vs, Us = [], []
    cur, y = v, R
    eye = np.eye(v.shape[1])
    L = len(init)
    for l, w in enumerate(init, start=1):
        Vs.append(cur)
        y = (w @ y) / eps  # O_l ⋯ O_1 R
        cur = np.hstack([y, images[L - l]]) @ mixing
        if np.max(np.abs(cur.T @ cur - eye)) > orth_tol:
            raise ValueError(f"net: layer {l}'s initial weights are not ε times an orthogonal matrix; "
                             f"method='closed_form' needs an orthogonal init, use method='gradient'")
        Us.append(cur)
    return Us, Vs


def structure_residual(net: DeepLinearNetwork, basis: InvariantBasis) -> dict:
    """How far every layer is from ``U_l diag(W̃_l, ρ I) V_lᵀ``.

    With ``O_l = W_l(0)/ε`` (which maps the complement of ``V_{l,1}`` onto that of
    ``U_{l,1}``), each layer splits as ``W_l = U_{l,1} W̃_l V_{l,1}ᵀ + ρ_l (O_l − U_{l,1}V_{l,1}ᵀ) + E_l``
    with ``W̃_l = U_{l,1}ᵀ W_l V_{l,1}`` and ρ_l the least-squares bulk value.

    Returns ``{"residual": ‖E_l‖_F/‖W_l‖_F per layer, "rho": ρ_l per layer, "blocks": [W̃_l]}``.
    """
    if not isinstance(net, DeepLinearNetwork):
        raise TypeError(f"net: must be a DeepLinearNetwork, got {type(net).__name__}"
                        + (" (use its .blocks, or .lift())" if hasattr(net, "blocks") else ""))
    if not isinstance(basis, InvariantBasis):
        raise TypeError(f"basis: must be an InvariantBasis, got {type(basis).__name__}")
    net._require_linear("structure_residual (the invariant structure of MATH.md §2)")
    if basis.depth != net.depth or basis.U[0].shape[0] != net.dims[1]:
        raise ValueError("basis: does not match the network's depth and widths")
    eps = basis.init_scale
    res, rhos, blocks = [], [], []
    for l, w in enumerate(net.weights):
        w = w.astype(np.float64)
        U, Vb = basis.U[l], basis.V[l]
        blk = U.T @ (w @ Vb)
        e = w - U @ blk @ Vb.T
        comp = basis.init[l] / eps - U @ Vb.T
        dim = comp.shape[1] - basis.width
        rho = float(np.sum(e * comp) / dim) if dim > 0 else 0.0
        e -= rho * comp
        res.append(float(np.linalg.norm(e) / max(np.linalg.norm(w), np.finfo(float).tiny)))
        rhos.append(rho)
        blocks.append(blk)
    return {"residual": np.array(res), "rho": np.array(rhos), "blocks": blocks}


def learning_mask(s: np.ndarray, rank2: int) -> np.ndarray:
    """Which of one layer's singular values ``s`` form its learning subspace: the ``rank2``
    farthest from the bulk (the median, in s²), by the core's rule (``deeplinear::learning_counts``,
    the one the tracker uses), ties kept in index order.  A boolean mask of ``s``'s shape."""
    s = np.ascontiguousarray(s, dtype=np.float64)
    counts = _core.learning_counts(s, [], int(rank2), -np.inf)  # -inf: never "not identifiable"
    return np.asarray(counts, dtype=bool)


def rho_schedule(init_scale: float, lr: float, depth: int, steps: int, *, weight_decay: float = 0.0,
                 reduction_constant: float = 1.0, momentum: float = 0.0,
                 nesterov: bool = False) -> np.ndarray:
    """ρ(t) for ``t = 0..steps`` (MATH.md §2): the common value of the ``d − 2r`` bulk
    singular values of every layer (up to sign).

    GD: ``ρ ← ρ (1 − ηλ − η c ρ^{2L−2})``; heavy ball: ``b ← μ b + c ρ^{2L−1} + λ ρ``,
    ``ρ ← ρ − η b``; Nesterov: ``ρ ← ρ − η (μ b + c ρ^{2L−1} + λ ρ)`` with the new ``b``.
    ``reduction_constant`` is c (1 for "sum", ``1/d²`` for "mean" on a d × d target).
    Computed by the core (``deeplinear::rho_schedule``, bulk.hpp), the code that advances a
    compressed network's ρ in training; overflow gives inf / NaN (IEEE), with a
    ``RuntimeWarning`` that names the step where the recursion overflows.
    """
    rho = _rho_schedule(init_scale, lr, depth, steps, weight_decay=weight_decay,
                        reduction_constant=reduction_constant, momentum=momentum, nesterov=nesterov)
    if not np.isfinite(rho).all():
        t = int(np.argmin(np.isfinite(rho)))
        warnings.warn(f"rho_schedule: the recursion overflows at step {t} (|rho| grows without bound: "
                      f"lr * c * init_scale^(2 depth - 2) is too large); the values from there are inf/NaN",
                      RuntimeWarning, stacklevel=2)
    return rho


def _rho_schedule(init_scale: float, lr: float, depth: int, steps: int, *, weight_decay: float = 0.0,
                  reduction_constant: float = 1.0, momentum: float = 0.0,
                  nesterov: bool = False) -> np.ndarray:
    """:func:`rho_schedule` without the overflow warning (for training, which reports the
    divergence itself)."""
    eps = V.real(init_scale, "init_scale")
    lr = V.real(lr, "lr", low=0.0, low_open=True)
    depth = V.integer(depth, "depth", low=1)
    steps = V.integer(steps, "steps", low=0)
    lam = V.real(weight_decay, "weight_decay", low=0.0)
    c = V.real(reduction_constant, "reduction_constant", low=0.0)
    mu = V.real(momentum, "momentum", low=0.0, high=1.0, high_open=True)
    nesterov = V.boolean(nesterov, "nesterov")
    # the recursion of the core (deeplinear::BulkValue), the same code a compressed run's ρ
    # advances by: both agree bit for bit
    return _core.rho_schedule(eps, lr, depth, steps, lam, c, mu, nesterov)
