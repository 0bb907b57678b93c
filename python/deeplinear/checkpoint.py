"""Checkpoints of a training run: weights, optimizer state, progress and tracking, written
atomically.

A checkpoint is an ``.npz`` file written to a temporary file in the same folder, flushed to
disk, then renamed over the previous one, so a run killed at any moment (even by SIGKILL)
leaves either the previous checkpoint or the new one, never a torn file.  Resuming restores
the exact state, so the continued run is bit-identical to an uninterrupted one.

A compressed network's run also stores its bulk value's state as ``model_bulk`` = [ρ, b]
(heavy ball's trace of ρ), so that ρ resumes where it was.

A tracked run (``train(track=...)``) also stores, under keys starting with ``trk_``, the
tracker's complete state (``Trainer.tracking_state()``: records, counters, the incremental warm
starts and random generator) and what the tracker was built from: the reference bases
(``trk_ref_u_<i>``, ``trk_ref_v_<i>``, layer i + 1) and ρ(0) of ``"structured"`` (``trk_rho0``), so that the
resumed run rebuilds the same tracker whatever the network's weights when ``train`` is called
again.  These entries are additive: a checkpoint without tracking has the layout of format 1
as before.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from ._io import READ_ERRORS, atomic_savez, open_npz

FORMAT = "deeplinear.checkpoint/1"


def fingerprint(model: dict, problem, optimizer, record_every, tol, track, start: dict) -> dict:
    """What must match for a checkpoint to be resumed by a call of ``train``.

    ``model``: the model's description (``describe()`` of its kind in training.py: a wide
    network's dims and dtype; a compressed network's width, 2r, depth, exactness and dtype).
    ``track``: None, or the tracking settings (a dict: mode, every, k, tol, max_iter,
    verify_every).  ``start`` identifies the initial weights (:func:`start_identity`) and
    ``data`` is a hash of the problem's arrays: a run with another seed or another target of
    the same shape is another run."""
    return {"network": model,
            "problem": problem.describe(), "optimizer": optimizer.describe(),
            "record_every": record_every, "tol": tol, "track": track,
            "start": start, "data": digest(_problem_arrays(problem))}


def digest(arrays) -> str:
    """A hash (BLAKE2b, 128 bits) of arrays' shapes, dtypes and bytes: what identifies data."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def start_identity(net) -> dict:
    """The initial weights of the run: the init, scale and seed they are drawn from, or a hash
    of the weights a network was made from (``from_weights``)."""
    if net.init in ("orthogonal", "gaussian") and net.seed is not None:
        return {"init": net.init, "init_scale": float(net.init_scale), "seed": int(net.seed)}
    return {"init": net.init, "weights": digest(net._initial_weights_shared())}


def _problem_arrays(problem) -> list:
    """The data of a problem (target, mask, X, Y, as present)."""
    arrays = [getattr(problem, k) for k in ("target", "mask", "X", "Y", "labels", "phi_tilde")
              if getattr(problem, k, None) is not None]
    if getattr(problem, "is_sparse", False):  # Completion.from_entries: observed and test entries
        arrays += [getattr(e, k) for e in problem._entries() if e is not None for k in ("row_ptr", "col", "val")]
    return arrays


def save(path: str, net, trainer, fp: dict, elapsed: float, tracking: dict | None = None,
         model: dict | None = None) -> None:
    """``net``: the network the core trains (a compressed network's blocks).  ``tracking``: for
    a tracked run, what the tracker was built from (``ref_u``, ``ref_v``: lists of arrays,
    possibly empty; ``rho0``: float or None); its state is read from ``trainer``.  ``model``:
    the model kind's own state (arrays, stored as ``model_<key>``: a compressed run's
    ``bulk`` = [ρ, b])."""
    count, trace, first, second = trainer.optimizer_state()
    h = trainer.history()
    arrays = {"hist_steps": h["steps"], "hist_train": h["train_loss"], "hist_test": h["test_loss"]}
    weights = list(net.weights)  # a wide network's layers, or a compressed completion's factors
    for i, w in enumerate(weights):
        arrays[f"w{i}"] = w
    for name, bufs in (("trace", trace), ("first", first), ("second", second)):
        for i, b in enumerate(bufs):
            arrays[f"{name}{i}"] = b
    header = {"format": FORMAT, "step": int(trainer.step), "count": int(count),
              "depth": len(weights), "elapsed": elapsed, "fingerprint": fp}
    if tracking is not None:
        header["tracking"] = _save_tracking(arrays, trainer.tracking_state(), tracking)
    for key, value in (model or {}).items():
        arrays[f"model_{key}"] = np.asarray(value)
    header["arrays"] = sorted(arrays)  # every entry _read must find (a damaged name is not a missing one)
    arrays["__header__"] = np.array(json.dumps(header))
    atomic_savez(path, arrays)


