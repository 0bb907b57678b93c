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
from .network import DeepLinearNetwork
from .parsimony import InvariantBasis, invariant_basis, rho_schedule, structure_residual
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

    def __init__(self, blocks: DeepLinearNetwork, rho: float, basis: InvariantBasis, width: int,
                 exact: bool, reason: str = "") -> None:
        self.blocks = blocks
        self.rho = float(rho)
        self.basis = basis
        self.width = int(width)
        self.exact = bool(exact)
        self.reason = reason
        self.steps_trained = 0

    @property
    def depth(self) -> int:
        return self.blocks.depth

    @property
    def rank2(self) -> int:
        """2r, the size of every block."""
        return self.basis.width

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
        eps = self.basis.init_scale
        ws = []
        for l, wt in enumerate(self.blocks.weights):
            U, Vb = self.basis.U[l], self.basis.V[l]
            O = self.basis.init[l] / eps
            ws.append(self.rho * O + U @ (wt.astype(np.float64) - self.rho * np.eye(self.rank2)) @ Vb.T)
        return DeepLinearNetwork.from_weights(ws)

    def __repr__(self) -> str:
        return (f"CompressedNetwork(depth={self.depth}, width={self.width}, 2r={self.rank2}, "
                f"rho={self.rho:.6g}, exact={self.exact})")


def compress(net: DeepLinearNetwork, problem: Problem, *, rank: int | None = None,
             basis: InvariantBasis | None = None) -> CompressedNetwork:
    """The compressed equivalent of ``net`` on ``problem`` (MATH.md §3).

    The blocks are ``W̃_l = U_{l,1}ᵀ W_l V_{l,1}`` of the network's current weights (``ε I`` at
    init) and ρ its measured bulk value; the basis comes from :func:`invariant_basis`
    (closed form for factorization, gradient form otherwise, which needs ``rank``).

    ``exact`` is True for factorization with an orthogonal init whose current weights have the
    invariant structure (relative residual ≤ 1e-8); otherwise the result is the paper's
    approximation and an :class:`ApproximationWarning` says so.
    """
    if not isinstance(problem, (Factorization, Completion)):
        raise TypeError(f"problem: must be a Factorization or Completion, got {type(problem).__name__}")
    if basis is None:
        method = "closed_form" if isinstance(problem, Factorization) and net.init in ("orthogonal", "given") else "gradient"
        basis = invariant_basis(net, problem, method=method, rank=rank)
    elif not isinstance(basis, InvariantBasis):
        raise TypeError(f"basis: must be an InvariantBasis, got {type(basis).__name__}")
    sr = structure_residual(net, basis)
    reasons = []
    if not isinstance(problem, Factorization):
        reasons.append("completion (the mask mixes the blocks)")
    if net.init not in ("orthogonal", "given"):
        reasons.append(f"{net.init} init")
    if float(np.max(sr["residual"])) > 1e-8:
        reasons.append(f"weights off the invariant structure (residual {np.max(sr['residual']):.2e})")
    rho = float(np.mean(sr["rho"]))
    blocks = DeepLinearNetwork.from_weights([np.ascontiguousarray(b) for b in sr["blocks"]],
                                            dtype=net.dtype)
    exact = not reasons
    comp = CompressedNetwork(blocks, rho, basis, net.dims[0], exact, "; ".join(reasons))
    if not exact:
        warnings.warn(f"compressed network is an approximation here: {comp.reason}",
                      ApproximationWarning, stacklevel=2)
    return comp


def _compressed_problem(comp: CompressedNetwork, problem: Problem):
    """(kind, a, b, left, right): the wide problem seen through the fixed outer factors."""
    U, Vb = comp.basis.U[-1], comp.basis.V[0]
    if isinstance(problem, Factorization):
        # Φ lies in span(U_{L,1}) x span(V_{1,1}): the wide loss of U A Vᵀ is that of A vs Φ̃.
        return "factorization", np.ascontiguousarray(U.T @ problem.target @ Vb), None, None, None
    return "completion", problem.target, problem.mask, np.ascontiguousarray(U), np.ascontiguousarray(Vb)


def rho_terms(comp: CompressedNetwork, optimizer, problem: Problem, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """ρ(t) for t = 0..steps from the compressed network's current ρ, and the part of the wide
    loss the blocks do not carry: ``(c/2)(d−2r)ρ^{2L} + (λ/2) L (d−2r) ρ²``."""
    rho = rho_schedule(comp.rho, optimizer.lr, comp.depth, steps, weight_decay=optimizer.weight_decay,
                       reduction_constant=problem.c, momentum=getattr(optimizer, "momentum", 0.0),
                       nesterov=getattr(optimizer, "nesterov", False))
    n = comp.width - comp.rank2
    with np.errstate(over="ignore", invalid="ignore"):
        extra = 0.5 * problem.c * n * rho ** (2 * comp.depth) + 0.5 * optimizer.weight_decay * comp.depth * n * rho ** 2
    return rho, extra
