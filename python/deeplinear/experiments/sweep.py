"""Sweeps: one experiment over a grid of configs, on a local process pool or a Dask cluster.

>>> import deeplinear as dl
>>> if __name__ == "__main__":  # the local pool's workers are spawned: they import the script
...     s = dl.sweep("factorization", grid={"width": [50, 100], "seed": range(3)},
...                  out="results/width-sweep", quick=True)                 # doctest: +SKIP
...     s.table                # pandas DataFrame: one row per run          # doctest: +SKIP

Every run is the pure function :func:`run_one` of ``(experiment, config)``: it writes the run's
files to ``out/<config hash>/`` and returns its row (the config fields, the metrics, ``status``
— ``"ok"``, ``"failed"`` (a check failed), ``"diverged"``, ``"error"`` (it raised) —, the
error text, ``elapsed`` and ``config_hash``), also kept as ``row.json`` in the run's folder.
A rerun of the same sweep reads those and runs only what is missing (resume after a crash or
Ctrl-C).  The table is written, in grid order, as ``sweep.csv`` and (with pyarrow)
``sweep.parquet``.  Every run uses one core thread (and one BLAS thread for NumPy), so a pool
of N workers loads N cores; a run's numbers never depend on where it ran.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import csv
import dataclasses
import itertools
import json
import math
import multiprocessing
import os
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from ._base import (ConfigError, Experiment, MissingRequirement, _check_names, _write_json, get,
                    prepare_out)

__all__ = ["SweepResult", "grid_configs", "run_one", "sweep"]

_BLAS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
_BASE_COLUMNS = ("status", "passed", "error", "elapsed", "config_hash")


@dataclass
class SweepResult:
    """What :func:`sweep` returns.

    Attributes
    ----------
    rows : list of dict
        One per run, in grid order (finished runs only when interrupted).
    out : str
        Sweep folder (``sweep.csv``, ``sweep.parquet``, one folder per run).
    ran, reused : list of str
        Config hashes run by this call, and read back from an earlier call.
    interrupted : bool
        Ctrl-C stopped the sweep; rerun the same call to finish it.
    """

    experiment: str
    rows: list[dict[str, Any]]
    out: str
    csv: str
    parquet: str | None
    ran: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    total: int = 0
    interrupted: bool = False

    @property
    def n_failed(self) -> int:
        """Runs whose status is not ``"ok"``."""
        return sum(r["status"] != "ok" for r in self.rows)

    @property
    def table(self):
        """The rows as a pandas DataFrame (needs pandas: ``pip install "deeplinear[sweep]"``)."""
        import pandas as pd

        return pd.DataFrame(self.rows)

    def describe(self) -> str:
        counts: dict[str, int] = {}
        for r in self.rows:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        text = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        files = self.csv + (f", {self.parquet}" if self.parquet else "")
        head = f"sweep {self.experiment}: {len(self.rows)}/{self.total} runs ({text or 'none'})"
        if self.reused:
            head += f", {len(self.reused)} from an earlier call"
        if self.interrupted:
            head += "; INTERRUPTED: rerun the same sweep to finish it"
        return f"{head}\n  {files}"


def sweep(experiment: str, grid: Mapping[str, Iterable[Any]], *, out: str | os.PathLike,
          base: Experiment | Mapping[str, Any] | None = None, quick: bool = False,
          executor: Any = None,
          workers: int | None = None, progress: bool = True, threads: int = 1) -> SweepResult:
    """Run ``experiment`` for every combination of the ``grid`` values.

    Parameters
    ----------
    experiment : str
        A registered name (``deeplinear list``).
    grid : mapping of field name to values
        ``{"width": [50, 100], "seed": range(5)}``: the Cartesian product, in this order (the
        last field varies fastest).  Every config is checked before anything runs.
    out : str or path
        Sweep folder; the same folder resumes a sweep (finished runs are not run again).
    base : Experiment or mapping of field name to value, optional
        Config of the fields not in the grid (default: the experiment's defaults, or its
        ``quick()`` config with ``quick=True``).  A mapping (``{"width": 4}``) sets those
        fields over the defaults (or ``quick()``) and is checked only together with each grid
        combination: ``base={"width": 4}, grid={"rank": [1, 2]}`` works although the default
        rank exceeds 4.
    executor : None, str, distributed.Client or concurrent.futures.Executor
        None: a local process pool of ``workers`` processes (default: the number of cores);
        a string: the address of a Dask scheduler (``"tcp://host:8786"``, connected to before
        anything runs: an unreachable one is a :class:`ConfigError`); a Dask
        ``distributed.Client``; or any ``concurrent.futures.Executor``.  On a cluster of several
        machines ``out`` must be on a shared filesystem (the workers write the run folders).
    workers : int, optional
        Local pool size (only with ``executor=None``).
    progress : bool
        One progress bar: runs done / total, failures.
    threads : int
        Core threads per run (1: a pool of N workers loads N cores).  With an in-process
        executor (e.g. a ``ThreadPoolExecutor``) the caller's core and NumPy thread settings are
        restored when the runs are done.

    Returns
    -------
    SweepResult
        Rows in grid order; also written to ``out/sweep.csv`` and ``out/sweep.parquet``.
    """
    cls = get(experiment)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"workers: must be an integer >= 1, got {workers!r}")
    if executor is not None and workers is not None:
        raise ConfigError("workers: only for the local pool (executor=None), not with a "
                          "scheduler or another executor")
    if not (executor is None or isinstance(executor, (str, cf.Executor)) or _is_dask(executor)):
        raise TypeError(f"executor: expected None, a scheduler address, a distributed.Client or a "
                        f"concurrent.futures.Executor, got {type(executor).__name__}")
    configs = grid_configs(cls, grid, base=base, quick=quick)
    missing_pkgs = cls.missing_requirements()
    if missing_pkgs:
        raise ConfigError(f"experiment {cls.name!r} needs {', '.join(missing_pkgs)}")
    with contextlib.ExitStack() as stack:
        if isinstance(executor, str):  # before any folder is made: a bad address is refused
            executor = stack.enter_context(_connect(executor))
        return _sweep(cls, configs, prepare_out(out), executor, workers, progress, threads)


def grid_configs(cls: type[Experiment], grid: Mapping[str, Iterable[Any]], *,
                 base: Experiment | Mapping[str, Any] | None = None,
                 quick: bool = False) -> dict[str, Experiment]:
    """The configs of a sweep by config hash, in grid order (duplicates once): ``base`` (an
    config, or field values over the defaults / ``quick()``) with each combination of the
    ``grid`` values.  Each combination is checked as a whole (a :class:`ConfigError` naming
    the field and the combination); a mapping ``base`` is not checked on its own."""
    if not isinstance(grid, Mapping) or not grid:
        raise ConfigError("grid: a non-empty mapping of field name to values")
    if base is None or isinstance(base, Mapping):
        start = cls().quick() if quick else cls()
        fixed = start.parse_dict(dict(base or {}))  # unknown fields: ConfigError
    elif type(base) is cls:
        start, fixed = base, {}
    else:
        raise TypeError(f"base: expected a {cls.__name__} or a mapping of its fields, "
                        f"got {type(base).__name__}")
    keys = list(grid)
    values = []
    for k in keys:
        v = grid[k]
        v = [v] if isinstance(v, (str, bytes)) or not isinstance(v, Iterable) else list(v)
        if not v:
            raise ConfigError(f"grid: no values for {k!r}")
        values.append(v)
    _check_names(cls, keys)  # unknown grid fields, before any combination
    configs: dict[str, Experiment] = {}
    for combo in itertools.product(*values):
        point = dict(zip(keys, combo))
        try:
            exp = dataclasses.replace(start, **{**fixed, **point})
        except ConfigError as e:
            where = ", ".join(f"{k}={v!r}" for k, v in point.items())
            raise ConfigError(f"{e} (grid point {where})") from None
        configs.setdefault(exp.config_hash(), exp)
    return configs


@contextlib.contextmanager
def _connect(address: str):
    """A ``distributed.Client`` of the scheduler at ``address`` (closed afterwards); a missing
    package or an unreachable scheduler is a one-line error."""
    try:
        from distributed import Client
    except ImportError:
        raise MissingRequirement("scheduler: running on a Dask cluster needs the distributed "
                                 "package (pip install \"deeplinear[sweep]\")") from None
    try:
        client = Client(address)
    except (OSError, TimeoutError, ValueError, TypeError) as e:
        why = " ".join(str(e).split()) or type(e).__name__
        raise ConfigError(f"scheduler: cannot connect to {address!r}: {why}") from None
    with client:
        yield client


def _sweep(cls, configs, out, executor, workers, progress, threads) -> SweepResult:
    """Run the configs not finished in ``out`` (an earlier call's ``row.json``), write the table."""
    rows: dict[str, dict] = {}
    reused = []
    for h in configs:
        row = _read_row(os.path.join(out, h), h)
        if row is not None:
            rows[h] = row
            reused.append(h)
    todo = [h for h in configs if h not in rows]
    ran: list[str] = []
    bar = _bar(len(configs), len(rows), progress, cls.name)
    _update_postfix(bar, rows.values())
    interrupted = False
    try:
        if todo:
            for h, row in _execute(executor, workers, cls.name,
                                   [(h, configs[h].to_dict()) for h in todo], out, threads):
                rows[h] = row
                ran.append(h)
                if bar is not None:
                    bar.update(1)
                    _update_postfix(bar, rows.values())
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar is not None:
            bar.close()
    if executor is None and ran and all(rows[h]["status"] == "error" and rows[h]["error"].startswith("BrokenProcessPool")
                                        for h in ran):
        # not one run came back from the pool (nothing was saved: a rerun runs them all)
        raise RuntimeError("sweep: every worker of the local process pool died before returning a run. Its "
                           "workers are spawned and import the calling script: a script that calls "
                           "dl.sweep must do so under `if __name__ == \"__main__\":`; else a worker was "
                           "killed (e.g. out of memory)")
    ordered = [rows[h] for h in configs if h in rows]
    csv_path, parquet_path = _write_table(ordered, out, cls)
    return SweepResult(cls.name, ordered, out, csv_path, parquet_path, ran=ran, reused=reused,
                       total=len(configs), interrupted=interrupted)


def run_one(experiment: str, config: dict[str, Any], out: str, threads: int = 1) -> dict[str, Any]:
    """One run of a sweep: the experiment with ``config`` into ``out`` (its folder), returning
    its row and writing it to ``out/row.json``.  Never raises for the run's own errors: an
    exception becomes a row with status ``"error"`` (a divergence raised as an error, status
    ``"diverged"``)."""
    import deeplinear as dl

    with _threads_pinned(threads):
        return _run_one(dl, experiment, config, out, threads)


def _run_one(dl, experiment, config, out, threads) -> dict[str, Any]:
    cls = get(experiment)
    exp = cls.from_dict(config)
    row: dict[str, Any] = {**_flat_config(exp.to_dict())}
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dl.DivergenceWarning)  # the row says "diverged"
            res = exp.run(out, progress=False, verbose=False, threads=threads)
        row.update(status=res.status, passed=res.passed, error="")
        failed = [c.name for c in res.checks if not c.passed]
        if failed:
            row["error"] = "failed checks: " + "; ".join(failed)
        metrics = res.metrics
    except (dl.DivergenceError, dl.DivergenceWarning) as e:
        row.update(status="diverged", passed=False, error=f"{type(e).__name__}: {e}")
        metrics = {}
    except Exception as e:  # noqa: BLE001 (a failed run is data, not a lost sweep)
        row.update(status="error", passed=False,
                   error=f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=-3)}".strip())
        metrics = {}
    row["elapsed"] = time.perf_counter() - start
    row["config_hash"] = exp.config_hash()
    for k, v in metrics.items():
        row[k if k not in row else f"metric_{k}"] = v
    os.makedirs(out, exist_ok=True)
    # strict JSON writes NaN and inf as null: kept by name, so a resumed table equals a fresh one
    nonfinite = {k: repr(v) for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)}
    _write_json(os.path.join(out, "row.json"), {"experiment": cls.name, "config": exp.to_dict(),
                                                "row": row, "nonfinite": nonfinite})
    return row