def load(path: str, fp: dict) -> dict:
    """Reads a checkpoint and checks it belongs to this run (``ValueError`` otherwise)."""
    z, header = open_npz(path, "checkpoint", "a deeplinear checkpoint", FORMAT)
    try:
        return _read(z, header, path, fp)
    except ValueError as exc:
        if str(exc).startswith("checkpoint: "):
            raise
        raise ValueError(f"checkpoint: {path!r} is damaged ({exc})") from exc
    except READ_ERRORS as exc:  # a truncated or otherwise damaged file
        raise ValueError(f"checkpoint: {path!r} is damaged ({type(exc).__name__}: {exc})") from exc
    finally:
        z.close()


def _read(z, header: dict, path: str, fp: dict) -> dict:
    """The checkpoint's content, once it is known to belong to the run ``fp``."""
    stored = json.loads(json.dumps(header["fingerprint"]))
    wanted = json.loads(json.dumps(fp))
    if stored != wanted:
        diff = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
        raise ValueError(f"checkpoint: {path!r} belongs to another run (differs in: {', '.join(diff)}); "
                         "delete it or pass another path")
    if "arrays" in header:  # checkpoints written before the list was stored have no such check
        names = sorted(k for k in z.files if k != "__header__")
        if names != sorted(header["arrays"]):
            raise ValueError(f"its arrays {names} are not the ones it was written with")
    L = header["depth"]
    tracking = None
    if wanted.get("track") is not None:
        if "tracking" not in header:
            raise ValueError(f"checkpoint: {path!r} has no tracking state; delete it or pass another path")
        tracking = _load_tracking(z, header["tracking"], path)
    model = {name[len("model_"):]: z[name] for name in z.files if name.startswith("model_")}
    return {"tracking": tracking, "model": model, "step": header["step"], "count": header["count"],
            "elapsed": header["elapsed"],
            "weights": [z[f"w{i}"] for i in range(L)],
            "trace": [z[f"trace{i}"] for i in range(L)],
            "first": [z[f"first{i}"] for i in range(L)],
            "second": [z[f"second{i}"] for i in range(L)],
            "steps": z["hist_steps"].tolist(), "train": z["hist_train"].tolist(),
            "test": z["hist_test"].tolist()}


def _save_tracking(arrays: dict, state: dict, built_from: dict) -> dict:
    """Adds the ``trk_`` entries to ``arrays``; returns the header's part (how to read them)."""
    lists = {}
    for key, value in state.items():
        if isinstance(value, list):
            lists[key] = len(value)
            for i, a in enumerate(value):
                arrays[f"trk_{key}_{i}"] = a
        else:  # arrays, and the counters as 0-d arrays (exact, unlike text)
            arrays[f"trk_{key}"] = np.asarray(value)
    for side in ("ref_u", "ref_v"):
        for i, a in enumerate(built_from[side]):
            arrays[f"trk_{side}_{i}"] = a
    if built_from["rho0"] is not None:
        arrays["trk_rho0"] = np.float64(built_from["rho0"])
    return {"state": sorted(state), "lists": lists, "n_ref": len(built_from["ref_u"])}


def _load_tracking(z, meta: dict, path: str) -> dict:
    try:
        state = {}
        for key in meta["state"]:
            if key in meta["lists"]:
                state[key] = [z[f"trk_{key}_{i}"] for i in range(meta["lists"][key])]
            else:
                a = z[f"trk_{key}"]
                state[key] = a.item() if a.ndim == 0 else a
        n = meta["n_ref"]
        return {"state": state,
                "ref_u": [z[f"trk_ref_u_{i}"] for i in range(n)],
                "ref_v": [z[f"trk_ref_v_{i}"] for i in range(n)],
                "rho0": float(z["trk_rho0"]) if "trk_rho0" in z.files else None}
    except KeyError as exc:
        raise ValueError(f"checkpoint: {path!r} has an incomplete tracking state ({exc})") from exc
