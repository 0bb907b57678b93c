"""Exact compression of a wide deep linear network, and its lift back (MATH.md §3).

For factorization with orthogonal init trained by GD (or heavy-ball / Nesterov momentum), the
wide network ``W_l = U_l diag(W̃_l, ρ I) V_lᵀ`` is carried exactly by its ``2r × 2r`` blocks
``W̃_l`` and the scalar ρ(t)::

    W_{L:1}(t) = U_{L,1} W̃_L ⋯ W̃_1 V_{1,1}ᵀ + ρ(t)^L · O (I − V_{1,1} V_{1,1}ᵀ),

so the wide loss is ``(c/2)[‖W̃_{L:1} − Φ̃‖² + (d−2r)ρ^{2L}] + (λ/2)Σ_l(‖W̃_l‖² + (d−2r)ρ²)``
with ``Φ̃ = U_{L,1}ᵀ Φ V_{1,1}`` and the wide c.  (The reference implementation drops the ρ
terms; here they are carried, so the losses are the wide network's, not an approximation.)
"""

from __future__ import annotations

import warnings

import numpy as np

from . import _validation as V
from ._config import _one_blas_thread
from .network import DeepLinearNetwork
from .parsimony import InvariantBasis, _invariant_basis, structure_residual, structure_tol, target_off_basis
from .problems import Completion, Factorization, Problem


class ApproximationWarning(UserWarning):
    """A compressed network is used where it is only the paper's approximation of the wide one."""


class CompressedNetwork:
    """The ``2r × 2r`` learning blocks of a wide network plus the bulk value ρ.

    Attributes
    ----------
    blocks : DeepLinearNetwork
        The middle factors ``W̃_1 … W̃_L`` (a narrow network, trained in place by
        :func:`deeplinear.train`).
    rho : float
        The current bulk value ρ (the other ``d − 2r`` singular values of every layer are |ρ|).
    basis : InvariantBasis
        ``U_{l,1}, V_{l,1}`` and the initial weights ``O_l`` (for :meth:`lift`).
    exact : bool
        Whether training this network reproduces the wide network exactly (factorization,
        orthogonal init, GD / momentum).  When False it is the paper's approximation.
    width : int
        d, the width of the wide network.
    """

    def __init__(self, blocks: DeepLinearNetwork, rho: float, basis: InvariantBasis | None, width: int,
                 exact: bool, reason: str = "") -> None:
        self.blocks = blocks
        self.rho = float(rho)
        self.basis = basis
        self.width = int(width)
        self.exact = bool(exact)
        self.reason = reason
        self.steps_trained = 0
        self.problem: Problem | None = None  # the problem it was compressed for (see _check_problem)
        self._phi_tilde = None  # Φ̃ = U_{L,1}ᵀ Φ V_{1,1} of that problem, computed once

    @property
    def depth(self) -> int:
        return self.blocks.depth

    @property
    def rank2(self) -> int:
        """2r, the size of every block."""
        return self.blocks.dims[0]

    def _check_problem(self, problem: Problem) -> None:
        """A compressed network is tied to the problem (and basis) it was compressed for: its
        blocks, ρ and Φ̃ describe the wide network on that problem only.  Another problem is
        refused (a problem with equal data and reduction counts as the same)."""
        mine = self.problem
        if mine is None or problem is mine:
            return
        same = type(problem) is type(mine) and problem.reduction == mine.reduction
        if same:
            for name in ("target", "mask", "phi_tilde"):
                a, b = getattr(problem, name, None), getattr(mine, name, None)
                if (a is None) != (b is None) or (a is not None and not np.array_equal(a, b)):
                    same = False
                    break
        if not same:
            raise ValueError("problem: this compressed network was compressed for another problem "
                             f"({mine.describe()['kind']}, other data); its blocks and ρ hold only for "
                             "that one: train on it, or compress the wide network again for this problem")

    def singular_values(self) -> list[np.ndarray]:
        """Singular values of every wide layer (descending): those of ``W̃_l`` and ``|ρ|``
        repeated ``d − 2r`` times; exact when :attr:`exact`."""
        out = []
        bulk = np.full(self.width - self.rank2, abs(self.rho))
        for w in self.blocks.weights:
            s = np.linalg.svd(w, compute_uv=False)
            out.append(np.sort(np.concatenate([s, bulk]))[::-1])
        return out

    def lift(self) -> DeepLinearNetwork:
        """The wide network: ``W_l = ρ O_l + U_{l,1} (W̃_l − ρ I) V_{l,1}ᵀ``."""
        if self.basis is None:
            raise ValueError("lift: a sampled reduced network has no wide basis to lift into "
                             "(compress a wide network instead)")
        with _one_blas_thread():  # d × d outer products of 2r columns: see _one_blas_thread
            return self._lift()

    def _lift(self) -> DeepLinearNetwork:
        eps = self.basis.init_scale
        ws = []
        for l, wt in enumerate(self.blocks.weights):
            U, Vb = self.basis.U[l], self.basis.V[l]
            w = self.basis.init[l] * (self.rho / eps)  # ρ O_l, O_l = W_l(0)/ε
            w += (U @ (wt.astype(np.float64) - self.rho * np.eye(self.rank2))) @ Vb.T
            ws.append(w)
        return DeepLinearNetwork.from_weights(ws)

    def __repr__(self) -> str:
        return (f"CompressedNetwork(depth={self.depth}, width={self.width}, 2r={self.rank2}, "
                f"rho={self.rho:.6g}, exact={self.exact})")


