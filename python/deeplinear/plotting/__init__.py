"""Figures (optional: needs matplotlib, ``pip install "deeplinear[plot]"``).

One module per area (:mod:`.parsimony`, :mod:`.compression`, ...).  matplotlib is imported
inside the functions only, and figures are drawn on an Agg canvas without pyplot: no global
backend switch, no figure kept alive by pyplot's figure manager.  Every function takes arrays
and the output path and writes a PNG.
"""

from __future__ import annotations

import importlib.util

PLOT_HINT = 'pip install "deeplinear[plot]"'


def have_matplotlib() -> bool:
    """Whether matplotlib can be imported (without importing it)."""
    try:
        return importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):  # e.g. sys.modules["matplotlib"] = None
        return False


from .compression import plot_equivalence, plot_iteration_time  # noqa: E402
from .factorization import plot_factorization  # noqa: E402
from .parsimony import ANGLE_FLOOR, plot_parsimony  # noqa: E402

__all__ = ["ANGLE_FLOOR", "PLOT_HINT", "have_matplotlib", "plot_equivalence",
           "plot_factorization", "plot_iteration_time", "plot_parsimony"]
