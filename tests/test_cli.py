"""The command line: ``deeplinear run parsimony`` (the default), ``run factorization``, ``info``."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import deeplinear as dl
from deeplinear import cli, plotting
from deeplinear.experiments import parsimony as parsimony_experiment


# The runs below use one core thread (--threads 1): these problems are small, and threaded
# OpenBLAS slows down by ~10x as soon as another process competes for the cores.
FAST = ["--no-progress", "--threads", "1"]


def _only_dir(base):
    dirs = [p for p in base.iterdir() if p.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def _check_parsimony_output(out, text, *, png: bool):
    assert "FAIL" not in text
    assert text.count("PASS") >= 10  # 5 checks x 2 settings, then "all checks PASS"
    names = {p.name for p in out.iterdir()}
    for s in ("A", "B"):
        assert {f"setting_{s}.npz", f"setting_{s}.json"} <= names
        assert (f"setting_{s}.png" in names) == png
    checks = json.loads((out / "checks.json").read_text())
    assert checks["passed"] and all(r["passed"] for r in checks["checks"])
    assert {r["setting"] for r in checks["checks"]} == {"A", "B"}
    res = dl.Result.load(out / "setting_A.npz")
    tr = res.tracking
    n, L, d = tr["singular_values"].shape
    assert (L, d) == (3, 30) and tr["steps"][0] == 0 and tr["steps"][-1] == res.n_steps
    fits = tr["structure_steps"]  # structure fits: on SVD records, from 0 to the last step
    assert fits[0] == 0 and fits[-1] == res.n_steps and set(fits) <= set(tr["steps"])
    assert tr["structure_residual"].shape == tr["structure_rho"].shape == (len(fits), L)
    assert len(tr["rho_predicted"]) == res.n_steps + 1
    assert res.meta["experiment"]["name"] == "parsimony"
    with open(out / "setting_B.json") as fh:
        assert json.load(fh)["meta"]["experiment"]["setting"]["d"] == 200


def test_run_parsimony_quick(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    threads = dl.get_num_threads()
    assert cli.main(["run", "parsimony", "--out", tmp_path, "--quick", *FAST]) == 0
    assert dl.get_num_threads() == threads  # restored
    text = capsys.readouterr().out
    out = _only_dir(tmp_path)
    assert out.name.startswith("parsimony-")
    _check_parsimony_output(out, text, png=True)
    for s in ("A", "B"):
        assert (out / f"setting_{s}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_default_is_parsimony_without_matplotlib(tmp_path, capsys, monkeypatch):
    # matplotlib missing: computation and checks still run, no figure, a hint how to get it
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert not plotting.have_matplotlib()
    assert cli.main(["run", "--out", tmp_path, "--steps", "10", *FAST]) == 0
    text = capsys.readouterr().out
    out = _only_dir(tmp_path)
    assert out.name.startswith("parsimony-")
    _check_parsimony_output(out, text, png=False)
    assert 'pip install "deeplinear[plot]"' in text


def test_run_parsimony_failing_check_exits_1(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(parsimony_experiment, "RESIDUAL_TOL", 0.0)  # no residual is exactly 0
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert cli.main(["run", "--out", tmp_path, "--steps", "3", *FAST]) == 1
    text = capsys.readouterr().out
    assert "FAIL" in text
    checks = json.loads((_only_dir(tmp_path) / "checks.json").read_text())
    assert not checks["passed"]


def test_run_factorization(tmp_path, capsys):
    assert cli.main(["run", "factorization", "--out", str(tmp_path), "--steps", "50",
                     "--seed", "1", *FAST]) == 0
    text = capsys.readouterr().out
    out = _only_dir(tmp_path)
    assert out.name.startswith("factorization-")
    assert {"result.npz", "result.json", "singular_values_layer1.npz"} <= {p.name for p in out.iterdir()}
    res = dl.Result.load(out / "result.npz")
    assert res.n_steps == 50 and res.meta["experiment"]["seed"] == 1
    assert "status: max_steps after 50 steps" in text


def test_info(capsys):
    assert cli.main(["info"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["version"] == dl.__version__ and info["threads"] >= 1 and "blas" in info


def test_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["run", "nosuch", "--out", tmp_path])
    assert e.value.code == 2
    for bad in (["--steps", "0"], ["--threads", "0"]):
        with pytest.raises(SystemExit) as e:
            cli.main(["run", *bad, "--out", tmp_path])
        assert e.value.code == 2
        assert bad[0] in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
