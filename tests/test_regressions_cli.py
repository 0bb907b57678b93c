"""Regressions of the CLI / experiments / sweep audit (findings 6, 8, 9, 10 and the first two
bullets of 11): bad config values are usage errors before any run, a sweep with an in-process
executor leaves the caller's thread settings alone, the grid is checked point by point, a
resumed sweep's table equals a fresh one, bounds of Optional fields are reported as bounds and
``--grid A:B`` fills Optional[int] fields."""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pytest

import deeplinear as dl
from deeplinear import cli
from deeplinear.experiments import Check, ConfigError, Experiment, get, param
from deeplinear.experiments.sweep import sweep



def _tiny():
    """A tiny factorization config: a run takes well under a second."""
    return get("factorization")().quick().replace(width=4, rank=1, steps=30)


def _usage_error(argv, capsys) -> str:
    """Run the CLI, expect exit status 2 (argparse's usage error) without a traceback, return
    the error message."""
    with pytest.raises(SystemExit) as e:
        cli.main([os.fspath(a) for a in argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def _run_args(tmp_path, name, *sets):
    out = tmp_path / "runs"
    argv = ["run", name, "--quick", "--quiet", "--out", out]
    for s in sets:
        argv += ["--set", s]
    return argv, out


def _left_behind(out) -> list[str]:
    return sorted(os.listdir(out)) if os.path.isdir(out) else []


# -- finding 6: bad values are usage errors ------------------------------------------------------

@pytest.mark.parametrize("setting", ["lr=inf", "lr=-inf", "init_scale=inf", "init_scale=nan"])
def test_nonfinite_float_is_a_usage_error_and_no_folder(tmp_path, capsys, setting):
    argv, out = _run_args(tmp_path, "factorization", setting)
    err = _usage_error(argv, capsys)
    assert f"{setting.split('=')[0]}: must be finite" in err
    assert _left_behind(out) == []


def test_nonfinite_float_from_toml_is_a_usage_error(tmp_path, capsys):
    toml = tmp_path / "c.toml"
    toml.write_text("lr = inf\n")
    argv, out = _run_args(tmp_path, "factorization")
    err = _usage_error(argv + ["--config", toml], capsys)
    assert "lr: must be finite" in err
    assert _left_behind(out) == []


def test_int_beyond_64_bits_is_a_usage_error(tmp_path, capsys):
    argv, out = _run_args(tmp_path, "factorization", "steps=1e20")
    err = _usage_error(argv, capsys)
    assert "steps: must be <= 2**62" in err
    assert _left_behind(out) == []


@dataclass(frozen=True)
class _Checked(Experiment):
    name = "regression-cli-checked"
    description = "a toy whose validate raises a plain ValueError (as a library check does)"

    width: int = param(4, "width", low=1)

    def validate(self) -> None:
        if self.width > 100:
            raise ValueError(f"width: the weights need too much memory, got {self.width}")

    def compute(self, res, progress):
        res.check(Check.at_most("ok", 0.0, 1.0))


def test_valueerror_of_validate_is_a_config_error():
    with pytest.raises(ConfigError, match=r"width: the weights need too much memory"):
        _Checked(width=1000)
    with pytest.raises(ConfigError, match=r"width: the weights need too much memory"):
        _Checked().replace(width=1000)


def test_open_lower_bound_and_allow_inf():
    @dataclass(frozen=True)
    class Toy(Experiment):
        name = "regression-cli-open-bound"
        description = "a toy with an open bound"

        lr: float = param(0.5, "step size", low=0.0, low_open=True)
        tol: Optional[float] = param(None, "tolerance", low=0.0, low_open=True)
        cap: float = param(float("inf"), "a cap (inf: none)", low=0.0, allow_inf=True)
        scales: tuple[float, ...] = param((1.0,), "scales", low=0.0, allow_inf=True)

    assert Toy(lr=1e-9).lr == 1e-9
    with pytest.raises(ConfigError, match=r"lr: must be > 0, got 0.0"):
        Toy(lr=0.0)
    with pytest.raises(ConfigError, match=r"tol: must be > 0, got 0.0"):
        Toy().with_strings(["tol=0"])
    with pytest.raises(ConfigError, match=r"lr: must be finite"):
        Toy(lr=float("inf"))
    with pytest.raises(ConfigError, match=r"cap: must be finite, got nan"):
        Toy(cap=float("nan"))
    # a field that allows inf round-trips through strict JSON (no null for inf)
    t = Toy().with_strings(["scales=1,inf"])
    assert t.scales == (1.0, float("inf")) and t.cap == float("inf")
    d = json.loads(json.dumps(t.to_dict(), allow_nan=False))
    assert d["cap"] == "inf" and d["scales"] == [1.0, "inf"]
    assert Toy.from_dict(d) == t
    fs = {f.name: f for f in Toy.fields()}
    assert fs["lr"].low_open and not fs["lr"].allow_inf and fs["cap"].allow_inf


def test_run_that_raises_leaves_no_empty_folder(tmp_path):
    @dataclass(frozen=True)
    class Boom(Experiment):
        name = "regression-cli-boom"
        description = "a toy whose compute raises before writing anything"

        width: int = param(4, "width", low=1)

        def compute(self, res, progress):
            raise ValueError("lr: must be > 0, got 0.0")

    out = tmp_path / "boom"
    with pytest.raises(ValueError, match="lr: must be > 0"):
        Boom().run(out, progress=False, verbose=False)
    assert not out.exists()
    out.mkdir()  # a folder the caller made is kept
    with pytest.raises(ValueError):
        Boom().run(out, progress=False, verbose=False)
    assert out.is_dir()


def test_sweep_workers_with_scheduler_is_a_usage_error(tmp_path, capsys):
    out = tmp_path / "sw"
    err = _usage_error(["sweep", "factorization", "--quick", "--grid", "seed=0:2", "--workers",
                        "2", "--scheduler", "tcp://127.0.0.1:1", "--out", out], capsys)
    assert "--workers" in err and "--scheduler" in err
    assert not out.exists()
    with pytest.raises(ConfigError, match="workers: only for the local pool"):
        sweep("factorization", {"seed": [0]}, out=out, executor="tcp://127.0.0.1:1", workers=2)
    assert not out.exists()


def test_sweep_unreachable_scheduler_is_a_one_line_error(tmp_path, capsys):
    pytest.importorskip("distributed")
    import dask

    out = tmp_path / "sw"
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        err = _usage_error(["sweep", "factorization", "--quick", "--grid", "seed=0:2",
                            "--scheduler", "tcp://127.0.0.1:1", "--out", out, "--quiet"], capsys)
    line = [ln for ln in err.splitlines() if ln.startswith("deeplinear: error:")]
    assert line and "scheduler: cannot connect to 'tcp://127.0.0.1:1'" in line[0]
    assert not out.exists()


# -- finding 8: an in-process executor leaves the caller's threads alone -------------------------

def test_sweep_in_threads_restores_the_callers_thread_settings(tmp_path):
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def numpy_threads():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info()]

    before_core = dl.get_num_threads()
    try:
        dl.set_num_threads(2)
        with threadpoolctl.threadpool_limits(2):
            core, blas = dl.get_num_threads(), numpy_threads()
            with cf.ThreadPoolExecutor(2) as ex:
                s = sweep("factorization", {"seed": [0, 1, 2]}, out=tmp_path / "sw",
                          base=_tiny(), executor=ex, progress=False)
            assert [r["status"] for r in s.rows] == ["ok"] * 3
            assert dl.get_num_threads() == core == 2
            assert numpy_threads() == blas
    finally:
        dl.set_num_threads(before_core)


# -- finding 9: the grid is checked point by point -----------------------------------------------

def test_sweep_base_checked_with_the_grid_not_alone(tmp_path, capsys):
    out = tmp_path / "sw"
    # default rank 5 > width 4, but every grid point is valid
    assert cli.main(["sweep", "factorization", "--quick", "--set", "width=4", "--set", "steps=30",
                     "--grid", "rank=1,2", "--workers", "1", "--out", out, "--quiet"]) == 0
    assert "2/2 runs (2 ok)" in capsys.readouterr().out
    # an invalid point is still a usage error naming the field and the point, before any folder
    bad = tmp_path / "bad"
    err = _usage_error(["sweep", "factorization", "--quick", "--set", "width=4",
                        "--grid", "rank=1,5", "--out", bad], capsys)
    assert "rank: must be <= width = 4, got 5" in err and "rank=5" in err
    assert not bad.exists()
    # from Python: a mapping base is checked only with each grid point
    with cf.ThreadPoolExecutor(1) as ex:
        s = sweep("factorization", {"rank": [1, 2]}, out=tmp_path / "api",
                  base={"width": 4, "steps": 30}, quick=True, executor=ex, progress=False)
    assert [r["rank"] for r in s.rows] == [1, 2] and s.n_failed == 0


def test_run_config_checked_as_a_whole(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("width = 4\n")  # with the default rank 5 invalid until --set rank=1
    args = cli._build_parser().parse_args(["run", "factorization", "--quick", "--config",
                                           os.fspath(toml), "--set", "rank=1"])
    exp = cli._config(args)
    assert (exp.width, exp.rank) == (4, 1)


# -- finding 10: a resumed table equals a fresh one ----------------------------------------------

def test_resumed_sweep_csv_equals_fresh_with_nan_metrics(tmp_path):
    out = tmp_path / "sw"
    kw = dict(out=out, base=_tiny(), progress=False)
    with cf.ThreadPoolExecutor(1) as ex:
        first = sweep("factorization", {"rank": [1, 2]}, executor=ex, **kw)
    fresh = (out / "sweep.csv").read_text()
    # rank 2 = width / 2: the bulk is empty, its metrics are NaN
    nan_keys = [k for k, v in first.rows[1].items() if isinstance(v, float) and np.isnan(v)]
    assert nan_keys and ",nan" in fresh
    with cf.ThreadPoolExecutor(1) as ex:
        again = sweep("factorization", {"rank": [1, 2]}, executor=ex, **kw)
    assert len(again.reused) == 2 and not again.ran
    assert (out / "sweep.csv").read_text() == fresh
    for k in nan_keys:
        assert isinstance(again.rows[1][k], float) and np.isnan(again.rows[1][k])


# -- finding 11: bounds of Optional fields, ranges of Optional[int] ------------------------------

def test_optional_field_bound_reported_as_a_bound(tmp_path, capsys):
    argv, out = _run_args(tmp_path, "factorization", "lr=-1")
    err = _usage_error(argv, capsys)
    assert "lr: must be > 0" in err and "expected float or None" not in err
    # a value of the wrong type is still a type error
    argv, _ = _run_args(tmp_path, "factorization", "lr=abc")
    assert "lr: expected float or None" in _usage_error(argv, capsys)


def test_grid_range_on_optional_int_field():
    cls = get("equivalence")
    ftype = {f.name: f.type for f in cls.fields()}["steps"]
    assert ftype == Optional[int]
    grid = cli._parse_grid(cls, ["steps=1:7:3", "seed=0:2"])
    assert grid == {"steps": [1, 4], "seed": [0, 1]}
    assert cli._parse_grid(cls, ["steps=none,5"]) == {"steps": [None, 5]}
    base = dataclasses.replace(cls().quick())
    assert [base.replace(steps=v).steps for v in grid["steps"]] == [1, 4]


def test_config_file_ignores_the_tables_of_other_experiments(tmp_path):
    """A file serving several experiments: without a table of its own the experiment takes the
    top-level keys (a table of another experiment was refused as an unknown field); with one,
    that table alone."""
    from deeplinear import cli
    import glob
    import json

    def config_of(text, out):
        toml = tmp_path / f"{out}.toml"
        toml.write_text(text)
        assert cli.main(["run", "factorization", "--quick", "--config", str(toml), "--out", str(tmp_path / out),
                         "--quiet", "--no-progress"]) in (0, 1)
        with open(glob.glob(str(tmp_path / out / "factorization-*" / "result.json"))[0]) as fh:
            return json.load(fh)["config"]

    cfg = config_of("steps = 200\nwidth = 30\n[parsimony]\nsteps = 7\n", "a")
    assert cfg["steps"] == 200 and cfg["width"] == 30
    cfg = config_of("steps = 200\n[factorization]\nrank = 3\nwidth = 40\n[parsimony]\nsteps = 7\n", "b")
    assert cfg["rank"] == 3 and cfg["width"] == 40 and cfg["steps"] != 200


def test_sweep_whose_pool_never_returns_a_run_raises(tmp_path, monkeypatch):
    """A script calling dl.sweep without the __main__ guard: every spawned worker dies at start,
    and the sweep returned a table of errors (exit 0 for the script).  Now it says why."""
    import importlib

    import deeplinear as dl

    sw = importlib.import_module("deeplinear.experiments.sweep")  # the module (the package exports the function)

    def dead_pool(executor, workers, name, jobs, out, threads):
        for h, cfg in jobs:
            yield h, {**sw._flat_config(cfg), "status": "error", "passed": False, "config_hash": h,
                      "error": "BrokenProcessPool: A process in the process pool was terminated abruptly",
                      "elapsed": float("nan")}

    monkeypatch.setattr(sw, "_execute", dead_pool)
    with pytest.raises(RuntimeError, match="__main__"):
        dl.sweep("factorization", {"seed": [0, 1]}, out=tmp_path, quick=True, progress=False)
