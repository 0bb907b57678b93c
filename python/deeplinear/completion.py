"""Compressed deep matrix completion on the observed entries (MATH.md §4, the paper's §3.2).

The model is ``Ŵ = U W̃_L ⋯ W̃_1 Vᵀ`` with ``U`` (d_L × 2r), ``V`` (d_0 × 2r) and ``2r × 2r``
middle factors ``W̃_l``, trained on the wide network's loss (same ``c``)::

    f = (c/2) Σ_{(i,j)∈Ω} (Ŵ_ij − Φ_ij)² + (λ/2)(‖U‖² + ‖V‖² + Σ_l ‖W̃_l‖²).

``U`` and ``V`` move with the optimizer's step scaled by ``outer_lr_scale`` (α, the paper's
discrepant learning rate: a factor on the *update* of every optimizer, not on the gradient),
the ``W̃_l`` with the full step.  With ``A = W̃_{L:1}`` and ``S`` the sparse matrix of the
residuals ``c(Ŵ − Φ)`` on Ω::

    ∇_U = (S V) Aᵀ,   ∇_V = (Sᵀ U) A,   ∇_{W̃_l} = W̃_{L:l+1}ᵀ (Uᵀ S V) W̃_{l−1:1}ᵀ.

A step runs in the core on the observed entries only: ``O(|Ω| r + d r²)`` time,
``O(|Ω| + d r)`` memory, threads over the entries (sorted by row), never a ``d × d`` array.
"""

from __future__ import annotations

import numpy as np

from . import _validation as V
from ._loader import _core
from .problems import Completion

INITS = ("spectral", "wide")
POWER_STEPS = 3  # subspace iterations of the spectral init (as good as 8 at d = 10⁴, 100 entries per row)

# Predictions are computed in blocks of this many entries (bounded temporary memory).
_PREDICT_BLOCK = 1 << 20