# -- execution ------------------------------------------------------------------------------------

def _execute(executor, workers, name, jobs, out, threads):
    """Yield ``(hash, row)`` as runs finish."""
    if executor is None:
        with _blas_env(threads):
            ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
            n = min(workers or os.cpu_count() or 1, len(jobs))
            with cf.ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_pin_threads,
                                        initargs=(threads,)) as pool:
                yield from _gather_concurrent(pool, name, jobs, out, threads)
        return
    if isinstance(executor, str):
        with _connect(executor) as client:
            yield from _gather_dask(client, name, jobs, out, threads)
        return
    if _is_dask(executor):
        yield from _gather_dask(executor, name, jobs, out, threads)
    else:
        yield from _gather_concurrent(executor, name, jobs, out, threads)


def _is_dask(executor) -> bool:
    return type(executor).__module__.split(".")[0] == "distributed"


def _gather_concurrent(pool, name, jobs, out, threads):
    futures = {pool.submit(run_one, name, cfg, os.path.join(out, h), threads): (h, cfg)
               for h, cfg in jobs}
    try:
        for fut in cf.as_completed(futures):
            h, cfg = futures[fut]
            yield h, _row_of(fut, name, cfg, h, out)
    finally:
        for fut in futures:
            fut.cancel()


def _gather_dask(client, name, jobs, out, threads):
    from distributed import as_completed

    futures = {}
    for h, cfg in jobs:
        fut = client.submit(run_one, name, cfg, os.path.join(out, h), threads, pure=False,
                            key=f"deeplinear-{name}-{h}-{time.time_ns()}")
        futures[fut] = (h, cfg)
    try:
        for fut in as_completed(list(futures)):
            h, cfg = futures[fut]
            yield h, _row_of(fut, name, cfg, h, out)
    finally:
        for fut in futures:
            fut.cancel()