def compress(net: DeepLinearNetwork, problem: Problem, *, rank: int | None = None,
             basis: InvariantBasis | None = None) -> CompressedNetwork:
    """The compressed equivalent of ``net`` on ``problem`` (MATH.md §3).

    The blocks are ``W̃_l = U_{l,1}ᵀ W_l V_{l,1}`` of the network's current weights and ρ its
    measured bulk value; the basis comes from :func:`invariant_basis` (closed form for
    factorization, gradient form otherwise, which needs ``rank``).  A network still at its
    orthogonal init or at its explicit weights (never trained) gives ``W̃_l = ε I`` and ``ρ = ε``
    exactly, without a pass over its ``d × d`` weights beyond the basis's ``O(L d² r)`` (and its
    initial weights are its current ones: no regeneration).

    The result is a snapshot: for a factorization, compress also computes
    ``Φ̃ = U_{L,1}ᵀ Φ V_{1,1}``, so training the compressed network reads neither ``net`` nor
    its weights (``net`` may train or be dropped meanwhile); only :meth:`CompressedNetwork.lift`
    reads ``net``'s *initial* weights (kept when it first trains, or regenerated from its seed).
    Explicit weights at init (:meth:`DeepLinearNetwork.from_weights`) are checked to be ε times
    orthogonal by a randomized test in the same passes (``ValueError`` naming ``net`` if not).
    Cost at init: ``L`` products of ``r + 2`` rows with the ``d × d`` layers plus one norm, on one
    BLAS thread (the process's BLAS runs on one thread while compress runs: see
    ``deeplinear._config._one_blas_thread``).

    ``exact`` is True for factorization with an orthogonal init whose current weights have the
    invariant structure (relative residual ≤ 1e-8); otherwise the result is the paper's
    approximation and an :class:`ApproximationWarning` says so.
    """
    with _one_blas_thread():  # d × d passes with a few columns: see _one_blas_thread
        return _compress(net, problem, rank, basis)


