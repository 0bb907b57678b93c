"""The shared base of every experiment: configs, the registry, checks and outputs.

How to add an experiment
========================
One module per experiment in ``python/deeplinear/experiments/`` (e.g. ``collapse.py``); the
registry imports every public module of the package on first use, so nothing else needs
editing (no list to extend, no import to add).  A minimal module::

    \"\"\"Deep matrix factorization: loss after ``steps`` steps (what it shows, MATH.md §n).\"\"\"

    from __future__ import annotations

    from dataclasses import dataclass, replace
    from typing import Literal, Optional

    import deeplinear as dl
    from deeplinear.experiments import Check, Experiment, ExperimentResult, param, register


    @register
    @dataclass(frozen=True)
    class MyExperiment(Experiment):
        \"\"\"Numpydoc docstring: the setting, what is measured, the checks and why their
        thresholds are what they are, the files written.\"\"\"

        name = "my-experiment"                                  # what `deeplinear run` takes
        description = "one line for `deeplinear list` and the report"

        width: int = param(100, "layer width d", low=1)
        lr: float = param(0.1, "step size η", low=0.0, low_open=True)
        reduction: Literal["mean", "sum"] = param("mean", "loss reduction (c = 1/d² or 1)")
        tol: Optional[float] = param(None, "stop at this loss (None: run all steps)")
        seed: int = param(0, "seed of the init and the target", low=0)

        def quick(self) -> "MyExperiment":
            return replace(self, width=20)          # seconds, for tests and `report --quick`

        def compute(self, res: ExperimentResult, progress: bool) -> None:
            net = dl.DeepLinearNetwork(3, self.width, seed=self.seed)
            prob = dl.problems.factorization(self.width, 3, seed=self.seed)
            r = dl.train(net, prob, dl.GD(lr=self.lr), 100, progress=progress)
            res.save_training("training", r)        # training.npz + .json, metric training_final_loss
            res.check(Check.at_most("final loss", r.final_loss, 1e-3))
            res.figure("loss", plot_loss, steps=r.steps, loss=r.train_loss)   # loss.png

Rules (checked by :func:`register`, so a mistake fails at import, in every test run):

* The class is a **frozen dataclass** subclassing :class:`Experiment`, with class-level
  ``name`` (lowercase, ``-`` between words, unique) and a one-line ``description``.
* **Every field is declared with** :func:`param` ``(default, doc, low=, high=)``: a default
  (so ``MyExperiment()`` is the full-size run), a one-line doc (shown by ``deeplinear list``),
  optional bounds (inclusive; ``low_open=True``/``high_open=True`` make one exclusive, e.g. a
  step size: ``param(0.1, "step size", low=0.0, low_open=True)`` refuses 0).  Float fields
  are finite (inf and NaN are refused; ``allow_inf=True`` lets a field take ±inf).  This is
  the one mechanism for field docs: ``dataclasses.field`` metadata
  ``{"doc": ..., "low": ..., "high": ..., ...}``.  Annotate with ``int``, ``float``, ``str``,
  ``bool``, ``Optional[X]``, ``tuple[X, ...]`` or ``Literal[...]`` (use ``typing.Optional``,
  not ``X | None``: the package supports Python 3.9).  Values are checked against the type
  and bounds on construction (:class:`ConfigError`, a ``ValueError`` naming the field);
  ``--set k=v`` on the command line is parsed by the field's type; extra semantic checks go
  in :meth:`Experiment.validate` (a ``ValueError`` raised there, e.g. by a library check
  called to refuse a size that cannot fit in memory, is reported as a :class:`ConfigError`).
* :meth:`Experiment.quick` returns a smaller config (a few seconds on one core): the tests run
  every registered experiment at that size and require its checks to pass, and
  ``deeplinear report --quick`` uses it.  :meth:`Experiment.for_report` is the config
  ``deeplinear report`` runs (the default config unless the experiment says otherwise): all of
  them together keep the whole report under 10 minutes on 2 cores, so an experiment whose
  default is a paper-scale run (tens of minutes) returns a smaller config there.
* :meth:`Experiment.compute` does the work and writes everything through the
  :class:`ExperimentResult` it is given: ``res.log`` (printed unless quiet, kept for the
  report), ``res.check`` (the PASS/FAIL table, ``checks.json``), ``res.metric`` (scalars: the
  columns of a sweep's table), ``res.save_training`` (a :class:`deeplinear.Result`: ``.npz`` +
  ``.json``), ``res.save_arrays`` (other arrays: ``.npz``, plus ``.json`` of scalars),
  ``res.figure`` (a PNG when matplotlib is installed, else a note saying how to get it); the
  names ``checks`` and ``result`` are reserved for the base's ``checks.json``/``result.json``.  Never
  ``np.savez`` / ``json.dump`` / ``os.makedirs`` directly.  A training run that diverges is
  reported with ``res.save_training`` (it sets the status ``"diverged"``), not raised.
* Use the public API only (``import deeplinear as dl``; ``dl.*``), never ``_core`` or private
  attributes: if something is missing, add it to the API.  Plot functions take arrays and a
  path, import matplotlib inside the function, and live in ``deeplinear/plotting/`` (or at the
  bottom of the experiment's module).  Helpers shared by two experiments go in a shared module,
  never copied.
* Optional packages an experiment needs beyond NumPy (not matplotlib: figures are skipped
  without it) are listed in ``requires = ("scipy",)``: ``deeplinear report`` then reports it as
  skipped with the reason instead of failing.
* Core threads: ``threads = 1`` (class level) pins the run to one core thread (small problems,
  where threaded BLAS only adds contention); ``None`` leaves the library's setting.
* Determinism: all randomness from the ``seed`` field (``np.random.default_rng(seed)``, the
  ``seed=`` of the API); same config, same numbers, on whichever worker a sweep runs it.

Running: ``MyExperiment().run("out/dir")`` (or ``deeplinear run my-experiment --set width=50``,
``dl.sweep("my-experiment", grid={"width": [50, 100], "seed": range(3)}, out=...)``) creates
the folder, runs :meth:`~Experiment.compute`, prints the checks table, writes ``checks.json``
and ``result.json`` (config, status, checks, metrics, files, elapsed, environment) and returns
the :class:`ExperimentResult`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import importlib.util
import json
import math
import os
import pkgutil
import platform
import tempfile
import time
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Optional, TypeVar

import numpy as np

from .._validation import INDEX_MAX

__all__ = [
    "Check", "ConfigError", "Experiment", "ExperimentResult", "FieldInfo", "MissingRequirement",
    "environment", "get", "names", "param", "prepare_out", "register", "registry",
]

_E = TypeVar("_E", bound="Experiment")

_RESERVED = ("checks.json", "result.json")  # written by ExperimentResult.finish

#: Exit-status-relevant states of a finished experiment (a sweep adds ``"error"``).
STATUSES = ("ok", "failed", "diverged")


class ConfigError(ValueError):
    """An unknown field, or a value of the wrong type or out of range (names the field)."""


class MissingRequirement(RuntimeError):
    """An optional package the experiment needs is not installed."""


# -- configs --------------------------------------------------------------------------------------

# import name -> the PyPI package that provides it, where they differ (the install hint)
_PIP_NAMES = {"sklearn": "scikit-learn", "skimage": "scikit-image"}


def param(default: Any, doc: str, *, low: float | None = None, high: float | None = None,
          low_open: bool = False, high_open: bool = False, allow_inf: bool = False) -> Any:
    """A config field: its default, a one-line doc, optional bounds ``low``/``high``.

    ``width: int = param(100, "layer width d", low=1)`` is
    ``dataclasses.field(default=100, metadata={"doc": ..., "low": 1, "high": None, ...})``.
    The bounds are inclusive; ``low_open=True`` (``high_open=True``) makes ``low`` (``high``)
    exclusive: ``param(0.1, "step size", low=0.0, low_open=True)`` refuses 0.  A float field
    (also inside ``Optional``/``tuple``) refuses NaN and ±inf unless ``allow_inf=True`` (then
    ±inf is accepted, NaN never).  Mutable defaults are not allowed: use tuples.
    """
    if isinstance(default, (list, dict, set)):
        raise TypeError(f"param: the default must be immutable (use a tuple), got {default!r}")
    if not isinstance(doc, str) or not doc.strip() or "\n" in doc.strip():
        raise ValueError(f"param: doc must be one non-empty line, got {doc!r}")
    if (low_open and low is None) or (high_open and high is None):
        raise ValueError("param: low_open/high_open need the bound low/high")
    return field(default=default, metadata={"doc": doc.strip(), "low": low, "high": high,
                                            "low_open": bool(low_open),
                                            "high_open": bool(high_open),
                                            "allow_inf": bool(allow_inf)})


@dataclass(frozen=True)
class FieldInfo:
    """What ``deeplinear list`` shows of a config field."""

    name: str
    type: Any
    default: Any
    doc: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    allow_inf: bool = False

    @property
    def type_name(self) -> str:
        return _type_name(self.type)


@dataclass(frozen=True)
class Experiment:
    """Base of every experiment config (a frozen dataclass; see the module docstring).

    Subclasses set the class attributes ``name`` and ``description``, declare their fields
    with :func:`param`, and implement :meth:`compute` and :meth:`quick`.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    threads: ClassVar[Optional[int]] = None

    # -- config ----------------------------------------------------------------------------
    def __post_init__(self) -> None:
        for f in self.fields():
            value = getattr(self, f.name)
            object.__setattr__(self, f.name, _coerce(value, f.type, f))
        try:
            self.validate()
        except ConfigError:
            raise
        except ValueError as e:  # e.g. a library check of a size: still a bad value of the config
            raise ConfigError(str(e) or f"{self.name}: invalid config") from e

    def validate(self) -> None:
        """Checks between fields (raise :class:`ConfigError` naming the field; a ``ValueError``,
        e.g. from a library check called here, is reported as one); types and bounds are
        already checked."""

    @classmethod
    def fields(cls) -> list[FieldInfo]:
        """The config fields: name, type, default, doc, bounds."""
        hints = typing.get_type_hints(cls)
        out = []
        for f in dataclasses.fields(cls):
            md = f.metadata
            out.append(FieldInfo(f.name, hints[f.name], f.default, md.get("doc", ""),
                                 md.get("low"), md.get("high"), bool(md.get("low_open")),
                                 bool(md.get("high_open")), bool(md.get("allow_inf"))))
        return out

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-able values (tuples as lists; ±inf of a field declared with
        ``allow_inf`` as the strings ``"inf"``/``"-inf"``, which :meth:`from_dict` parses back:
        strict JSON has no inf)."""
        return {k: (list(map(_json_float, v)) if isinstance(v, tuple) else _json_float(v))
                for k, v in ((f.name, getattr(self, f.name)) for f in dataclasses.fields(self))}

    def replace(self: _E, **changes: Any) -> _E:
        """A copy with some fields changed (typed values; unknown fields are a
        :class:`ConfigError` listing the valid ones)."""
        _check_names(type(self), changes)
        return dataclasses.replace(self, **changes)

    def with_strings(self: _E, assignments: dict[str, str] | Iterable[str]) -> _E:
        """A copy with fields set from strings (``{"width": "50"}`` or ``["width=50"]``), each
        parsed by its field's type: what ``deeplinear run --set width=50`` does."""
        return dataclasses.replace(self, **self.parse_strings(assignments))

    @classmethod
    def parse_strings(cls, assignments: dict[str, str] | Iterable[str]) -> dict[str, Any]:
        """The values of :meth:`with_strings` (``{"width": "50"}`` or ``["width=50"]``, each
        parsed by its field's type), not yet checked together as a config."""
        if not isinstance(assignments, dict):
            pairs = {}
            for a in assignments:
                if "=" not in a:
                    raise ConfigError(f"--set {a!r}: expected FIELD=VALUE; fields of {cls.name}: "
                                      f"{', '.join(cls.field_names())}")
                k, v = a.split("=", 1)
                pairs[k.strip()] = v.strip()
            assignments = pairs
        _check_names(cls, assignments)
        types = {f.name: f.type for f in cls.fields()}
        return {k: parse_value(v, types[k], k) for k, v in assignments.items()}

    @classmethod
    def from_dict(cls: type[_E], data: dict[str, Any], base: _E | None = None) -> _E:
        """A config from typed values (e.g. a TOML table), over ``base`` (default: the
        defaults); strings are parsed by the field's type."""
        return dataclasses.replace(base if base is not None else cls(), **cls.parse_dict(data))

    @classmethod
    def parse_dict(cls, data: dict[str, Any]) -> dict[str, Any]:
        """The values of :meth:`from_dict` (strings parsed by the field's type), not yet
        checked together as a config."""
        _check_names(cls, data)
        types = {f.name: f.type for f in cls.fields()}
        return {k: _parse_typed(v, types[k], k) for k, v in data.items()}

    def config_hash(self) -> str:
        """16 hex digits of the SHA-256 of the name and the config (canonical JSON): the
        folder of a sweep's run, and how a resumed sweep recognises finished runs."""
        text = json.dumps({"experiment": self.name, "config": self.to_dict()}, sort_keys=True,
                          separators=(",", ":"), allow_nan=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    # -- running ---------------------------------------------------------------------------
    def quick(self: _E) -> _E:
        """A smaller config (seconds on one core) for tests and ``--quick``."""
        return self

    def for_report(self: _E) -> _E:
        """The config ``deeplinear report`` runs: this one, unless the experiment's default is
        longer than its share of the report's 10-minute budget (then a smaller config that still
        shows the figure's finding; the report lists the fields that differ)."""
        return self

    def compute(self, res: "ExperimentResult", progress: bool) -> None:
        """Do the work; write through ``res`` (see the module docstring)."""
        raise NotImplementedError(f"{type(self).__name__}.compute")

    @classmethod
    def missing_requirements(cls) -> list[str]:
        """The packages of ``requires`` that cannot be imported."""
        return [m for m in cls.requires if not _importable(m)]

    def run(self, out: str | os.PathLike, progress: bool = True, *, verbose: bool = True,
            threads: int | None = None) -> "ExperimentResult":
        """Run into the folder ``out`` (created; refused if it is a file or not writable).

        Parameters
        ----------
        out : str or path
            Output folder.
        progress : bool
            Progress bars of long training runs.
        verbose : bool
            Print the log and the checks table (they are kept in the result either way).
        threads : int, optional
            Core threads for this run (default: the class's ``threads``, else the library's
            setting); the previous setting is restored afterwards.  With threadpoolctl
            installed, NumPy's BLAS is limited to as many threads meanwhile.
        """
        import deeplinear as dl

        missing = self.missing_requirements()
        if missing:
            raise MissingRequirement(f"experiment {self.name!r} needs {', '.join(missing)} "
                                     f"(pip install {' '.join(_PIP_NAMES.get(m, m) for m in missing)}, "
                                     f"or pip install \"deeplinear[experiments]\")")
        cleanup = removed_if_left_empty(out)
        out = prepare_out(out)
        res = ExperimentResult(name=self.name, config=self.to_dict(), out=out, verbose=verbose,
                               config_hash=self.config_hash())
        before = dl.get_num_threads()
        n = threads if threads is not None else self.threads
        if n is not None:
            dl.set_num_threads(n)
        start = time.perf_counter()
        from ..training import interrupts_raise

        try:
            # a Ctrl-C stops the experiment (no partial run taken for a whole one and checked);
            # a run that raised before writing anything leaves no empty folder
            with cleanup, _numpy_threads(n), interrupts_raise():
                res.environment = environment()
                self.compute(res, progress)
        finally:
            res.elapsed = time.perf_counter() - start
            dl.set_num_threads(before)
        res.finish()
        return res


# -- checks ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    """One line of the PASS/FAIL table: ``value`` compared with ``threshold``.

    Build with :meth:`at_most` (``value <= threshold``) or :meth:`at_least`; a non-finite
    value fails.  ``setting`` names a sub-run (e.g. ``"A"``), ``note`` explains a threshold.
    """

    name: str
    value: float
    threshold: float
    passed: bool
    setting: str = ""
    note: str = ""
    op: str = "<="

    @classmethod
    def at_most(cls, name: str, value: float, threshold: float, *, setting: str = "",
                note: str = "") -> "Check":
        value, threshold = float(value), float(threshold)
        return cls(name, value, threshold, bool(math.isfinite(value) and value <= threshold),
                   setting, note, "<=")

    @classmethod
    def at_least(cls, name: str, value: float, threshold: float, *, setting: str = "",
                 note: str = "") -> "Check":
        value, threshold = float(value), float(threshold)
        return cls(name, value, threshold, bool(math.isfinite(value) and value >= threshold),
                   setting, note, ">=")

    def to_dict(self) -> dict[str, Any]:
        return _finite_or_none(dataclasses.asdict(self))


def format_checks(checks: list[Check]) -> str:
    """The checks as a fixed-width table: check, [setting,] value, op threshold, PASS/FAIL."""
    if not checks:
        return "(no checks)"
    w = max(len("check"), *(len(c.name) for c in checks))
    with_setting = any(c.setting for c in checks)
    sw = max([len("setting")] + [len(c.setting) for c in checks]) if with_setting else 0
    head = f"{'check':<{w}}  " + (f"{'setting':>{sw}}  " if with_setting else "")
    lines = [head + f"{'value':>9}  {'threshold':>12}  result"]
    for c in checks:
        line = f"{c.name:<{w}}  " + (f"{c.setting:>{sw}}  " if with_setting else "")
        line += f"{c.value:9.2e}  {c.op + ' ' + format(c.threshold, '.1e'):>12}  "
        line += "PASS" if c.passed else "FAIL"
        if c.note:
            line += f"  ({c.note})"
        lines.append(line)
    return "\n".join(lines)


# -- results and outputs --------------------------------------------------------------------------

@dataclass
class ExperimentResult:
    """What :meth:`Experiment.run` returns, and the one way an experiment writes its outputs.

    Attributes
    ----------
    name, config, config_hash : the experiment and its config (JSON-able).
    out : str
        Output folder.
    checks : list of Check
    metrics : dict
        Scalar summary (the columns of a sweep's table).
    files : list of str
        Files written, relative to ``out``.
    log_lines : list of str
        Everything :meth:`log` printed.
    notes : list of str
        Remarks for the report (e.g. a figure skipped without matplotlib).
    diverged : bool
        A training run diverged (see :meth:`save_training`).
    elapsed : float
        Seconds of :meth:`Experiment.run`.
    environment : dict
        Versions, machine, threads (:func:`environment`).
    """

    name: str
    config: dict[str, Any]
    out: str
    config_hash: str = ""
    verbose: bool = True
    checks: list[Check] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    log_lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    diverged: bool = False
    elapsed: float = 0.0
    environment: dict[str, Any] = field(default_factory=dict)

    # -- status ------------------------------------------------------------------------------
    @property
    def passed(self) -> bool:
        """Every check passed and nothing diverged."""
        return not self.diverged and all(c.passed for c in self.checks)

    @property
    def status(self) -> str:
        """``"diverged"``, ``"failed"`` (a check failed) or ``"ok"``."""
        return "diverged" if self.diverged else ("ok" if self.passed else "failed")

    @property
    def figures(self) -> list[str]:
        """Paths of the PNG files written."""
        return [os.path.join(self.out, f) for f in self.files if f.endswith(".png")]

    # -- recording ---------------------------------------------------------------------------
    def log(self, *parts: Any) -> None:
        """Print (unless quiet) and keep the line for the report."""
        line = " ".join(str(p) for p in parts)
        self.log_lines.append(line)
        if self.verbose:
            print(line, flush=True)

    def check(self, *checks: Check) -> None:
        """Add lines to the checks table."""
        for c in checks:
            if not isinstance(c, Check):
                raise TypeError(f"check: expected Check, got {type(c).__name__}")
            self.checks.append(c)

    def metric(self, name: str, value: Any) -> None:
        """A scalar of the summary (a column of a sweep's table)."""
        if isinstance(value, np.generic):
            value = value.item()
        if not isinstance(value, (bool, int, float, str)) and value is not None:
            raise TypeError(f"metric {name!r}: expected a scalar, got {type(value).__name__}")
        self.metrics[name] = value

    def path(self, filename: str) -> str:
        """Absolute path of ``filename`` in the output folder."""
        if os.path.basename(filename) != filename:
            raise ValueError(f"filename: a plain file name, got {filename!r}")
        return os.path.join(self.out, filename)

    def _add_file(self, filename: str, *, reserved_ok: bool = False) -> str:
        if not reserved_ok and filename in _RESERVED:
            raise ValueError(f"name: {os.path.splitext(filename)[0]!r} is reserved "
                             f"({', '.join(_RESERVED)} are written by the base)")
        if filename not in self.files:
            self.files.append(filename)
        return self.path(filename)

    def save_training(self, name: str, result: Any, *, extra: dict[str, Any] | None = None) -> None:
        """Save a :class:`deeplinear.Result` as ``name.npz`` (arrays, :meth:`Result.save`)
        and ``name.json`` (summary and losses, :meth:`Result.save_json`); ``extra`` goes into
        its ``meta``.  Adds the metrics ``{name}_final_loss``, ``{name}_steps``,
        ``{name}_status``; a ``"diverged"`` status marks the experiment diverged."""
        result.meta.setdefault("experiment", {"name": self.name, "config": self.config})
        if extra:
            result.meta.update(extra)
        result.save(self._add_file(name + ".npz"))
        result.save_json(self._add_file(name + ".json"))
        self.metric(f"{name}_final_loss", result.final_loss)
        self.metric(f"{name}_steps", int(result.n_steps))
        self.metric(f"{name}_status", result.status)
        if result.status == "diverged":
            self.diverged = True

    def save_arrays(self, name: str, arrays: dict[str, Any], info: dict[str, Any] | None = None) -> None:
        """Save arrays as ``name.npz`` (atomically) and, with ``info``, ``name.json`` (strict
        JSON: NaN and inf written as null)."""
        from .._io import atomic_savez

        atomic_savez(self._add_file(name + ".npz"), {k: np.asarray(v) for k, v in arrays.items()})
        if info is not None:
            self.save_json(name, info)

    def save_json(self, name: str, data: dict[str, Any]) -> None:
        """Write ``name.json`` (strict JSON: NaN and inf as null, arrays as lists)."""
        _write_json(self._add_file(name + ".json"), data)

    def figure(self, name: str, plot: Callable[..., Any], /, *args: Any, **kwargs: Any) -> str | None:
        """``plot(path, *args, **kwargs)`` to ``name.png`` when matplotlib is installed
        (returns the path), else a note saying how to get the figure (returns None)."""
        from ..plotting import PLOT_HINT, have_matplotlib

        if not have_matplotlib():
            note = f"no figure {name}.png: matplotlib is not installed ({PLOT_HINT})"
            if note not in self.notes:
                self.notes.append(note)
                self.log(note)
            return None
        path = self._add_file(name + ".png")
        plot(path, *args, **kwargs)
        return path

    # -- finishing ---------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Everything but the arrays, JSON-able (what ``result.json`` holds)."""
        return _finite_or_none({
            "experiment": self.name, "config": self.config, "config_hash": self.config_hash,
            "status": self.status, "passed": self.passed, "elapsed": self.elapsed,
            "checks": [c.to_dict() for c in self.checks], "metrics": self.metrics,
            "files": self.files, "notes": self.notes, "environment": self.environment})

    def format_checks(self) -> str:
        return format_checks(self.checks)

    def finish(self) -> None:
        """Print the checks table (unless quiet) and write ``checks.json`` and ``result.json``."""
        self._add_file("checks.json", reserved_ok=True)
        self._add_file("result.json", reserved_ok=True)
        _write_json(self.path("checks.json"), {
            "experiment": self.name, "passed": self.passed, "status": self.status,
            "checks": [c.to_dict() for c in self.checks]})
        _write_json(self.path("result.json"), self.summary())
        if self.verbose:
            if self.checks:
                print()
                print(self.format_checks())
            print(f"{self.name}: {self.status.upper() if self.checks else self.status} "
                  f"in {self.elapsed:.1f} s; wrote {self.out}/: {', '.join(self.files)}", flush=True)

    @classmethod
    def load(cls, out: str | os.PathLike) -> "ExperimentResult":
        """Read a finished run's ``result.json`` (no arrays) back."""
        out = os.fspath(out)
        with open(os.path.join(out, "result.json")) as fh:
            data = json.load(fh)
        checks = [Check(**{k: (float("nan") if v is None and k in ("value", "threshold") else v)
                           for k, v in c.items()}) for c in data["checks"]]
        return cls(name=data["experiment"], config=data["config"], out=out,
                   config_hash=data.get("config_hash", ""), verbose=False, checks=checks,
                   metrics=data["metrics"], files=data["files"], notes=data.get("notes", []),
                   diverged=data["status"] == "diverged", elapsed=data["elapsed"],
                   environment=data.get("environment", {}))


class removed_if_left_empty:  # noqa: N801 (used as a context manager, like contextlib's)
    """Around work that creates the folder ``out``: when the work raises, ``out`` is removed if
    it did not exist when this was made and is still empty (no empty result folder left behind).
    Whether it existed is read here, at construction, so that the folder may be created before
    the ``with`` block is entered."""

    def __init__(self, out: str | os.PathLike) -> None:
        self.path = os.path.abspath(os.fspath(out))
        self.existed = os.path.exists(self.path)

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None and not self.existed:
            with contextlib.suppress(OSError):  # not empty: something was written, keep it
                os.rmdir(self.path)
        return False


def check_training_memory(dims, n_cols: int, name: str) -> None:
    """A :class:`ConfigError` naming the field ``name`` when training a float64 network of
    ``dims`` on ``n_cols`` columns (weights, a d_L x d_0 target, the workspace) cannot fit in
    the memory available: for an experiment's ``validate``, before anything is allocated."""
    from .. import _memory

    nbytes = 8 * (sum(dims[l] * dims[l - 1] for l in range(1, len(dims))) + dims[-1] * dims[0])
    try:
        _memory.require(nbytes + _memory.training_bytes(dims, n_cols, 8, 0, False), "the run", name)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def prepare_out(out: str | os.PathLike) -> str:
    """Create the folder ``out`` (and its parents) and check that files can be written in it:
    a :class:`ValueError` naming ``out`` when it is a file, under a file, or not writable, so
    that a bad path is refused before any work is done."""
    path = os.path.abspath(os.fspath(out))
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"out: {path} exists and is not a folder")
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".deeplinear-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ValueError(f"out: cannot write in {path}: {e.strerror or e}") from None
    return path


@contextlib.contextmanager
def _numpy_threads(n: int | None):
    """NumPy's BLAS (and OpenMP) limited to ``n`` threads meanwhile, when threadpoolctl is
    installed (threaded BLAS on small matrices only adds contention on a shared machine)."""
    if n is None or not _importable("threadpoolctl"):
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(n):
        yield


def environment() -> dict[str, Any]:
    """Versions, machine and thread count (for ``result.json`` and the report)."""
    import deeplinear as dl

    return {
        "deeplinear": dl.__version__, "numpy": np.__version__,
        "python": platform.python_version(), "platform": platform.platform(),
        "machine": platform.machine(), "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "threads": dl.get_num_threads(), "build": dl.build_info(),
    }


# -- the registry ---------------------------------------------------------------------------------

_REGISTRY: dict[str, type[Experiment]] = {}
_DISCOVERED = False


def register(cls: type[_E]) -> type[_E]:
    """Class decorator: add an experiment to the registry (after checking the rules of the
    module docstring: frozen dataclass, name, one-line description, a default and a doc for
    every field)."""
    where = f"{cls.__module__}.{cls.__qualname__}"
    if not (isinstance(cls, type) and issubclass(cls, Experiment)):
        raise TypeError(f"register: {where} is not an Experiment subclass")
    if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:
        raise TypeError(f"register: {where} must be a @dataclass(frozen=True)")
    name, desc = cls.__dict__.get("name"), cls.__dict__.get("description")
    if not isinstance(name, str) or not name or name != name.lower() or " " in name:
        raise ValueError(f"register: {where}.name must be a lowercase word (with -), got {name!r}")
    if not isinstance(desc, str) or not desc.strip() or "\n" in desc.strip():
        raise ValueError(f"register: {where}.description must be one line")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.default is dataclasses.MISSING:
            raise ValueError(f"register: field {f.name!r} of {where} has no default")
        if not f.metadata.get("doc"):
            raise ValueError(f"register: field {f.name!r} of {where} has no doc "
                             f"(declare it with param(default, doc))")
        _coerce(f.default, hints[f.name], FieldInfo(f.name, hints[f.name], f.default, "",
                                                    allow_inf=bool(f.metadata.get("allow_inf"))))
    key = _key(name)
    if key in _REGISTRY and _REGISTRY[key] is not cls and \
            f"{_REGISTRY[key].__module__}.{_REGISTRY[key].__qualname__}" != where:
        raise ValueError(f"register: experiment {name!r} is registered twice "
                         f"({_REGISTRY[key].__module__} and {cls.__module__})")
    _REGISTRY[key] = cls
    return cls


def _discover() -> None:
    """Import every public module of ``deeplinear.experiments`` once (they register)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    pkg = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__package__}.{info.name}")
    _DISCOVERED = True


def registry() -> dict[str, type[Experiment]]:
    """Every registered experiment, by name (sorted)."""
    _discover()
    return {cls.name: cls for _, cls in sorted(_REGISTRY.items())}


def names() -> list[str]:
    """Names of the registered experiments, sorted."""
    return list(registry())


def get(name: str) -> type[Experiment]:
    """The experiment class registered as ``name`` (``-`` and ``_`` are the same); an unknown
    name is a :class:`ConfigError` listing the valid ones."""
    _discover()
    if not isinstance(name, str) or _key(name) not in _REGISTRY:
        raise ConfigError(f"unknown experiment {name!r}; valid: {', '.join(names())}")
    return _REGISTRY[_key(name)]


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


# -- typed values ---------------------------------------------------------------------------------

def _check_names(cls: type[Experiment], keys: Iterable[str]) -> None:
    valid = cls.field_names()
    for k in keys:
        if k not in valid:
            raise ConfigError(f"{cls.name}: unknown field {k!r}; valid fields: {', '.join(valid)}")


def _is_str_type(tp: Any) -> bool:
    if tp is str:
        return True
    if typing.get_origin(tp) is typing.Literal:
        return all(isinstance(a, str) for a in typing.get_args(tp))
    if typing.get_origin(tp) is typing.Union:
        return any(_is_str_type(a) for a in typing.get_args(tp) if a is not type(None))
    return False


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return "{" + ", ".join(repr(a) for a in args) + "}"
    if origin is typing.Union:
        return " or ".join(_type_name(a) if a is not type(None) else "None" for a in args)
    if origin is tuple:
        return f"tuple of {_type_name(args[0])}" if args else "tuple"
    return getattr(tp, "__name__", str(tp))


class _TypeMismatch(ConfigError):
    """The value is not of the field's type (a ``Union`` tries its next member); a bound or a
    non-finite float is a plain :class:`ConfigError` (reported as such)."""


def _bad(name: str, value: Any, tp: Any, why: str = "") -> ConfigError:
    return _TypeMismatch(f"{name}: expected {_type_name(tp)}, got {value!r}" + (f" ({why})" if why else ""))



def _json_float(v: Any) -> Any:
    """±inf as ``"inf"``/``"-inf"`` (strict JSON has none); everything else unchanged."""
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def parse_value(text: Any, tp: Any, name: str) -> Any:
    """Parse the string ``text`` as a value of type ``tp`` (the field ``name``); non-strings
    pass through to the type check."""
    if not isinstance(text, str):
        return text
    s = text.strip()
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:
        if s.lower() in ("none", "null") and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:  # the type only: bounds and finiteness are checked with the field's declaration
                return _coerce(parse_value(s, a, name), a, FieldInfo(name, a, None, "", allow_inf=True))
            except _TypeMismatch:
                pass
        raise _bad(name, text, tp)
    if origin is typing.Literal:
        for a in args:
            if str(a) == s:
                return a
        raise _bad(name, text, tp)
    if origin is tuple:
        if not s or s in ("()", "[]"):
            return ()
        items = [p for p in s.strip("()[]").split(",") if p.strip()]
        return tuple(parse_value(p, args[0] if args else str, name) for p in items)
    if tp is bool:
        low = s.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise _bad(name, text, tp)
    if tp is int:
        try:
            return int(s.replace("_", ""))
        except ValueError:
            try:  # 1e6
                f = float(s)
            except ValueError:
                raise _bad(name, text, tp) from None
            if f.is_integer():
                return int(f)
            raise _bad(name, text, tp) from None
    if tp is float:
        try:
            return float(s)
        except ValueError:
            raise _bad(name, text, tp) from None
    return s


def _parse_typed(value: Any, tp: Any, name: str) -> Any:
    """A typed value (TOML, JSON) of the field: strings parsed by a non-string type (also the
    items of a tuple field: ``"inf"`` as :meth:`Experiment.to_dict` writes it), the rest as is."""
    if isinstance(value, str):
        return value if _is_str_type(tp) else parse_value(value, tp, name)
    if typing.get_origin(tp) is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(tp)
        item = args[0] if args else Any
        if item is not Any and not _is_str_type(item):
            return tuple(parse_value(v, item, name) if isinstance(v, str) else v for v in value)
    return value


def _coerce(value: Any, tp: Any, info: FieldInfo) -> Any:
    """Check ``value`` against the field's type and bounds; ints become floats for float
    fields, lists tuples for tuple fields."""
    name = info.name
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, info)
            except _TypeMismatch:  # another member may fit; a bound violation is reported as is
                pass
        raise _bad(name, value, tp)
    if origin is typing.Literal:
        if value in args and not isinstance(value, bool):
            return value
        raise ConfigError(f"{name}: must be one of {', '.join(repr(a) for a in args)}, got {value!r}")
    if origin is tuple:
        if isinstance(value, range):
            value = tuple(value)
        if not isinstance(value, (tuple, list)):
            raise _bad(name, value, tp)
        item = args[0] if args else Any
        return tuple(v if item is Any else _coerce(v, item, info) for v in value)
    if tp is bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise _bad(name, value, tp)
    if tp is int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise _bad(name, value, tp)
        value = int(value)
        if abs(value) > INDEX_MAX:  # what the core's 64-bit counters and sizes hold
            raise ConfigError(f"{name}: must be {'<=' if value > 0 else '>='} "
                              f"{'' if value > 0 else '-'}2**62, got {value!r}")
    elif tp is float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise _bad(name, value, tp)
        try:
            value = float(value)
        except OverflowError:  # an int beyond the float range
            raise ConfigError(f"{name}: must be finite, got {value!r}") from None
        if math.isnan(value) or (math.isinf(value) and not info.allow_inf):
            raise ConfigError(f"{name}: must be finite, got {value!r}")
    elif tp is str:
        if not isinstance(value, str):
            raise _bad(name, value, tp)
        return value
    else:
        return value
    if info.low is not None and (value <= info.low if info.low_open else value < info.low):
        raise ConfigError(f"{name}: must be {'>' if info.low_open else '>='} {info.low:g}, "
                          f"got {value!r}")
    if info.high is not None and (value >= info.high if info.high_open else value > info.high):
        raise ConfigError(f"{name}: must be {'<' if info.high_open else '<='} {info.high:g}, "
                          f"got {value!r}")
    return value


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# -- JSON -----------------------------------------------------------------------------------------

def _finite_or_none(o: Any) -> Any:
    from ..result import _finite_or_none as f

    return f(o)


def _write_json(path: str, data: Any) -> None:
    from ..result import _json_default

    text = json.dumps(_finite_or_none(data), indent=1, default=_json_default, allow_nan=False)
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".deeplinear-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise

