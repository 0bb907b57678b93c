"""A plain NumPy reference implementation of deeplinear's maths (MATH.md §1), float64.

Written from the specification (MATH.md §1 and optax's update rules), not from the C++ core,
and on purpose in the most direct way (no prefix/suffix product reuse, no in-place updates),
so that it is an independent oracle for the compiled code:

* losses: factorization, completion (train and test loss), regression;
* gradients: ``∇_{W_l} f = W_{L:l+1}ᵀ G W_{l-1:1}ᵀ + λ W_l`` with ``G = ∂f/∂W_{L:1}``;
* optimizers as in optax: ``sgd`` (heavy-ball / Nesterov ``trace``), ``adam``, ``rmsprop``
  (plain, centered, with momentum), weight decay as the L2 term of the loss;
* :func:`train_numpy`, the training loop (loss after k steps at index k).

Everything here works in float64 whatever the dtype of the inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

KINDS = ("factorization", "completion", "regression")
REDUCTIONS = ("sum", "mean")


# -- products -------------------------------------------------------------------------------------

def as64(weights: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [np.array(w, dtype=np.float64, copy=True) for w in weights]


def product(weights: Sequence[np.ndarray], lo: int, hi: int, n_in: int) -> np.ndarray:
    """``W_hi ⋯ W_lo`` (1-based, inclusive); the identity of size ``n_in`` when ``hi < lo``."""
    out = np.eye(n_in)
    for l in range(lo, hi + 1):
        out = weights[l - 1] @ out
    return out


def end_to_end(weights: Sequence[np.ndarray]) -> np.ndarray:
    """``W_{L:1} = W_L ⋯ W_1``."""
    return product(weights, 1, len(weights), weights[0].shape[1])


# -- the problem ----------------------------------------------------------------------------------

@dataclass
class Problem:
    """Data of one loss of MATH.md §1 (float64 copies)."""

    kind: str
    reduction: str = "mean"
    target: np.ndarray | None = None
    mask: np.ndarray | None = None
    X: np.ndarray | None = None
    Y: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind: {self.kind!r}")
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"reduction: {self.reduction!r}")
        f64 = lambda a: None if a is None else np.array(a, dtype=np.float64, copy=True)  # noqa: E731
        self.target, self.mask, self.X, self.Y = f64(self.target), f64(self.mask), f64(self.X), f64(self.Y)
        if self.kind == "regression":
            assert self.X is not None and self.Y is not None and self.X.shape[1] == self.Y.shape[1]
        else:
            assert self.target is not None
        if self.kind == "completion":
            assert self.mask is not None and self.mask.shape == self.target.shape
            assert np.all((self.mask == 0) | (self.mask == 1))

    @property
    def c(self) -> float:
        """1 for "sum"; 1/(d_L d_0) for "mean" (all entries, also for completion); 1/(d_L n)
        for regression."""
        if self.reduction == "sum":
            return 1.0
        if self.kind == "regression":
            return 1.0 / (self.Y.shape[0] * self.Y.shape[1])
        return 1.0 / (self.target.shape[0] * self.target.shape[1])

    def _error(self, W: np.ndarray) -> np.ndarray:
        """Unmasked error: ``W − Φ`` or ``W X − Y``."""
        if self.kind == "regression":
            return W @ self.X - self.Y
        return W - self.target

    def data_loss(self, W: np.ndarray) -> float:
        E = self._error(W)
        if self.kind == "completion":
            E = self.mask * E
        return 0.5 * self.c * float(np.sum(E * E))

    def test_loss(self, W: np.ndarray) -> float:
        """Completion: ``(c/2)‖(1−M) ⊙ (W − Φ)‖²`` (no weight decay); NaN otherwise."""
        if self.kind != "completion":
            return float("nan")
        E = (1.0 - self.mask) * self._error(W)
        return 0.5 * self.c * float(np.sum(E * E))

    def end_gradient(self, W: np.ndarray) -> np.ndarray:
        """``∂(data loss)/∂W_{L:1}``."""
        E = self._error(W)
        if self.kind == "completion":
            return self.c * self.mask * E
        if self.kind == "regression":
            return self.c * E @ self.X.T
        return self.c * E


def problem_from_dl(prob) -> Problem:
    """The oracle's copy of a ``dl.Factorization`` / ``dl.Completion`` / ``dl.Regression``."""
    kind = prob.kind
    if kind == "regression":
        return Problem(kind, prob.reduction, X=prob.X, Y=prob.Y)
    if kind == "completion":
        return Problem(kind, prob.reduction, target=prob.target, mask=prob.mask)
    return Problem(kind, prob.reduction, target=prob.target)