def _compress(net, problem, rank, basis) -> CompressedNetwork:
    """:func:`compress`."""
    if isinstance(net, CompressedNetwork):
        raise TypeError("net: is already compressed (a CompressedNetwork); compress the wide network it "
                        "came from (a lifted network has no orthogonal init of its own to compress from)")
    if not isinstance(net, DeepLinearNetwork):
        raise TypeError(f"net: must be a DeepLinearNetwork, got {type(net).__name__}")
    if not isinstance(problem, (Factorization, Completion)):
        raise TypeError(f"problem: must be a Factorization or Completion, got {type(problem).__name__}")
    if isinstance(net, DeepLinearNetwork):
        net._require_linear("compress (exact compression, MATH.md §3)")
    # At init (an orthogonal init never touched since: W_l = ε O_l) the blocks are ε I and
    # ρ = ε exactly, because U_{l,1} = O_l V_{l,1}: no pass over the d × d weights is needed.
    given_basis = basis is not None
    extras: dict = {}
    # Also for explicit weights (init "given") never trained: they are the initial weights.
    at_init = (basis is None and net._at_init()
               and (net.init == "given" or (net.init == "orthogonal" and net.init_scale != 0)))
    if basis is None:
        method = "closed_form" if isinstance(problem, Factorization) and net.init in ("orthogonal", "given") else "gradient"
        # the initial weights are fetched when the basis first needs them (lift), not copied now
        basis = _invariant_basis(net, problem, method, rank, lazy=at_init, extras=extras)
    elif not isinstance(basis, InvariantBasis):
        raise TypeError(f"basis: must be an InvariantBasis, got {type(basis).__name__}")
    reasons = []
    if not isinstance(problem, Factorization):
        reasons.append("completion (the mask mixes the blocks)")
    elif rank is not None or given_basis:
        reasons += _rank_shortfall(problem, basis)
        if given_basis and not reasons:  # a basis made for another target (or other weights' Φ̃)
            off = target_off_basis(problem, basis)
            if off > structure_tol(net):
                reasons.append(f"the target is off the given basis's span by {off:.2e} (relative)")
    if net.init not in ("orthogonal", "given"):
        reasons.append(f"{net.init} init")
    if at_init and net.init == "given" and not basis.init_scale > 0:
        at_init = False  # a zero network: the general path says what is wrong
    if at_init:
        # |ε|: the basis takes O_l = W_l(0)/|ε| (its ε is ‖W_1(0)‖_F/√d; explicit weights: that ε)
        rho = abs(float(net.init_scale)) if net.init == "orthogonal" else float(basis.init_scale)
        block_weights = [rho * np.eye(basis.width) for _ in range(net.depth)]
    else:
        sr = structure_residual(net, basis)
        if float(np.max(sr["residual"])) > structure_tol(net):
            reasons.append(f"weights off the invariant structure (residual {np.max(sr['residual']):.2e})")
        rho = float(np.mean(sr["rho"]))
        block_weights = [np.ascontiguousarray(b) for b in sr["blocks"]]
    blocks = DeepLinearNetwork.from_weights(block_weights, dtype=net.dtype)
    exact = not reasons
    comp = CompressedNetwork(blocks, rho, basis, net.dims[0], exact, "; ".join(reasons))
    comp.problem = problem
    if isinstance(problem, Factorization):
        # Φ̃ = U_{L,1}ᵀ Φ V_{1,1}, what training reads, computed here so that the first training
        # call does no d × d work: from the range finder's factors with the lazy basis (O(d r²),
        # _invariant_basis), else from the basis (O(d² r), like the rest of compress)
        if "phi_tilde" in extras:
            comp._phi_tilde = np.ascontiguousarray(extras["phi_tilde"])
        elif basis._ready():
            comp._phi_tilde = np.ascontiguousarray(basis.U[-1].T @ problem.target @ basis.V[0])
    if not exact:
        warnings.warn(f"compressed network is an approximation here: {comp.reason}",
                      ApproximationWarning, stacklevel=3)
    return comp


def _rank_shortfall(problem: Factorization, basis: InvariantBasis) -> list[str]:
    """Why a basis of a rank chosen by the caller cannot hold the target (empty when it can):
    below the target's numerical rank, part of Φ lies outside span(U_{L,1}) x span(V_{1,1})."""
    from .parsimony import range_bases

    _, _, numerical = range_bases(problem.target)
    if basis.rank < numerical:
        return [f"rank {basis.rank} is below the target's numerical rank {numerical} (part of the "
                f"target lies outside the basis)"]
    return []