class CompressedCompletion:
    """A compressed deep matrix completion model ``Ŵ = U W̃_L ⋯ W̃_1 Vᵀ`` (MATH.md §4).

    Parameters
    ----------
    problem : Completion
        Dense (``Completion(target, mask)``) or sparse (``Completion.from_entries``); the
        initialization reads its observed entries only.
    rank : int
        r; the factors have ``2r`` columns (``2r ≤ min(d_L, d_0)``).
    depth : int
        L, the number of middle factors.
    init : {"spectral", "wide"}
        ``"spectral"`` (default, any size): the top-r singular triplets ``(P, σ, Q)`` of the
        rescaled observed matrix ``Y = P_Ω(Φ)/p`` (``p = |Ω|/(d_L d_0)``, so ``E[Y] = Φ``
        under uniform sampling) by a randomized subspace iteration on the sparse operator
        (``power_steps`` steps, 10 extra columns; ``O(|Ω| r)`` per step, threads over rows,
        never a ``d × d`` array),
        each joined with a random r-frame orthogonal to it: ``U = [P, P⊥]``, ``V = [Q, Q⊥]``;
        the middle factors are balanced, ``W̃_l = diag(σ_1^{1/L}, …, σ_r^{1/L}, ε, …, ε)``, so
        ``Ŵ(0) = P diag(σ) Qᵀ + ε^L P⊥ Q⊥ᵀ``.  Why it starts past the plateau: a wide network
        from a small init first spends a long plateau (MATH.md §6) aligning its learning
        subspace with the top singular subspaces and growing the small singular values from
        ε; here both are done before the first step (the subspaces are the spectral estimate
        of Φ's, the values its spectral estimate, and the factors balanced as gradient flow
        keeps them), so training only refines: U, V rotate (at α·η) into the exact subspaces
        and the values correct the estimate's bias.  The r extra directions start at ε and
        give the subspaces room to rotate (the 2r of the law of parsimony).
        ``"wide"``: the paper's construction (MATH.md §4): the gradient-based basis of a wide
        depth-L network ``W_l(0) = ε O_l`` (Haar-orthogonal ``O_l`` from ``seed``):
        ``V = orth[top-r right singular vectors of G = ∇_{W_1} f(0) and of Gᵀ W_1(0)]``,
        ``U = W_{L:1}(0) V / ε^L``, ``W̃_l = ε I``.  It forms ``d × d`` weights, the dense
        target on the mask and two dense SVDs: moderate d only (d ≲ 3000).  It reproduces
        the paper's trajectory, plateau included.
        Use ``"spectral"`` to complete a matrix (fast, any d); use ``"wide"`` to compare with
        the wide network or the paper's figures.
    init_scale : float
        ε (> 0): the scale of the middle factors (``"wide"``) or of the r extra directions
        (``"spectral"``).
    outer_lr_scale : float
        α ≥ 0, the step factor of U and V (0 freezes them: the approximation of
        :func:`deeplinear.compress`, which stalls, MATH.md §4).  The paper's 0.01 worked in
        every measured setting; α·η must be a stable step for U, V (α = 1 diverges at the
        paper's η).
    seed : int
        Seeds the random frames (spectral) or the wide init.
    power_steps : int
        Subspace iterations of the spectral init (default 3: the estimate's test error at
        d = 10⁴, 100 entries per row, was 0.83 of Φ's after 1, 0.49 after 2, 0.423 after 3 and
        0.417 after 8; the estimate's own sampling error dominates beyond).  ``"spectral"``
        only: refused, whatever its value, with ``init="wide"``.

    Examples
    --------
    >>> prob = dl.Completion.from_entries(rows, cols, vals, (d, d), test=(tr, tc, tv))
    >>> model = dl.CompressedCompletion(prob, rank=5, depth=3)
    >>> lr = model.stable_lr(prob, momentum=0.9)  # the step rule of MATH.md §4's scaling
    >>> res = dl.train(model, prob, dl.GD(lr=lr, momentum=0.9), steps=300, record_every=10)
    >>> res.test_rmse[-1], model.predict(tr, tc)
    """

    def __init__(self, problem: Completion, rank: int, depth: int, init: str = "spectral",
                 init_scale: float = 1e-3, outer_lr_scale: float = 0.01, seed: int = 0,
                 power_steps: int | None = None) -> None:
        if not isinstance(problem, Completion):
            raise TypeError(f"problem: must be a dl.Completion, got {type(problem).__name__}")
        self.rank = V.integer(rank, "rank", low=1)
        self.depth = V.integer(depth, "depth", low=1)
        self.init = V.choice(init, "init", INITS)
        self.init_scale = V.real(init_scale, "init_scale", low=0.0, low_open=True)
        self.outer_lr_scale = V.real(outer_lr_scale, "outer_lr_scale", low=0.0)
        self.seed = V.integer(seed, "seed", low=0)
        if power_steps is not None and self.init != "spectral":
            raise ValueError("power_steps: applies to init='spectral' only")
        # None for init="wide" (no power steps); the default POWER_STEPS for "spectral"
        self.power_steps = (V.integer(power_steps, "power_steps", low=0) if power_steps is not None
                            else POWER_STEPS if self.init == "spectral" else None)
        self.shape = problem.shape
        if 2 * self.rank > min(self.shape):
            raise ValueError(f"rank: 2r = {2 * self.rank} exceeds min(d_L, d_0) = {min(self.shape)}")
        if self.init == "spectral":
            U, ws, Vm = _spectral_init(problem, self.rank, self.depth, self.init_scale, self.seed, self.power_steps)
        else:
            U, ws, Vm = _wide_init(problem, self.rank, self.depth, self.init_scale, self.seed)
        self._factors = _core.CompletionFactors64(U, ws, Vm)
        self.steps_trained = 0

    def _training(self):
        """The one-train-at-a-time guard of :func:`deeplinear.train` (as a network's)."""
        from .network import exclusive_training

        return exclusive_training(self)

    def copy(self) -> "CompressedCompletion":
        """An independent copy (factors copied; ``steps_trained`` kept)."""
        new = object.__new__(CompressedCompletion)
        new.__dict__.update(self.__dict__)
        U, ws, Vm = self.factors()
        new._factors = _core.CompletionFactors64(U, ws, Vm)
        new._busy = False
        return new

    @property
    def rank2(self) -> int:
        """2r, the width of every factor."""
        return 2 * self.rank

    @property
    def weights(self) -> list[np.ndarray]:
        """Copies of the factors in the optimizer's order ``[V, W̃_1, …, W̃_L, U]`` (checkpoints)."""
        return [self._factors.get(i) for i in range(self.depth + 2)]

    def factors(self) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        """``(U, [W̃_1, …, W̃_L], V)``, copies."""
        w = self.weights
        return w[-1], w[1:-1], w[0]

    def end_to_end_factors(self) -> tuple[np.ndarray, np.ndarray]:
        """``(B, V)`` with ``B = U W̃_L ⋯ W̃_1``, so ``Ŵ = B Vᵀ`` (no ``d × d`` product)."""
        U, ws, Vm = self.factors()
        a = np.eye(self.rank2)
        for w in ws:
            a = w @ a
        return U @ a, Vm

    def predict(self, rows, cols) -> np.ndarray:
        """``Ŵ[rows[k], cols[k]]`` for integer index arrays of equal length."""
        idx = []
        for a, name, bound in ((rows, "rows", self.shape[0]), (cols, "cols", self.shape[1])):
            a = np.asarray(a)
            if a.ndim != 1:
                raise ValueError(f"{name}: must be 1-D, got shape {a.shape}")
            if a.size and not np.issubdtype(a.dtype, np.integer):
                raise TypeError(f"{name}: must hold integers, got dtype {a.dtype}")
            if a.size and (a.min() < 0 or a.max() >= bound):
                raise ValueError(f"{name}: indices must be in [0, {bound})")
            idx.append(a)
        if len(idx[0]) != len(idx[1]):
            raise ValueError(f"cols: has {len(idx[1])} entries, rows has {len(idx[0])}")
        B, Vm = self.end_to_end_factors()
        out = np.empty(len(idx[0]))
        for s in range(0, len(out), _PREDICT_BLOCK):
            r, c = idx[0][s:s + _PREDICT_BLOCK], idx[1][s:s + _PREDICT_BLOCK]
            out[s:s + _PREDICT_BLOCK] = np.einsum("ij,ij->i", B[r], Vm[c])
        return out

    def stable_lr(self, problem: Completion, momentum: float = 0.0) -> float:
        """A step size η that is stable at the current factors: ``(1 + μ) / (4 λ)``, an eighth
        of the limit ``2(1 + μ)/λ`` of GD with heavy-ball momentum μ on a quadratic of
        curvature λ, with

            λ = c p [ Σ_l ‖U‖² ‖W̃_{L:l+1}‖² ‖W̃_{l−1:1}‖² ‖V‖² + α (‖A‖² ‖V‖² + ‖U A‖²) ],

        ``A = W̃_{L:1}``, ``p = |Ω|/(d_L d_0)`` the observed fraction, ``c`` the reduction
        constant and ‖·‖ spectral norms.  λ bounds the Gauss–Newton curvature of the loss,
        each factor's block ``‖J_l‖²`` weighted by its step factor (1 for the middle factors,
        α = ``outer_lr_scale`` for U and V, which move at ``α η``), with the sum over Ω replaced
        by ``p`` times the sum over all entries (its mean under uniform sampling): the
        mean-reduction scaling of MATH.md §4 made explicit (with ``c = 1/d²`` and ``p`` small,
        η grows like ``1/(c p)``).  At the spectral init (U, V orthonormal, the middle
        factors ``σ^{1/L}``) the middle factors contribute ``c p L σ₁^{2(L−1)/L}`` and U, V
        ``2 α c p σ₁²``: U and V dominate for large σ₁ (large d at a fixed entry scale), which
        a rule from the middle factors alone misses (it diverged at d = 10⁵, |Ω| = 10⁷).

        To λ is added a bound of the residual's curvature ``c ⟨R, ∂²Ŵ⟩``
        (:meth:`_residual_curvature`, from ``‖P_Ω(Ŵ − Φ)‖`` at the current factors): large at a
        small init, where the Gauss–Newton part vanishes like ε^{2(L−1)}, and at a spectral init
        from few entries per row (its error is large).  The margin (4 below the half-limit)
        covers the sampled curvature's deviation from its mean.  The curvature is that of the
        current factors: from a small init (``init="wide"``) it grows by orders of magnitude as
        the factors leave it, so a step stable there is not for the whole run (call it again
        once the factors have grown, or take a smaller step).  Measured with the Gauss–Newton
        part alone at d = 10⁴, |Ω| = 10⁶ (100 entries per row, as at d = 10⁵, |Ω| = 10⁷), r = 5,
        L = 3, α = 0.1, μ = 0.9: GD diverged at 4× that η and converged at 2×, 1× and 0.4× at
        the same speed (heavy ball with μ = 0.9 contracts by √μ per step once η is large
        enough, so a margin costs no steps there).  With the residual's part (82% of λ at
        d = 3000, 100 entries per row, r = 5, α = 0.01: η 5.6× smaller) the test RMSE after
        100, 200, 300, 400 steps was the same at 1×, 2× and 4× this η (2.6e-10 after 400)."""
        if not isinstance(problem, Completion) or problem.shape != self.shape:
            raise ValueError(f"problem: must be the dl.Completion of shape {self.shape} the model trains on")
        mu = V.real(momentum, "momentum", low=0.0, high=1.0, high_open=True)
        U, ws, Vm = self.factors()
        k = self.rank2
        prefix = [np.eye(k)]
        for w in ws:
            prefix.append(w @ prefix[-1])
        suffix = [np.eye(k)]
        for w in reversed(ws):
            suffix.append(suffix[-1] @ w)
        suffix.reverse()  # suffix[l] = W̃_L ⋯ W̃_{l+1}
        def sq(m):  # ‖m‖₂², of a tall m from its k × k Gram matrix
            return float(np.linalg.eigvalsh(m.T @ m)[-1])

        nu, nv = sq(U), sq(Vm)
        a = prefix[-1]
        mid = sum(sq(suffix[l + 1]) * sq(prefix[l]) for l in range(len(ws))) * nu * nv
        outer = self.outer_lr_scale * (sq(a) * nv + sq(U @ a))
        lam = problem.c * problem.observed_fraction * (mid + outer) + self._residual_curvature(problem, ws, nu, nv)
        if not np.isfinite(lam) or lam <= 0:
            raise ValueError("model: the factors give no finite positive curvature (all zero or not finite)")
        return float((1.0 + mu) / (4.0 * lam))

    def _residual_curvature(self, problem: Completion, ws, nu: float, nv: float) -> float:
        """A bound of the Hessian's second part, ``c ⟨R, ∂²Ŵ⟩`` with ``R = P_Ω(Ŵ − Φ)``: the
        block for factors i ≠ j of ``Ŵ = U W̃_L ⋯ W̃_1 Vᵀ`` is bounded by ``c ‖R‖_F`` times the
        product of the other factors' spectral norms (times ``sqrt(α_i α_j)``, the step
        factors), and the block matrix (zero diagonal: Ŵ is linear in each factor) by its
        largest block-row sum.  It dominates the Gauss–Newton part at a small init (the paper's
        ``init="wide"``, where the GN part is ~ε^{2(L−1)}: a step from that part alone diverged
        at the second step) and at a spectral init from few entries per row."""
        obs = problem._entries()[0]
        rows, cols, vals = obs.coo()
        rn = float(np.linalg.norm(self.predict(rows, cols) - vals))
        norms = [np.sqrt(nu)] + [np.sqrt(float(np.linalg.eigvalsh(w.T @ w)[-1])) for w in reversed(ws)] + [np.sqrt(nv)]
        scale = [np.sqrt(self.outer_lr_scale)] + [1.0] * len(ws) + [np.sqrt(self.outer_lr_scale)]
        n = len(norms)
        rows_sum = max(sum(scale[i] * scale[j] * float(np.prod([norms[m] for m in range(n) if m not in (i, j)]))
                           for j in range(n) if j != i) for i in range(n))
        return problem.c * rn * rows_sum

    def describe(self) -> dict:
        return {"kind": "compressed_completion", "shape": list(self.shape), "rank": self.rank,
                "depth": self.depth, "init": self.init, "init_scale": self.init_scale,
                "outer_lr_scale": self.outer_lr_scale, "seed": self.seed}

    def __repr__(self) -> str:
        return (f"CompressedCompletion(shape={self.shape}, rank={self.rank}, depth={self.depth}, "
                f"init={self.init!r}, outer_lr_scale={self.outer_lr_scale:g})")


