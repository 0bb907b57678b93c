"""Sweeps (``dl.sweep``): local process pool vs Dask LocalCluster give identical tables; a run
that raises and one that diverges become rows; an interrupted sweep resumes running only what
is missing; the table is written as CSV and Parquet."""

from __future__ import annotations

import csv
import json
import math
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

import deeplinear as dl
from deeplinear import experiments as ex
from deeplinear.experiments import Check, Experiment, param, register

GRID = {"width": [20, 24], "seed": [0, 1]}
SMALL = {"steps": 60, "rows": 3}
TIMING = {"elapsed", "training_steps"}  # training_steps is an int but equal; elapsed differs


@register
@dataclass(frozen=True)
class RaisingExperiment(Experiment):
    """Raises for ``fail=True`` (a sweep must keep the row)."""

    name = "sweep-test-raising"
    description = "raises on demand (tests of dl.sweep)"

    fail: bool = param(False, "raise a RuntimeError")
    value: float = param(1.0, "the metric reported")

    def compute(self, res, progress):
        if self.fail:
            raise RuntimeError("asked to fail")
        res.metric("value", self.value)
        res.check(Check.at_most("value", self.value, 10.0))


@pytest.fixture(autouse=True)
def restore_threads():
    before = dl.get_num_threads()
    yield
    dl.set_num_threads(before)


def _base():
    return ex.get("factorization")().replace(**SMALL)


def _comparable(rows):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _same(a, b):
    """Equal, floats bit for bit (NaN equal to NaN)."""
    assert a.keys() == b.keys()
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, float) and isinstance(y, float):
            assert (math.isnan(x) and math.isnan(y)) or x.hex() == y.hex(), (k, x, y)
        else:
            assert x == y, (k, x, y)


def test_local_pool_and_dask_give_identical_tables(tmp_path):
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("pyarrow")
    pd = pytest.importorskip("pandas")
    local = dl.sweep("factorization", GRID, out=tmp_path / "local", base=_base(), workers=2,
                     progress=False)
    assert len(local.rows) == 4 and local.n_failed == 0 and len(local.ran) == 4
    assert [(r["width"], r["seed"]) for r in local.rows] == [(20, 0), (20, 1), (24, 0), (24, 1)]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        remote = dl.sweep("factorization", GRID, out=tmp_path / "dask", base=_base(), executor=client,
                          progress=False)
    assert len(remote.rows) == 4
    for a, b in zip(_comparable(local.rows), _comparable(remote.rows)):
        _same(a, b)
    # the written tables: CSV (floats as repr) and Parquet round-trip the rows
    with open(local.csv) as fh:
        csv_rows = list(csv.DictReader(fh))
    assert [float(r["training_final_loss"]) for r in csv_rows] == [r["training_final_loss"] for r in local.rows]
    table = pd.read_parquet(remote.parquet)
    assert list(table["config_hash"]) == [r["config_hash"] for r in remote.rows]
    assert table["training_final_loss"].tolist() == [r["training_final_loss"] for r in local.rows]
    for r in local.rows:  # each run's files in a folder named by its config hash
        folder = tmp_path / "local" / r["config_hash"]
        assert json.loads((folder / "result.json").read_text())["config"]["width"] == r["width"]
        assert (folder / "training.npz").is_file()


def test_raising_and_diverging_runs_are_rows(tmp_path):
    with ThreadPoolExecutor(2) as pool:
        s = dl.sweep("sweep-test-raising", {"fail": [False, True], "value": [2.0]},
                     out=tmp_path / "r", executor=pool, progress=False)
    by = {r["fail"]: r for r in s.rows}
    assert by[False]["status"] == "ok" and by[False]["value"] == 2.0 and by[False]["passed"]
    assert by[True]["status"] == "error" and "RuntimeError: asked to fail" in by[True]["error"]
    assert s.n_failed == 1
    # a diverging run (lr far past the stability edge) is a row with status "diverged"
    d = dl.sweep("factorization", {"lr": [20.0, 1e6]}, out=tmp_path / "d", base=_base(),
                 workers=2, progress=False)
    by = {r["lr"]: r for r in d.rows}
    assert by[20.0]["status"] == "ok"
    assert by[1e6]["status"] == "diverged" and not by[1e6]["passed"]
    assert by[1e6]["training_status"] == "diverged"


def test_interrupted_sweep_resumes_only_what_is_missing(tmp_path):
    grid = {"value": [1.0, 2.0, 3.0, 4.0]}
    out = tmp_path / "s"
    with ThreadPoolExecutor(2) as pool:
        first = dl.sweep("sweep-test-raising", grid, out=out, executor=pool, progress=False)
    assert len(first.ran) == 4
    # a crash: one run never finished (no row.json), another left nothing at all
    hashes = [r["config_hash"] for r in first.rows]
    (out / hashes[1] / "row.json").unlink()
    shutil.rmtree(out / hashes[3])
    with ThreadPoolExecutor(2) as pool:
        again = dl.sweep("sweep-test-raising", grid, out=out, executor=pool, progress=False)
    assert sorted(again.ran) == sorted([hashes[1], hashes[3]])
    assert sorted(again.reused) == sorted([hashes[0], hashes[2]])
    assert [r["value"] for r in again.rows] == [1.0, 2.0, 3.0, 4.0]
    assert all(r["status"] == "ok" for r in again.rows)


def test_sweep_arguments_are_checked_before_any_work(tmp_path):
    with pytest.raises(ex.ConfigError, match="unknown field 'wdth'"):
        dl.sweep("factorization", {"wdth": [1]}, out=tmp_path / "a")
    with pytest.raises(ex.ConfigError, match="width: must be >= 1"):
        dl.sweep("factorization", {"width": [10, 0]}, out=tmp_path / "b")
    with pytest.raises(ex.ConfigError, match="unknown experiment"):
        dl.sweep("nosuch", {"seed": [0]}, out=tmp_path / "c")
    with pytest.raises(TypeError, match="executor"):
        dl.sweep("factorization", {"seed": [0]}, out=tmp_path / "d", executor=42)
    assert not any(tmp_path.iterdir())


def test_scheduler_address_string(tmp_path):
    """``executor="<address>"`` connects a client to that scheduler for the sweep (and closes it):
    the same rows as a local pool."""
    distributed = pytest.importorskip("distributed")
    local = dl.sweep("factorization", {"seed": [0, 1]}, out=tmp_path / "local", base=_base(), workers=2,
                     progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        remote = dl.sweep("factorization", {"seed": [0, 1]}, out=tmp_path / "dask", base=_base(),
                          executor=cluster.scheduler_address, progress=False)
    assert remote.n_failed == 0 and len(remote.ran) == 2
    for a, b in zip(_comparable(local.rows), _comparable(remote.rows)):
        _same(a, b)
