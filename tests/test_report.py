"""``dl.experiments.report``: an experiment that needs a missing package is reported as
skipped, one that raises as an error, and neither loses the report (the full quick report as
a user runs it: tests/test_cli.py)."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from deeplinear import experiments as ex
from deeplinear.experiments import Check, Experiment, param, register


@register
@dataclass(frozen=True)
class NeedsMissing(Experiment):
    name = "report-test-needs-missing"
    description = "needs a package that is not installed"
    requires = ("deeplinear_no_such_package",)

    x: int = param(1, "unused")

    def compute(self, res, progress):
        raise AssertionError("must not run")


@register
@dataclass(frozen=True)
class Raises(Experiment):
    name = "report-test-raises"
    description = "raises"

    x: int = param(1, "unused")

    def compute(self, res, progress):
        raise ValueError("broken on purpose")


@register
@dataclass(frozen=True)
class Draws(Experiment):
    name = "report-test-draws"
    description = "one check, one figure"

    x: int = param(1, "unused")

    def compute(self, res, progress):
        res.check(Check.at_most("x", self.x, 2), Check.at_most("fails", 3.0, 2.0))
        res.figure("fig", _png)


def _png(path):
    # a 1x1 PNG written without matplotlib
    with open(path, "wb") as fh:
        fh.write(base64.b64decode(
            "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="))


def test_skipped_error_and_failed_entries(tmp_path, capsys):
    rep = ex.report(tmp_path / "r", names=["report-test-needs-missing", "report-test-raises",
                                           "report-test-draws"])
    status = {e.name: e.status for e in rep.entries}
    assert status == {"report-test-needs-missing": "skipped", "report-test-raises": "error",
                      "report-test-draws": "failed"}
    assert not rep.passed
    md = (tmp_path / "r" / "report.md").read_text()
    html = (tmp_path / "r" / "report.html").read_text()
    assert "needs deeplinear_no_such_package" in md and "ValueError: broken on purpose" in md
    assert "| x |  | 1.00e+00 | <= 2.0e+00 | PASS |" in md and "**FAIL**" in md
    assert html.count('class="FAIL"') == 1 and html.count('class="PASS"') == 1
    assert "data:image/png;base64,iVBORw0KGgo" in html  # embedded, self-contained
    assert "core threads" in html and "SKIPPED" in html
    assert "report-test-draws" in capsys.readouterr().out


@register
@dataclass(frozen=True)
class Sized(Experiment):
    name = "report-test-sized"
    description = "a default too long for the report"

    n: int = param(10**9, "work")

    def for_report(self):
        return type(self)(n=3)

    def quick(self):
        return type(self)(n=1)

    def compute(self, res, progress):
        assert self.n < 10
        res.check(Check.at_most("n", self.n, 5))


def test_report_runs_each_experiments_report_config(tmp_path):
    full = ex.report(tmp_path / "full", names=["report-test-sized"], verbose=False)
    quick = ex.report(tmp_path / "quick", names=["report-test-sized"], quick=True, verbose=False)
    assert full.passed and full.entries[0].result.config["n"] == 3
    assert quick.passed and quick.entries[0].result.config["n"] == 1
    assert "Config: n=3 " in (tmp_path / "full" / "report.md").read_text()