# -- loss and gradients ---------------------------------------------------------------------------

def weight_penalty(weights: Sequence[np.ndarray], weight_decay: float) -> float:
    return 0.5 * weight_decay * sum(float(np.sum(np.asarray(w, dtype=np.float64) ** 2)) for w in weights)


def loss(weights: Sequence[np.ndarray], problem: Problem, weight_decay: float = 0.0) -> float:
    """Training loss ``(c/2)‖M ⊙ (W_{L:1} − Φ)‖² + (λ/2) Σ ‖W_l‖²`` (or the regression one)."""
    ws = as64(weights)
    return problem.data_loss(end_to_end(ws)) + weight_penalty(ws, weight_decay)


def losses(weights: Sequence[np.ndarray], problem: Problem, weight_decay: float = 0.0) -> tuple[float, float]:
    """``(train loss, test loss)``; the test loss is NaN except for completion."""
    ws = as64(weights)
    W = end_to_end(ws)
    return problem.data_loss(W) + weight_penalty(ws, weight_decay), problem.test_loss(W)


def gradients(weights: Sequence[np.ndarray], problem: Problem, weight_decay: float = 0.0) -> list[np.ndarray]:
    """``∇_{W_l} f = W_{L:l+1}ᵀ G W_{l-1:1}ᵀ + λ W_l``, each product formed from scratch."""
    ws = as64(weights)
    L = len(ws)
    G = problem.end_gradient(end_to_end(ws))
    grads = []
    for l in range(1, L + 1):
        left = product(ws, l + 1, L, ws[l - 1].shape[0])    # W_{L:l+1}, d_L × d_l
        right = product(ws, 1, l - 1, ws[0].shape[1])       # W_{l-1:1}, d_{l-1} × d_0
        grads.append(left.T @ G @ right.T + weight_decay * ws[l - 1])
    return grads


def finite_difference_gradients(weights: Sequence[np.ndarray], problem: Problem, weight_decay: float = 0.0,
                                rel_step: float = 1e-6) -> list[np.ndarray]:
    """Central differences ``(f(W + h e_ij) − f(W − h e_ij)) / 2h`` of :func:`loss`, entry by
    entry, with ``h = rel_step · max(1, max|W_l|)`` per layer."""
    ws = as64(weights)
    out = []
    for l, w in enumerate(ws):
        h = rel_step * max(1.0, float(np.max(np.abs(w))))
        g = np.empty_like(w)
        for idx in np.ndindex(*w.shape):
            orig = w[idx]
            w[idx] = orig + h
            fp = loss(ws, problem, weight_decay)
            w[idx] = orig - h
            fm = loss(ws, problem, weight_decay)
            w[idx] = orig
            g[idx] = (fp - fm) / (2.0 * h)
        out.append(g)
    return out


# -- optimizers (optax's update rules) --------------------------------------------------------------

@dataclass
class OptSettings:
    """One optimizer's settings, named as in ``dl.GD`` / ``dl.Adam`` / ``dl.RMSProp``."""

    name: str                 # "gd", "adam" or "rmsprop"
    lr: float
    weight_decay: float = 0.0
    momentum: float = 0.0     # gd, rmsprop
    nesterov: bool = False    # gd, rmsprop
    b1: float = 0.9           # adam
    b2: float = 0.999         # adam
    eps: float = 1e-8         # adam, rmsprop
    eps_root: float = 0.0     # adam
    decay: float = 0.9        # rmsprop
    initial_scale: float = 0.0  # rmsprop
    centered: bool = False    # rmsprop

    @classmethod
    def from_dl(cls, opt) -> "OptSettings":
        """From a ``dl.GD`` / ``dl.Adam`` / ``dl.RMSProp`` instance (plain dataclasses)."""
        from dataclasses import asdict
        return cls(name=opt.name, **asdict(opt))


class _Trace:
    """``optax.trace(decay=μ, nesterov)``: ``t ← u + μ t``; output ``u + μ t`` (Nesterov) or ``t``."""

    def __init__(self, shapes, mu: float, nesterov: bool) -> None:
        self.mu, self.nesterov = mu, nesterov
        self.t = [np.zeros(s) for s in shapes]

    def __call__(self, l: int, u: np.ndarray) -> np.ndarray:
        self.t[l] = u + self.mu * self.t[l]
        return u + self.mu * self.t[l] if self.nesterov else self.t[l]