def _row_of(fut, name, cfg, h, out) -> dict:
    """The future's row.  A run's own errors are rows run_one saved; what fails here is the
    executor (a worker that died, e.g. killed for memory, taking the pool's pending runs with it;
    a pickling error): an ``"error"`` row for this call's table, not saved, so that a rerun into
    the same ``out`` runs it again."""
    try:
        return fut.result()
    except Exception as e:  # noqa: BLE001
        return {**_flat_config(cfg), "status": "error", "passed": False,
                "error": f"{type(e).__name__}: {e} (not saved: a rerun into the same out retries it)",
                "elapsed": float("nan"), "config_hash": h}


def _pin_threads(threads: int):
    """One core thread (``dl.set_num_threads``) and, with threadpoolctl, one BLAS thread for
    NumPy in this process (a pool's worker initializer: for the worker's life).  Returns the
    threadpoolctl limiter (its ``restore_original_limits()`` undoes the NumPy part) or None."""
    import deeplinear as dl

    dl.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(threads)


_PIN_LOCK = threading.Lock()
_PIN_STATE: dict[str, Any] = {"depth": 0, "threads": None, "limiter": None}


@contextlib.contextmanager
def _threads_pinned(threads: int):
    """:func:`_pin_threads` for one run, the process's settings restored afterwards.  Runs of
    an in-process executor overlap: the first to start saves the settings, the last to finish
    restores them (none of them sees another's restore).  In a pool's worker, pinned by its
    initializer, this restores the pinned settings: the worker stays pinned."""
    import deeplinear as dl

    with _PIN_LOCK:
        if _PIN_STATE["depth"] == 0:
            _PIN_STATE["threads"] = dl.get_num_threads()
            _PIN_STATE["limiter"] = _pin_threads(threads)
        else:
            _pin_threads(threads)
        _PIN_STATE["depth"] += 1
    try:
        yield
    finally:
        with _PIN_LOCK:
            _PIN_STATE["depth"] -= 1
            if _PIN_STATE["depth"] == 0:
                limiter, _PIN_STATE["limiter"] = _PIN_STATE["limiter"], None
                if limiter is not None:
                    limiter.restore_original_limits()
                dl.set_num_threads(_PIN_STATE["threads"])