class ReducedFactorization(Problem):
    """A factorization problem known only through its ``2r × 2r`` reduction
    ``Φ̃ = U_{L,1}ᵀ Φ V_{1,1}`` and the wide size d (no d × d matrix): what
    :func:`reduced_network` returns beside the network."""

    kind = "factorization"

    def __init__(self, phi_tilde: np.ndarray, width: int, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.phi_tilde = V.matrix(phi_tilde, "phi_tilde", dtype=np.float64, copy=True)
        self.width = V.integer(width, "width", low=1)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.width, self.width)

    @property
    def c(self) -> float:
        from .problems import _reduction_constant

        return _reduction_constant(self.reduction, self.width * self.width)

    def _core_args(self, dtype):
        raise TypeError("problem: a ReducedFactorization trains only a reduced (compressed) network")

    def describe(self) -> dict:
        return {"kind": "reduced_factorization", "reduction": self.reduction, "width": self.width,
                "rank2": self.phi_tilde.shape[0]}


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    w, q = np.linalg.eigh((a + a.T) / 2)
    return (q * np.sqrt(np.clip(w, 0.0, None))) @ q.T


def sample_overlap(width: int, rank: int, rng: np.random.Generator, method: str = "bartlett") -> np.ndarray:
    """``K = Rᵀ X`` for a uniformly random r-frame X in R^d and a fixed r-frame R (MATH.md §3).

    ``"bartlett"``: ``K = G₁ (G₁ᵀG₁ + W)^{−1/2}`` with ``G₁`` an r × r Gaussian and
    ``W ~ Wishart_r(d − r, I)`` by the Bartlett decomposition, in ``O(r³)`` whatever d.
    ``"frame"``: X from the QR of a d × r Gaussian with the sign fix, ``O(d r²)``.
    Draw order: ``"bartlett"`` draws G₁ (row-major), then the r chi-square variables, then the
    strictly lower part of the Bartlett factor (row-major); ``"frame"`` draws the d × r Gaussian.
    """
    d, r = width, rank
    if method == "frame":
        g = rng.standard_normal((d, r))
        q, rr = np.linalg.qr(g)
        q = q * np.sign(np.diag(rr))
        return q[:r, :]  # R = the first r coordinate axes
    if method != "bartlett":
        raise ValueError(f"method: must be 'bartlett' or 'frame', got {method!r}")
    g1 = rng.standard_normal((r, r))
    chi = rng.chisquare(d - r - np.arange(r))  # dof d−r, d−r−1, …, d−2r+1
    low = np.zeros((r, r))
    low[np.diag_indices(r)] = np.sqrt(chi)
    il = np.tril_indices(r, -1)
    low[il] = rng.standard_normal(len(il[0]))
    wish = low @ low.T
    m = g1.T @ g1 + wish
    w, q = np.linalg.eigh(m)
    return g1 @ ((q / np.sqrt(w)) @ q.T)


