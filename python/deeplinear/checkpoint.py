"""Checkpoints of a training run: weights, optimizer state and progress, written atomically.

A checkpoint is an ``.npz`` file written to a temporary file in the same folder, flushed to
disk, then renamed over the previous one, so a run killed at any moment (even by SIGKILL)
leaves either the previous checkpoint or the new one, never a torn file.  Resuming restores
the exact state, so the continued run is bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import json
import os

import numpy as np

from ._io import atomic_savez

FORMAT = "deeplinear.checkpoint/1"


def fingerprint(net, problem, optimizer, record_every, tol, track) -> dict:
    """What must match for a checkpoint to be resumed by a call of ``train``."""
    return {"network": {"dims": list(net.dims), "dtype": str(net.dtype)},
            "problem": problem.describe(), "optimizer": optimizer.describe(),
            "record_every": record_every, "tol": tol, "track": track}


def save(path: str, net, trainer, fp: dict, elapsed: float) -> None:
    count, trace, first, second = trainer.optimizer_state()
    h = trainer.history()
    arrays = {"hist_steps": h["steps"], "hist_train": h["train_loss"], "hist_test": h["test_loss"]}
    for i, w in enumerate(net.weights):
        arrays[f"w{i}"] = w
    for name, bufs in (("trace", trace), ("first", first), ("second", second)):
        for i, b in enumerate(bufs):
            arrays[f"{name}{i}"] = b
    header = {"format": FORMAT, "step": int(trainer.step), "count": int(count),
              "depth": net.depth, "elapsed": elapsed, "fingerprint": fp}
    arrays["__header__"] = np.array(json.dumps(header))
    atomic_savez(path, arrays)


def load(path: str, fp: dict) -> dict:
    """Reads a checkpoint and checks it belongs to this run (``ValueError`` otherwise)."""
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as exc:  # unreadable: say which file
        raise ValueError(f"checkpoint: cannot read {path!r} ({exc})") from exc
    with z:
        header = json.loads(str(z["__header__"]))
        if header.get("format") != FORMAT:
            raise ValueError(f"checkpoint: {path!r} is not a deeplinear checkpoint")
        stored = json.loads(json.dumps(header["fingerprint"]))
        wanted = json.loads(json.dumps(fp))
        if stored != wanted:
            diff = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
            raise ValueError(f"checkpoint: {path!r} belongs to another run (differs in: {', '.join(diff)}); "
                             "delete it or pass another path")
        L = header["depth"]
        return {"step": header["step"], "count": header["count"], "elapsed": header["elapsed"],
                "weights": [z[f"w{i}"] for i in range(L)],
                "trace": [z[f"trace{i}"] for i in range(L)],
                "first": [z[f"first{i}"] for i in range(L)],
                "second": [z[f"second{i}"] for i in range(L)],
                "steps": z["hist_steps"].tolist(), "train": z["hist_train"].tolist(),
                "test": z["hist_test"].tolist()}