def _frame_beside(basis: np.ndarray, r: int, rng: np.random.Generator) -> np.ndarray:
    """A random r-frame orthogonal to the orthonormal columns of ``basis``."""
    g = rng.standard_normal((basis.shape[0], r))
    for _ in range(2):  # twice: orthogonal to working precision
        g -= basis @ (basis.T @ g)
    return _orthonormalize(g)  # Q of the QR with a positive diagonal of R


def _orthonormalize(x: np.ndarray) -> np.ndarray:
    """An orthonormal basis of the columns of a tall ``x`` (full column rank), by Cholesky QR
    twice (``X R⁻¹`` with ``RᵀR = XᵀX``; the second pass restores orthogonality to round-off
    when ``κ(X) ≲ 10⁷``): a k × k Cholesky and a GEMM instead of LAPACK's Householder QR, which
    took 0.57 s for 10⁵ × 15 (NumPy's threaded BLAS on a loaded 2-core machine) against 0.05 s.
    Householder QR when the Gram matrix is not numerically positive definite."""
    q = x
    try:
        for _ in range(2):
            r = np.linalg.cholesky(q.T @ q)  # lower: X = (X L⁻ᵀ) Lᵀ
            q = np.linalg.solve(r, q.T).T
        if np.all(np.isfinite(q)) and np.allclose(q.T @ q, np.eye(q.shape[1]), atol=1e-10):
            return q
    except np.linalg.LinAlgError:
        pass
    return np.linalg.qr(x)[0]


