"""Experiments: the paper's figures and other studies, one module each, run and checked.

>>> from deeplinear import experiments
>>> experiments.names()                                   # doctest: +SKIP
['equivalence', 'factorization', 'iteration-time', 'parsimony']
>>> exp = experiments.get("parsimony")().quick()          # a small config
>>> res = exp.run("out/parsimony")                        # doctest: +SKIP
>>> res.passed, res.format_checks()                       # doctest: +SKIP

How to add one: see :mod:`deeplinear.experiments._base` (the module docstring is the guide).
From the command line: ``deeplinear list``, ``deeplinear run NAME [--set k=v] [--quick]``.
"""

from ._base import (Check, ConfigError, Experiment, ExperimentResult, FieldInfo,
                    MissingRequirement, environment, format_checks, get, names, param,
                    prepare_out, register, registry)

__all__ = [
    "Check", "ConfigError", "Experiment", "ExperimentResult", "FieldInfo", "MissingRequirement",
    "environment", "format_checks", "get", "names", "param", "prepare_out", "register",
    "registry",
]
