"""Results of a training run: plain NumPy arrays plus JSON-able metadata."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._io import READ_ERRORS, atomic_savez, check_writable, open_npz

STATUSES = ("max_steps", "converged", "diverged", "interrupted")


@dataclass(eq=False)
class Result:
    """What :func:`deeplinear.train` returns (compared by identity: ``a == b`` iff ``a is b``;
    compare the arrays to compare two runs).

    Attributes
    ----------
    steps : ndarray of int
        The step index of every recorded point (``0, k, 2k, …`` for ``record_every=k``, plus
        the last step).  With ``record_every=1``: ``0 … n_steps``.
    train_loss : ndarray of float
        Training loss (data term + weight decay) after ``steps[i]`` steps.
    test_loss : ndarray of float or None
        Completion only: loss on the unobserved entries (no weight-decay term).
    status : str
        ``"max_steps"``, ``"converged"`` (loss <= tol), ``"diverged"`` (non-finite loss or
        weights; the history up to there is kept) or ``"interrupted"``.
    n_steps : int
        Number of updates done.
    elapsed : float
        Wall time of the training loop, seconds.
    meta : dict
        Network, problem and optimizer descriptions, settings and versions.
    test_rmse : ndarray of float or None
        Completion with test entries: the relative RMSE on them after ``steps[i]`` steps,
        ``‖P_test(Ŵ − Φ)‖ / ‖P_test(Φ)‖`` (MATH.md §1's test error).
    tracking : dict or None
        With ``train(track=...)``: ``steps`` (recorded steps), ``singular_values``
        (records × layers × values, descending; top k then bottom k when ``Tracking.k`` is set),
        ``angles_right`` / ``angles_left`` (records × layers × 2r, principal angles in radians
        between each layer's learning subspace and the reference basis, right and left side),
        ``angles_align`` (records × (layers−1) × 2r, between ``U_l`` and ``V_{l+1}``),
        ``fallbacks`` (full SVDs), ``iterations`` (block steps), ``max_residual`` (the largest
        ``‖Wᵀu_i − s_i v_i‖/s₁`` of the records accepted; the values are certified to
        ``Tracking.tol``·s₁ even when it is larger) (incremental), ``verify_error``
        (structured).  NaN where a quantity is not measured by the mode, and angles NaN for a
        record where the learning subspace is not identifiable (its 2r-th and (2r+1)-th
        singular values tie, e.g. at step 0 of an orthogonal init: all values equal ε).
    train_accuracy, test_accuracy : float or None
        Classification: the fraction of training (test, when the problem has a test split)
        samples whose largest output is their class, at the final weights.
    """

    steps: np.ndarray
    train_loss: np.ndarray
    test_loss: np.ndarray | None
    status: str
    n_steps: int
    elapsed: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    tracking: dict[str, Any] | None = None
    test_rmse: np.ndarray | None = None
    train_accuracy: float | None = None
    test_accuracy: float | None = None

    @property
    def final_loss(self) -> float:
        return float(self.train_loss[-1]) if len(self.train_loss) else float("nan")

    def summary(self) -> dict:
        """A JSON-able summary (no arrays)."""
        out = {"status": self.status, "n_steps": self.n_steps, "elapsed": self.elapsed,
               "final_train_loss": self.final_loss, "meta": self.meta}
        if self.test_loss is not None and len(self.test_loss):
            out["final_test_loss"] = float(self.test_loss[-1])
        if self.test_rmse is not None and len(self.test_rmse):
            out["final_test_rmse"] = float(self.test_rmse[-1])
        for name in ("train_accuracy", "test_accuracy"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Save to ``.npz`` (arrays, metadata as a JSON string), atomically (write, then rename)."""
        path = check_writable(path, "path")
        arrays = {"steps": self.steps, "train_loss": self.train_loss}
        if self.test_loss is not None:
            arrays["test_loss"] = self.test_loss
        if self.test_rmse is not None:
            arrays["test_rmse"] = self.test_rmse
        header = {"status": self.status, "n_steps": self.n_steps, "elapsed": self.elapsed,
                  "meta": self.meta, "format": "deeplinear.Result/1"}
        for name in ("train_accuracy", "test_accuracy"):
            if getattr(self, name) is not None:
                header[name] = getattr(self, name)
        if self.tracking is not None:
            header["tracking"] = {k: v for k, v in self.tracking.items() if not isinstance(v, np.ndarray)}
            arrays.update({f"tracking/{k}": v for k, v in self.tracking.items() if isinstance(v, np.ndarray)})
        header["arrays"] = sorted(arrays)  # every entry load() must find (a damaged name is not a missing array)
        arrays["__header__"] = np.array(json.dumps(header, default=_json_default))
        atomic_savez(path, arrays)

    def save_json(self, path: str | os.PathLike) -> None:
        """The summary plus the loss history as strict JSON (readable without NumPy, by any
        JSON parser): non-finite numbers, e.g. the final loss of a run that diverged at step 0
        or the ``init_scale`` of a network made from weights, are written as ``null``."""
        path = check_writable(path, "path")
        data = self.summary()
        data["steps"] = self.steps.tolist()
        data["train_loss"] = self.train_loss.tolist()
        if self.test_loss is not None:
            data["test_loss"] = self.test_loss.tolist()
        if self.test_rmse is not None:
            data["test_rmse"] = self.test_rmse.tolist()
        text = json.dumps(_finite_or_none(data), indent=1, default=_json_default, allow_nan=False)
        with open(path, "w") as fh:
            fh.write(text)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Result":
        """A result written by :meth:`save`; a ``ValueError`` naming ``path`` for any other
        file (a plain ``.npz`` or ``.npy``, a corrupt, truncated or foreign file)."""
        z, header = open_npz(path, "path", "a saved deeplinear Result", "deeplinear.Result/")
        try:
            return cls._from_npz(z, header)
        except READ_ERRORS as exc:
            raise ValueError(f"path: {os.fspath(path)!r} is a damaged Result file "
                             f"({type(exc).__name__}: {exc})") from exc
        finally:
            z.close()

    @classmethod
    def _from_npz(cls, z, header: dict) -> "Result":
        if "arrays" in header:  # files written before the list was stored have no such check
            stored = sorted(k for k in z.files if k != "__header__")
            if stored != sorted(header["arrays"]):
                raise ValueError(f"its arrays {stored} are not the ones it was saved with {sorted(header['arrays'])}")
        tracking = None
        if "tracking" in header:
            tracking = dict(header["tracking"])
            tracking.update({k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("tracking/")})
        return cls(tracking=tracking, steps=z["steps"], train_loss=z["train_loss"],
                   test_loss=z["test_loss"] if "test_loss" in z.files else None,
                   test_rmse=z["test_rmse"] if "test_rmse" in z.files else None,
                   status=header["status"], n_steps=int(header["n_steps"]),
                   elapsed=float(header["elapsed"]), meta=header["meta"],
                   train_accuracy=header.get("train_accuracy"), test_accuracy=header.get("test_accuracy"))

    def plot(self, ax=None):
        """Loss curves on a log scale (needs matplotlib: ``pip install deeplinear[plot]``)."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        ax.semilogy(self.steps, self.train_loss, label="train")
        if self.test_loss is not None:
            ax.semilogy(self.steps, self.test_loss, label="test")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend()
        return ax

    def __repr__(self) -> str:
        return (f"Result(status={self.status!r}, n_steps={self.n_steps}, "
                f"final_loss={self.final_loss:.6g}, recorded={len(self.steps)})")


def _finite_or_none(o):
    """A copy of a JSON-able structure with NaN and infinities replaced by None."""
    if isinstance(o, dict):
        return {k: _finite_or_none(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite_or_none(v) for v in o]
    if isinstance(o, np.ndarray):
        return _finite_or_none(o.tolist())
    if isinstance(o, (float, np.floating)) and not np.isfinite(o):
        return None
    return o


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")
