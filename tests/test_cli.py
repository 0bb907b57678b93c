"""The command line: ``deeplinear run [NAME]``, ``list``, ``sweep``, ``report``, ``info``, typed
``--set`` / ``--config`` and their errors; the subprocess tests run it as a user types it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

import deeplinear as dl
from deeplinear import cli, plotting
from deeplinear.experiments import parsimony as parsimony_experiment

# One core thread: these problems are small, and threaded OpenBLAS slows down by ~10x as soon
# as another process competes for the cores.
FAST = ["--no-progress", "--threads", "1"]
TINY = ["--set", "steps_a=10", "--set", "steps_b=10"]


def deeplinear(*args, cwd, timeout=600):
    """Run the ``deeplinear`` command (the installed script, else ``python -m deeplinear``)."""
    exe = shutil.which("deeplinear", path=os.path.dirname(sys.executable)) or shutil.which("deeplinear")
    cmd = [exe] if exe else [sys.executable, "-m", "deeplinear"]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd + [str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def _shipped():
    """The experiments of the package (not those the tests register)."""
    return [n for n, c in dl.experiments.registry().items() if c.__module__.startswith("deeplinear.")]


def _only_dir(base):
    dirs = [p for p in base.iterdir() if p.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def _check_parsimony_output(out, text, *, png: bool):
    assert "FAIL" not in text
    assert text.count("PASS") >= 10  # 5 checks x 2 settings
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


# -- as a user types it ---------------------------------------------------------------------------

def test_subprocess_run_quick_is_parsimony(tmp_path):
    pytest.importorskip("matplotlib")
    p = deeplinear("run", "--quick", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    out = _only_dir(tmp_path / "results")
    assert out.name.startswith("parsimony-")
    _check_parsimony_output(out, p.stdout, png=True)
    for s in ("A", "B"):
        assert (out / f"setting_{s}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_subprocess_run_name_quick_list_and_sweep(tmp_path):
    p = deeplinear("run", "factorization", "--quick", "--quiet", "--set", "steps=40", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("factorization: OK (2/2 checks)") and p.stderr == ""
    res = dl.Result.load(_only_dir(tmp_path / "results") / "training.npz")
    assert res.n_steps == 40
    p = deeplinear("list", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    for name in _shipped():
        assert f"\n{name}: " in "\n" + p.stdout
    assert "width_b" in p.stdout and "layer width" not in p.stderr
    p = deeplinear("sweep", "factorization", "--quick", "--set", "steps=20", "--grid", "width=20,24",
                   "--grid", "seed=0:2", "--workers", "2", "--out", tmp_path / "sw", "--quiet",
                   cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "4/4 runs (4 ok)" in p.stdout
    assert (tmp_path / "sw" / "sweep.csv").read_text().count("\n") == 5
    p = deeplinear("sweep", "factorization", "--quick", "--set", "steps=20", "--grid", "width=20,24",
                   "--grid", "seed=0:2", "--out", tmp_path / "sw", "--quiet", cwd=tmp_path)
    assert p.returncode == 0 and "4 from an earlier call" in p.stdout


def test_subprocess_report_quick(tmp_path):
    p = deeplinear("report", "--quick", cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    out = _only_dir(tmp_path / "results")
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for name in _shipped():
        assert f"## {name}" in md and f'id="{name}"' in html
    assert "FAIL" not in md and "| PASS |" in md and "core threads" in md
    if plotting.have_matplotlib():
        assert html.count("data:image/png;base64,") >= 4  # parsimony A, B, equivalence, iteration time
    assert 'src="setting' not in html  # self-contained: no links to files


# -- in-process: parsing and errors ---------------------------------------------------------------

def test_run_default_is_parsimony_without_matplotlib(tmp_path, capsys, monkeypatch):
    # matplotlib missing: computation and checks still run, no figure, a hint how to get it
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert not plotting.have_matplotlib()
    threads = dl.get_num_threads()
    assert cli.main(["run", "--out", tmp_path, *TINY, *FAST]) == 0
    assert dl.get_num_threads() == threads  # restored
    text = capsys.readouterr().out
    out = _only_dir(tmp_path)
    assert out.name.startswith("parsimony-")
    _check_parsimony_output(out, text, png=False)
    assert 'pip install "deeplinear[plot]"' in text


def test_run_parsimony_failing_check_exits_1(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(parsimony_experiment, "RESIDUAL_TOL", 0.0)  # no residual is exactly 0
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert cli.main(["run", "--out", tmp_path, "--set", "steps_a=3", "--set", "steps_b=3", *FAST]) == 1
    assert "FAIL" in capsys.readouterr().out
    checks = json.loads((_only_dir(tmp_path) / "checks.json").read_text())
    assert not checks["passed"]


def test_set_and_config_are_typed(tmp_path, capsys):
    cfg = tmp_path / "f.toml"
    cfg.write_text('steps = 30\nlr = 10\n[factorization]\nsteps = 25\nseed = 1\nreduction = "mean"\n')
    assert cli.main(["run", "factorization", "--config", cfg, "--set", "rows=2", "--out", tmp_path,
                     "--quiet", *FAST]) == 0
    out = _only_dir(tmp_path)
    config = json.loads((out / "result.json").read_text())["config"]
    assert (config["steps"], config["seed"], config["rows"], config["lr"]) == (25, 1, 2, None)
    flat = tmp_path / "flat.toml"
    flat.write_text("steps = 12\nlr = 10\n")
    assert cli.main(["run", "factorization", "--config", flat, "--out", tmp_path / "b", "--quiet",
                     *FAST]) == 0
    config = json.loads((_only_dir(tmp_path / "b") / "result.json").read_text())["config"]
    assert (config["steps"], config["lr"]) == (12, 10.0)
    capsys.readouterr()


@pytest.mark.parametrize("args, message", [
    (["--set", "wdth=3"], "unknown field 'wdth'; valid fields: width, rank, depth"),
    (["--set", "width=wide"], "width: expected int, got 'wide'"),
    (["--set", "width=0"], "width: must be >= 1, got 0"),
    (["--set", "reduction=max"], "reduction: expected {'mean', 'sum'}"),
    (["--set", "width"], "expected FIELD=VALUE"),
    (["--set", "rank=200"], "rank: must be <= width = 100"),
])
def test_set_errors_name_the_field(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        cli.main(["run", "factorization", "--out", tmp_path, *args])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())


def test_config_errors(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("steps = [1,\n")
    typo = tmp_path / "typo.toml"
    typo.write_text("stepz = 3\n")
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('steps = "many"\n')
    for f, msg in ((bad, "is not valid TOML"), (typo, "unknown field 'stepz'"),
                   (wrong, "steps: expected int, got 'many'"), (tmp_path / "none.toml", "cannot read")):
        with pytest.raises(SystemExit) as e:
            cli.main(["run", "factorization", "--config", f, "--out", tmp_path / "o"])
        assert e.value.code == 2
        assert msg in capsys.readouterr().err


def test_list_shows_every_experiment_and_field(capsys):
    assert cli.main(["list"]) == 0
    text = capsys.readouterr().out
    for name in dl.experiments.names():
        cls = dl.experiments.get(name)
        assert f"{name}: {cls.description}" in text
        for f in cls.fields():
            assert f.name in text and f.doc in text


def test_sweep_grid_errors(tmp_path, capsys):
    for grid, msg in ((["wdth=1,2"], "no field 'wdth'"), (["seed=a:b"], "range A:B"),
                      (["width=1,x"], "width: expected int, got 'x'"), ([], "at least one --grid")):
        with pytest.raises(SystemExit) as e:
            cli.main(["sweep", "factorization", "--out", tmp_path / "s",
                      *[a for g in grid for a in ("--grid", g)]])
        assert e.value.code == 2
        assert msg in capsys.readouterr().err


def test_info(capsys):
    assert cli.main(["info"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["version"] == dl.__version__ and info["threads"] >= 1 and "blas" in info


def test_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["run", "nosuch", "--out", tmp_path])
    assert e.value.code == 2
    assert "unknown experiment 'nosuch'; valid: " in capsys.readouterr().err
    for bad in (["--threads", "0"], ["--seed", "x"]):
        with pytest.raises(SystemExit) as e:
            cli.main(["run", *bad, "--out", tmp_path])
        assert e.value.code == 2
        assert bad[0] in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main([])
    assert e.value.code == 2 and "missing command" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
