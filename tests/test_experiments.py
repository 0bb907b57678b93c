"""Every registered experiment runs at its ``quick()`` size and its checks pass."""

from __future__ import annotations

import json

import pytest

import deeplinear as dl
from deeplinear import experiments as ex


@pytest.fixture
def one_thread():
    before = dl.get_num_threads()
    dl.set_num_threads(1)
    yield
    dl.set_num_threads(before)


@pytest.mark.parametrize("name", ex.names())
def test_quick_run_passes(name, tmp_path, one_thread):
    cls = ex.get(name)
    missing = cls.missing_requirements()
    if missing:
        pytest.skip(f"needs {missing}")
    exp = cls().quick()
    assert exp != cls() or not cls.fields(), "quick() must give a smaller config"
    res = exp.run(tmp_path, progress=False, verbose=False)
    assert res.passed, res.format_checks() + "\n" + "\n".join(res.log_lines)
    assert res.status == "ok" and res.checks
    assert json.loads((tmp_path / "checks.json").read_text())["passed"]
    assert {"checks.json", "result.json"} <= set(res.files)
    for f in res.files:
        assert (tmp_path / f).is_file(), f
