"""Optimizers as plain data (their state lives in the core while a training runs).

Every optimizer uses optax's update rule, with the gradient ``g = ∇f`` of the loss including
its weight-decay term ``λ W`` (so ``weight_decay`` is the L2 term of the loss for every
optimizer: Adam with weight decay is Adam on ``f``, not AdamW).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from . import _validation as V
from ._loader import _core


@dataclass(frozen=True)
class Optimizer:
    lr: float
    weight_decay: float = 0.0

    name = "optimizer"

    def __post_init__(self) -> None:
        V.real(self.lr, "lr", low=0.0, low_open=True)
        V.real(self.weight_decay, "weight_decay", low=0.0)

    def _config(self) -> "_core.OptimizerConfig":
        raise NotImplementedError

    def describe(self) -> dict:
        return {"name": self.name, **asdict(self)}


@dataclass(frozen=True)
class GD(Optimizer):
    """Gradient descent with optional heavy-ball or Nesterov momentum (optax.sgd).

    ``B ← μ B + g``;  ``W ← W − η B`` (heavy ball) or ``W ← W − η (g + μ B)`` (Nesterov);
    with ``μ = 0``: ``W ← W − η g``.
    """

    lr: float = 0.1
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0

    name = "gd"

    def __post_init__(self) -> None:
        super().__post_init__()
        V.real(self.momentum, "momentum", low=0.0, high=1.0, high_open=True)
        V.boolean(self.nesterov, "nesterov")

    def _config(self):
        c = _core.OptimizerConfig()
        c.kind, c.lr, c.momentum, c.nesterov, c.weight_decay = (
            _core.OptKind.GD, self.lr, self.momentum, self.nesterov, self.weight_decay)
        return c


@dataclass(frozen=True)
class Adam(Optimizer):
    """Adam (optax.adam): ``m ← b1 m + (1−b1) g``, ``v ← b2 v + (1−b2) g²``, step count t;
    ``W ← W − η m̂ / (sqrt(v̂ + eps_root) + eps)`` with ``m̂ = m/(1−b1ᵗ)``, ``v̂ = v/(1−b2ᵗ)``.
    """

    lr: float = 1e-3
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    eps_root: float = 0.0
    weight_decay: float = 0.0

    name = "adam"

    def __post_init__(self) -> None:
        super().__post_init__()
        V.real(self.b1, "b1", low=0.0, high=1.0, high_open=True)
        V.real(self.b2, "b2", low=0.0, high=1.0, high_open=True)
        V.real(self.eps, "eps", low=0.0)
        V.real(self.eps_root, "eps_root", low=0.0)

    def _config(self):
        c = _core.OptimizerConfig()
        c.kind, c.lr, c.b1, c.b2, c.eps, c.eps_root, c.weight_decay = (
            _core.OptKind.Adam, self.lr, self.b1, self.b2, self.eps, self.eps_root, self.weight_decay)
        return c


@dataclass(frozen=True)
class RMSProp(Optimizer):
    """RMSProp (optax.rmsprop), epsilon **inside** the square root:
    ``v ← decay v + (1−decay) g²`` (``v(0) = initial_scale``), ``u = g / sqrt(v + eps)``
    (centered: ``m ← decay m + (1−decay) g``, ``u = g / sqrt(v − m² + eps)``), then momentum on
    ``u`` as in :class:`GD`: ``B ← μ B + u``, ``W ← W − η B`` (``W ← W − η u`` for ``μ = 0``).
    """

    lr: float = 1e-3
    decay: float = 0.9
    eps: float = 1e-8
    initial_scale: float = 0.0
    centered: bool = False
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0

    name = "rmsprop"

    def __post_init__(self) -> None:
        super().__post_init__()
        V.real(self.decay, "decay", low=0.0, high=1.0, high_open=True)
        V.real(self.eps, "eps", low=0.0)
        V.real(self.initial_scale, "initial_scale", low=0.0)
        if self.eps == 0 and self.initial_scale == 0:
            raise ValueError("eps: RMSProp needs eps > 0 or initial_scale > 0 (division by zero)")
        V.boolean(self.centered, "centered")
        V.real(self.momentum, "momentum", low=0.0, high=1.0, high_open=True)
        V.boolean(self.nesterov, "nesterov")

    def _config(self):
        c = _core.OptimizerConfig()
        c.kind, c.lr, c.decay, c.eps, c.initial_scale, c.centered = (
            _core.OptKind.RMSProp, self.lr, self.decay, self.eps, self.initial_scale, self.centered)
        c.momentum, c.nesterov, c.weight_decay = self.momentum, self.nesterov, self.weight_decay
        return c
