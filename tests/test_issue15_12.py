"""Issue 15, finding 12: the command line refuses bad arguments clearly and before any work.

* ``--out`` pointing at a file, under a file, or at a folder that cannot be written ran the
  whole experiment and then printed a traceback: now a usage error (exit 2) naming ``--out``,
  before the experiment starts;
* ``--seed -1`` printed a traceback: now a usage error;
* an unknown flag was reported as a missing command: now "unrecognized arguments".
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from deeplinear import cli
from deeplinear.experiments import parsimony as parsimony_experiment


@pytest.fixture
def no_work(monkeypatch):
    """Any experiment that starts fails the test."""
    def ran(self, res, progress):
        raise AssertionError("the experiment ran")
    monkeypatch.setattr(parsimony_experiment.ParsimonyExperiment, "compute", ran)


def _usage_error(args, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        cli.main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("command", [["run"], ["report"], ["sweep", "factorization", "--grid", "seed=0:2"]])
def test_out_is_a_file(tmp_path, capsys, no_work, command):
    f = tmp_path / "file.txt"
    f.write_text("keep me")
    err = _usage_error([*command, "--out", f], capsys)
    assert "--out" in err and "is not a folder" in err
    err = _usage_error([*command, "--out", f / "sub"], capsys)
    assert "--out" in err and "cannot write" in err
    assert f.read_text() == "keep me"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root can write into a read-only folder")
def test_out_not_writable(tmp_path, capsys, no_work):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        err = _usage_error(["run", "--out", ro], capsys)
        assert "--out" in err and "cannot write" in err
    finally:
        ro.chmod(0o700)


def test_negative_seed(tmp_path, capsys, no_work):
    err = _usage_error(["run", "--seed", "-1", "--out", tmp_path], capsys)
    assert "--seed: must be >= 0, got -1" in err
    err = _usage_error(["run", "--set", "seed=-1", "--out", tmp_path], capsys)
    assert "seed: must be >= 0, got -1" in err
    assert not any(tmp_path.iterdir())


def test_unknown_flag(tmp_path, capsys, no_work):
    for args, flag in ((["--bogus"], "--bogus"), (["run", "--bogus", "--out", tmp_path], "--bogus"),
                       (["--quick"], "--quick"), (["list", "--quick"], "--quick")):
        err = _usage_error(args, capsys)
        assert f"unrecognized arguments: {flag}" in err
        assert "required" not in err and "missing command" not in err


def test_as_a_user_types_it(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("")
    for args, msg in ((["run", "--out", f], "is not a folder"), (["run", "--seed", "-1"], "must be >= 0"),
                      (["run", "--bogus"], "unrecognized arguments: --bogus")):
        p = subprocess.run([sys.executable, "-m", "deeplinear", *map(str, args)], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 2 and msg in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]