class Optimizer:
    """State and update of one optimizer over a list of layers (float64)."""

    def __init__(self, s: OptSettings, shapes) -> None:
        if s.name not in ("gd", "adam", "rmsprop"):
            raise ValueError(f"optimizer: {s.name!r}")
        self.s = s
        self.count = 0
        n = len(shapes)
        if s.name == "adam":
            self.mu = [np.zeros(sh) for sh in shapes]
            self.nu = [np.zeros(sh) for sh in shapes]
        if s.name == "rmsprop":
            self.nu = [np.full(sh, float(s.initial_scale)) for sh in shapes]
            self.mu = [np.zeros(sh) for sh in shapes] if s.centered else [None] * n
        self.trace = _Trace(shapes, s.momentum, s.nesterov) if s.momentum else None

    def step(self, weights: list[np.ndarray], grads: list[np.ndarray]) -> list[np.ndarray]:
        """New weights from the gradients (all taken at the current weights)."""
        s = self.s
        self.count += 1          # optax: count incremented before the bias correction, t = 1 first
        t = self.count
        new = []
        for l, (w, g) in enumerate(zip(weights, grads)):
            if s.name == "gd":
                # optax.sgd = chain(trace(μ, nesterov), scale_by_learning_rate(η))
                u = self.trace(l, g) if self.trace else g
                delta = -s.lr * u
            elif s.name == "adam":
                # optax.adam = chain(scale_by_adam(b1, b2, eps, eps_root), scale_by_learning_rate(η))
                self.mu[l] = (1.0 - s.b1) * g + s.b1 * self.mu[l]
                self.nu[l] = (1.0 - s.b2) * g ** 2 + s.b2 * self.nu[l]
                mu_hat = self.mu[l] / (1.0 - s.b1 ** t)
                nu_hat = self.nu[l] / (1.0 - s.b2 ** t)
                delta = -s.lr * (mu_hat / (np.sqrt(nu_hat + s.eps_root) + s.eps))
            else:
                # optax.rmsprop = chain(scale_by_rms | scale_by_stddev, scale_by_learning_rate(η),
                #                       trace(μ, nesterov) if momentum)
                self.nu[l] = (1.0 - s.decay) * g ** 2 + s.decay * self.nu[l]
                if s.centered:
                    self.mu[l] = (1.0 - s.decay) * g + s.decay * self.mu[l]
                    u = g / np.sqrt(self.nu[l] - self.mu[l] ** 2 + s.eps)
                else:
                    u = g / np.sqrt(self.nu[l] + s.eps)
                u = -s.lr * u
                delta = self.trace(l, u) if self.trace else u
            new.append(w + delta)
        return new


# -- training -------------------------------------------------------------------------------------

@dataclass
class TrainResult:
    train_loss: np.ndarray   # index k: loss after k steps (length steps + 1)
    test_loss: np.ndarray    # completion only; NaN otherwise
    weights: list[np.ndarray]


def train_numpy(weights: Sequence[np.ndarray], kind: str, *, target=None, mask=None, X=None, Y=None,
                reduction: str = "mean", optimizer: OptSettings | str = "gd", steps: int = 100,
                **settings) -> TrainResult:
    """Train a deep linear network in float64 with the oracle's loss, gradients and optimizer.

    ``optimizer`` is an :class:`OptSettings` or a name ("gd", "adam", "rmsprop") with the
    settings as keyword arguments (``lr``, ``weight_decay``, ``momentum``, …).  Weight decay is
    the L2 term of the loss, so its gradient ``λ W`` is part of ``g`` for every optimizer.
    """
    s = optimizer if isinstance(optimizer, OptSettings) else OptSettings(name=optimizer, **settings)
    if isinstance(optimizer, OptSettings) and settings:
        raise TypeError("give the settings either in an OptSettings or as keywords, not both")
    prob = Problem(kind, reduction, target=target, mask=mask, X=X, Y=Y)
    ws = as64(weights)
    opt = Optimizer(s, [w.shape for w in ws])
    train = np.empty(steps + 1)
    test = np.empty(steps + 1)
    train[0], test[0] = losses(ws, prob, s.weight_decay)
    for k in range(1, steps + 1):
        ws = opt.step(ws, gradients(ws, prob, s.weight_decay))
        train[k], test[k] = losses(ws, prob, s.weight_decay)
    return TrainResult(train, test, ws)


def train_like(weights: Sequence[np.ndarray], dl_problem, dl_optimizer, steps: int) -> TrainResult:
    """:func:`train_numpy` with the data and settings of deeplinear objects."""
    p = problem_from_dl(dl_problem)
    return train_numpy(weights, p.kind, target=p.target, mask=p.mask, X=p.X, Y=p.Y,
                       reduction=p.reduction, optimizer=OptSettings.from_dl(dl_optimizer), steps=steps)
