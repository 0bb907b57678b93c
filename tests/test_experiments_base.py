"""The experiments' shared base: configs (types, bounds, docs), parsing of ``k=v`` strings,
the registry, the checks table and the outputs of :meth:`Experiment.run`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np
import pytest

from deeplinear import experiments as ex
from deeplinear.experiments import Check, ConfigError, Experiment, param, register


@dataclass(frozen=True)
class Toy(Experiment):
    name = "toy-base-test"
    description = "a toy for the base's tests"

    width: int = param(10, "width", low=1)
    lr: float = param(0.5, "step size", low=0.0)
    mode: Literal["a", "b"] = param("a", "mode")
    tol: Optional[float] = param(None, "tolerance")
    widths: tuple[int, ...] = param((1, 2), "widths")
    flag: bool = param(False, "a flag")
    label: str = param("x", "a label")

    def quick(self) -> "Toy":
        return self.replace(width=2)

    def compute(self, res, progress):
        res.log("computing", self.width)
        res.check(Check.at_most("small", 1e-12, 1e-10), Check.at_least("big", 3.0, 1.0, setting="S"))
        res.metric("m", np.float64(2.5))
        res.save_arrays("arrays", {"x": np.arange(3)}, info={"nan": float("nan")})


def test_fields_have_docs_types_defaults():
    fs = {f.name: f for f in Toy.fields()}
    assert list(fs) == ["width", "lr", "mode", "tol", "widths", "flag", "label"]
    assert fs["width"].doc == "width" and fs["width"].default == 10 and fs["width"].low == 1
    assert fs["tol"].type_name == "float or None"
    assert fs["mode"].type_name == "{'a', 'b'}"


def test_typed_parsing_and_errors():
    t = Toy().with_strings(["width=7", "lr=1e-3", "mode=b", "tol=none", "widths=3,4", "flag=yes"])
    assert (t.width, t.lr, t.mode, t.tol, t.widths, t.flag) == (7, 1e-3, "b", None, (3, 4), True)
    assert Toy().with_strings({"tol": "0.25", "width": "1e3"}).tol == 0.25
    assert Toy(lr=1).lr == 1.0 and isinstance(Toy(lr=1).lr, float)
    with pytest.raises(ConfigError, match=r"unknown field 'wdth'.*valid fields: width, lr"):
        Toy().with_strings(["wdth=3"])
    with pytest.raises(ConfigError, match=r"width: expected int, got '2.5'"):
        Toy().with_strings(["width=2.5"])
    with pytest.raises(ConfigError, match=r"width: must be >= 1, got 0"):
        Toy().with_strings(["width=0"])
    with pytest.raises(ConfigError, match=r"mode: expected \{'a', 'b'\}"):
        Toy().with_strings(["mode=c"])
    with pytest.raises(ConfigError, match="flag"):
        Toy().with_strings(["flag=maybe"])
    with pytest.raises(ConfigError, match="FIELD=VALUE"):
        Toy().with_strings(["width"])
    with pytest.raises(ConfigError, match="width: expected int"):
        Toy(width=True)
    with pytest.raises(ConfigError, match="lr: expected float"):
        Toy(lr="fast")
    with pytest.raises(ConfigError, match="unknown field"):
        Toy().replace(nope=1)
    assert Toy.from_dict({"width": 3, "lr": "0.1"}).lr == 0.1
    assert isinstance(ConfigError("x"), ValueError)


def test_config_hash_depends_on_config_only():
    assert Toy().config_hash() == Toy().config_hash()
    assert Toy().config_hash() != Toy(width=11).config_hash()
    assert len(Toy().config_hash()) == 16


def test_register_enforces_the_rules():
    with pytest.raises(TypeError, match="frozen"):
        @register
        @dataclass
        class NotFrozen(Experiment):
            name = "nf"
            description = "x"
    with pytest.raises(ValueError, match="no doc"):
        @register
        @dataclass(frozen=True)
        class NoDoc(Experiment):
            name = "nodoc"
            description = "x"
            width: int = 3
    with pytest.raises(ValueError, match="description"):
        @register
        @dataclass(frozen=True)
        class NoDesc(Experiment):
            name = "nodesc"
    with pytest.raises(ValueError, match="one non-empty line"):
        param(1, "two\nlines")
    with pytest.raises(TypeError, match="immutable"):
        param([1], "a list")
    assert "toy-base-test" not in ex.names()


def test_registry_lists_every_module():
    names = ex.names()
    assert "parsimony" in names
    for n in names:
        cls = ex.get(n)
        assert cls.name == n and cls.description
        assert all(f.doc for f in cls.fields())
    assert ex.get("parsimony") is ex.get("PARSIMONY")
    with pytest.raises(ConfigError, match="unknown experiment 'nosuch'; valid: .*parsimony"):
        ex.get("nosuch")


def test_checks_table():
    c = [Check.at_most("residual", 1e-12, 1e-10), Check.at_most("nan", float("nan"), 1.0),
         Check.at_least("count", 2, 3, note="why")]
    assert [x.passed for x in c] == [True, False, False]
    text = ex.format_checks(c)
    assert text.count("PASS") == 1 and text.count("FAIL") == 2 and "(why)" in text
    assert c[1].to_dict()["value"] is None  # strict JSON


def test_run_writes_checks_and_result(tmp_path, capsys):
    res = Toy().quick().run(tmp_path / "out", progress=False)
    text = capsys.readouterr().out
    assert "computing 2" in text and text.count("PASS") == 2
    assert res.passed and res.status == "ok" and res.metrics == {"m": 2.5}
    out = tmp_path / "out"
    checks = json.loads((out / "checks.json").read_text())
    assert checks["passed"] and [c["name"] for c in checks["checks"]] == ["small", "big"]
    summary = json.loads((out / "result.json").read_text())
    assert summary["config"]["width"] == 2 and summary["config_hash"] == Toy().quick().config_hash()
    assert summary["environment"]["threads"] >= 1
    assert json.loads((out / "arrays.json").read_text()) == {"nan": None}
    assert np.array_equal(np.load(out / "arrays.npz")["x"], np.arange(3))
    back = ex.ExperimentResult.load(out)
    assert back.checks == res.checks and back.metrics == res.metrics and back.passed
    quiet = Toy().run(tmp_path / "q", progress=False, verbose=False)
    assert capsys.readouterr().out == "" and quiet.log_lines == ["computing 10"]


def test_out_must_be_a_writable_folder(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="out: .* is not a folder"):
        Toy().run(f, progress=False)
    with pytest.raises(ValueError, match="out: cannot write"):
        Toy().run(f / "sub", progress=False)