def reduced_network(width: int, depth: int, spectrum, *, init_scale: float = 1.0, seed: int | None = None,
                    reduction: str = "mean", overlap: np.ndarray | None = None,
                    method: str | None = None, dtype=np.float64):
    """A wide network of any width trained by GD, simulated through its ``2r × 2r`` blocks.

    For a rank-r target ``Φ = C diag(spectrum) Rᵀ`` and a Haar-orthogonal init, ``Oᵀ C`` is a
    uniformly random r-frame, so the reduced target is (up to an orthogonal change of basis,
    which changes no loss and no singular value)::

        Φ̃ = [[K S, 0], [T S, 0]],   K = Rᵀ Oᵀ C,   T = (I − KᵀK)^{1/2},

    and the wide trajectory (losses, every layer's singular values) follows from Φ̃, ε, η, λ, c
    and d − 2r (MATH.md §3).  K is sampled exactly in distribution (:func:`sample_overlap`),
    or given (``overlap=``, e.g. ``Rᵀ O_1ᵀ ⋯ O_Lᵀ C`` of an explicit init: then the run is
    pathwise equal to that wide network).  Cost per step ``O(L (2r)³)``, independent of d.
    ``seed`` (default 0) and ``method`` (default ``"bartlett"``) are those of the sampling, so
    they are refused together with ``overlap=``.

    Returns ``(network, problem)`` to pass to :func:`deeplinear.train`.
    """
    d = V.integer(width, "width", low=2)
    L = V.integer(depth, "depth", low=1)
    S = V.vector(spectrum, "spectrum", finite=False)
    r = S.size
    if not np.all(np.isfinite(S)) or np.any(S <= 0):
        raise ValueError("spectrum: must be a non-empty list of positive, finite singular values")
    if 2 * r > d:
        raise ValueError(f"spectrum: 2r = {2 * r} exceeds the width {d}")
    eps = V.real(init_scale, "init_scale", low=0.0, low_open=True)
    if overlap is None:
        seed = 0 if seed is None else V.integer(seed, "seed", low=0, high=None)
        K = sample_overlap(d, r, np.random.default_rng(seed), "bartlett" if method is None else method)
    else:
        for name, given in (("seed", seed), ("method", method)):
            if given is not None:
                raise ValueError(f"{name}: applies only to a sampled overlap; with overlap= given "
                                 "nothing is sampled")
        K = V.matrix(overlap, "overlap").astype(np.float64)
        if K.shape != (r, r):
            raise ValueError(f"overlap: must be {r} x {r}, got {K.shape}")
        if np.linalg.norm(K, 2) > 1 + 1e-12:
            raise ValueError("overlap: must have spectral norm <= 1 (it is Rᵀ of an orthonormal frame)")
    T = _sqrt_psd(np.eye(r) - K.T @ K)
    phi = np.zeros((2 * r, 2 * r))
    phi[:r, :r] = K * S
    phi[r:, :r] = T * S
    blocks = DeepLinearNetwork.from_weights([eps * np.eye(2 * r) for _ in range(L)], dtype=dtype)
    comp = CompressedNetwork(blocks, eps, None, d, True)
    comp.problem = ReducedFactorization(phi, d, reduction)
    return comp, comp.problem


def _compressed_problem(comp: CompressedNetwork, problem: Problem, *, exact: bool = True):
    """``(kind, a, b, left, right, offset)``: the wide problem seen through the fixed outer
    factors, and the constant part of the wide loss the blocks do not carry (``problem`` is
    the compressed network's own, :meth:`CompressedNetwork._check_problem`)."""
    if isinstance(problem, ReducedFactorization):
        return "factorization", problem.phi_tilde, None, None, None, 0.0
    if comp.basis is None:
        raise TypeError("problem: a reduced network trains on the ReducedFactorization it came with")
    if isinstance(problem, Factorization):
        # Φ lies in span(U_{L,1}) x span(V_{1,1}) for an exact compression: the wide loss of
        # U A Vᵀ is that of A vs Φ̃.  compress computed Φ̃ (it is None only where its basis
        # is still lazy): an exact run reads neither the basis nor the wide weights here.
        if comp._phi_tilde is None:
            comp._phi_tilde = np.ascontiguousarray(comp.basis.U[-1].T @ problem.target @ comp.basis.V[0])
        offset = 0.0
        if not exact:
            # The approximation U A Vᵀ need not hold all of Φ (e.g. a Gaussian init's basis): its
            # wide loss is (c/2)(‖A − Φ̃‖² + ‖Φ − U Φ̃ Vᵀ‖²) (Pythagoras); the core adds the second.
            U, Vb = comp.basis.U[-1], comp.basis.V[0]
            outside = problem.target - U @ (comp._phi_tilde @ Vb.T)
            offset = 0.5 * problem.c * float(np.sum(outside * outside))
        return "factorization", comp._phi_tilde, None, None, None, offset
    return "completion", problem.target, problem.mask, comp.basis.U[-1], comp.basis.V[0], 0.0