@contextlib.contextmanager
def _blas_env(threads: int):
    """The BLAS thread variables for the worker processes started meanwhile (a spawned process
    reads them when NumPy loads its BLAS, before any initializer runs)."""
    saved = {k: os.environ.get(k) for k in _BLAS_ENV}
    os.environ.update({k: str(threads) for k in _BLAS_ENV})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# -- the table ------------------------------------------------------------------------------------

def _flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """Config values as table cells: lists (tuple fields) as their JSON text."""
    return {k: json.dumps(v) if isinstance(v, (list, tuple)) else v for k, v in config.items()}


def _read_row(folder: str, h: str) -> dict | None:
    try:
        with open(os.path.join(folder, "row.json")) as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    row = data.get("row") if isinstance(data, dict) else None
    if not isinstance(row, dict) or row.get("config_hash") != h:
        return None
    nonfinite = data.get("nonfinite")
    nonfinite = nonfinite if isinstance(nonfinite, dict) else {}
    out = {}
    for k, v in row.items():
        if v is None and k in nonfinite:  # NaN / ±inf, written as null by strict JSON
            try:
                v = float(nonfinite[k])
            except (TypeError, ValueError):
                pass
        elif v is None and k == "elapsed":  # a row.json written before "nonfinite" existed
            v = float("nan")
        out[k] = v
    return out


def _write_table(rows: list[dict], out: str, cls: type[Experiment]) -> tuple[str, str | None]:
    columns = list(cls.field_names()) + list(_BASE_COLUMNS)
    for r in rows:
        columns += [k for k in r if k not in columns]
    csv_path = os.path.join(out, "sweep.csv")
    tmp = csv_path + ".tmp"
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, restval="")
        w.writeheader()
        for r in rows:
            w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    os.replace(tmp, csv_path)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return csv_path, None
    data = {c: [r.get(c) for r in rows] for c in columns}
    table = pa.table({c: pa.array(v, from_pandas=True) for c, v in data.items()})
    pq_path = os.path.join(out, "sweep.parquet")
    pq.write_table(table, pq_path + ".tmp")
    os.replace(pq_path + ".tmp", pq_path)
    return csv_path, pq_path


def _bar(total: int, initial: int, progress: bool, name: str):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="run", desc=f"sweep {name}", dynamic_ncols=True)


def _update_postfix(bar, rows: Iterable[dict]) -> None:
    if bar is not None:
        bar.set_postfix(failed=sum(r["status"] != "ok" for r in rows), refresh=True)
