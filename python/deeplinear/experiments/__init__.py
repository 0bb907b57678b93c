"""Experiments: the paper's figures and other studies, one module each, run and checked.

>>> from deeplinear import experiments
>>> experiments.names()                                   # doctest: +SKIP
['collapse', 'collapse-grid', 'completion', 'completion-image', 'depth', 'equivalence', ...]
>>> exp = experiments.get("parsimony")().quick()          # a small config
>>> res = exp.run("out/parsimony")                        # doctest: +SKIP
>>> res.passed, res.format_checks()                       # doctest: +SKIP

How to add one: see :mod:`deeplinear.experiments._base` (the module docstring is the guide).
Sweeps: :func:`sweep` (``dl.sweep``); all experiments in one document: :func:`report`.
From the command line: ``deeplinear list``, ``deeplinear run NAME [--set k=v] [--quick]``,
``deeplinear sweep NAME --grid k=v1,v2``, ``deeplinear report [--quick]``.
"""

from ._base import (Check, ConfigError, Experiment, ExperimentResult, FieldInfo,
                    MissingRequirement, environment, format_checks, get, names, param,
                    prepare_out, register, registry)
from ._common import stability_edge, stable_lr, target_spectrum
from .report import report
from .sweep import SweepResult, sweep

__all__ = [
    "Check", "ConfigError", "Experiment", "ExperimentResult", "FieldInfo", "MissingRequirement",
    "environment", "format_checks", "get", "names", "param", "prepare_out", "register",
    "registry", "report", "stability_edge", "stable_lr", "SweepResult", "sweep", "target_spectrum",
]