def sparse_svd(problem: Completion, rank: int, *, oversample: int = 10, power_steps: int = 8,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top ``rank`` singular triplets ``(P, σ, Q)`` of ``Y = P_Ω(Φ)/p`` (``p`` the observed
    fraction) by randomized subspace iteration on the sparse operator (Halko–Martinsson–Tropp,
    with a QR after every product): ``O((|Ω| + d k) k)`` per power step, ``k = rank +
    oversample``."""
    obs = problem._entries()[0]
    d_out, d_in = problem.shape
    scale = 1.0 / problem.observed_fraction
    k = min(rank + oversample, d_out, d_in)
    rng = np.random.default_rng(seed)
    threads = max(1, int(_core.get_num_threads()))

    def prod(x, transpose):
        return _core.sparse_product64(obs.core, d_out, d_in, np.ascontiguousarray(x), transpose, threads) * scale

    q = _orthonormalize(prod(rng.standard_normal((d_in, k)), False))
    for _ in range(power_steps):
        z = _orthonormalize(prod(q, True))
        q = _orthonormalize(prod(z, False))
    bt = prod(q, True)  # Yᵀ Q = (Qᵀ Y)ᵀ = Q₂ R (d_in × k), so Qᵀ Y = Rᵀ Q₂ᵀ: the SVD of the k × k Rᵀ
    q2 = _orthonormalize(bt)
    w, s, zt = np.linalg.svd((q2.T @ bt).T)
    return q @ w[:, :rank], s[:rank], q2 @ zt[:rank].T


def _spectral_init(problem: Completion, r: int, depth: int, eps: float, seed: int, power_steps: int):
    rng = np.random.default_rng(seed)
    P, s, Q = sparse_svd(problem, r, power_steps=power_steps, seed=int(rng.integers(2**63)))
    U = np.ascontiguousarray(np.hstack([P, _frame_beside(P, r, rng)]))
    Vm = np.ascontiguousarray(np.hstack([Q, _frame_beside(Q, r, rng)]))
    diag = np.concatenate([s ** (1.0 / depth), np.full(r, eps)])
    return U, [np.diag(diag) for _ in range(depth)], Vm


def _wide_init(problem: Completion, r: int, depth: int, eps: float, seed: int):
    from . import _memory
    from .network import DeepLinearNetwork
    from .parsimony import invariant_basis

    d_out, d_in = problem.shape
    if d_out != d_in:
        raise ValueError(f"init: 'wide' needs a square matrix (a wide network of width d), got shape {problem.shape}")
    d = d_out
    _memory.require(8 * d * d * (depth + 4), "init='wide' (a wide network and its gradient, d x d each)", "init")
    dense = problem
    if problem.is_sparse:
        obs = problem._entries()[0]
        rows, cols, vals = obs.coo()
        target = np.zeros((d, d))
        mask = np.zeros((d, d))
        target[rows, cols] = vals
        mask[rows, cols] = 1.0
        dense = Completion(target, mask, reduction=problem.reduction)
    net = DeepLinearNetwork(depth, d, init="orthogonal", init_scale=eps, seed=seed)
    basis = invariant_basis(net, dense, method="gradient", rank=r)
    U = np.ascontiguousarray(basis.U[-1])
    Vm = np.ascontiguousarray(basis.V[0])
    return U, [eps * np.eye(2 * r) for _ in range(depth)], Vm


class _CompletionModel:
    """The model kind of :func:`deeplinear.train` for a :class:`CompressedCompletion` (the
    protocol in :mod:`deeplinear.training`): the core's ``CompletionTrainer64`` steps the
    factors on the observed entries; checkpoints hold the factors ``[V, W̃_1, …, W̃_L, U]``;
    the callback receives the model; tracking does not apply."""

    def __init__(self, model: CompressedCompletion) -> None:
        self.model = model
        self.core_network = model  # what checkpoints store (``weights``) and Result.meta describes

    def check(self, problem, optimizer, tracking) -> None:
        from . import _memory

        if not isinstance(problem, Completion):
            raise TypeError(f"problem: a CompressedCompletion trains on a dl.Completion, got {type(problem).__name__}")
        if problem.shape != self.model.shape:
            raise ValueError(f"problem: shape {problem.shape} does not match the model's {self.model.shape}")
        if tracking is not None:
            raise ValueError("track: singular-value tracking applies to wide and compressed networks, "
                             "not to a CompressedCompletion (omit track=)")
        threads = max(1, int(_core.get_num_threads()))
        d_out, d_in = problem.shape
        _memory.require(8 * self.model.rank2 * (d_out * 5 + d_in * (4 + threads)),
                        "training (gradients, optimizer state, per-thread buffers)", "model")

    def describe(self) -> dict:
        return self.model.describe()

    def start(self) -> dict:
        return {"init": self.model.init, "init_scale": self.model.init_scale, "seed": self.model.seed}

    def reference_basis(self, problem, tracking):
        return None

    def trainer(self, problem, optimizer, record_every, tol, steps):
        obs, test = problem._entries()
        d_out, d_in = problem.shape
        threads = max(1, int(_core.get_num_threads()))
        return _core.CompletionTrainer64(
            self.model._factors, obs.core, None if test is None else test.core, d_out, d_in,
            optimizer._config(), problem.c, self.model.outer_lr_scale, record_every,
            -1.0 if tol is None else tol, steps, threads)

    def set_tracking(self, trainer, problem, optimizer, steps, tracking, basis, resume):
        raise AssertionError("refused by check()")

    def state(self, trainer) -> dict:
        return {}

    def restore(self, trainer, state) -> None:
        for i, w in enumerate(state["weights"]):
            self.model._factors.set(i, np.ascontiguousarray(w, dtype=np.float64))
        trainer.restore(state["step"], state["count"], state["trace"], state["first"], state["second"],
                        state["steps"], state["train"], state["test"])

    def view(self, trainer):
        return self.model

    def finish(self, trainer, optimizer, problem) -> None:
        self.model.steps_trained += int(trainer.step)

    def meta(self, trainer) -> dict:
        return {"threads": int(trainer.threads)}
