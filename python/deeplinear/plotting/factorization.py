"""The single-factorization figure (``deeplinear run factorization``)."""

from __future__ import annotations

import numpy as np


def plot_factorization(path: str, *, steps: np.ndarray, loss: np.ndarray, sv_steps: np.ndarray,
                       singular_values: np.ndarray, rank: int, title: str = "") -> None:
    """Loss (log scale) and the singular values of ``W_1`` over the steps: the top ``r`` in
    blue, the rest of the learning ``2r`` block in orange, the bulk in grey.

    Parameters
    ----------
    path : str
        Output file (PNG).
    steps, loss : (n,)
        Recorded steps and training losses.
    sv_steps : (m,) int
        Steps of the SVDs.
    singular_values : (m, d) float
        Descending singular values of ``W_1`` at ``sv_steps``.
    rank : int
        r.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    sv = np.asarray(singular_values)
    fig = Figure(figsize=(10.0, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax, bx = fig.subplots(1, 2)
    ax.semilogy(steps, loss, color="k", lw=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    d = sv.shape[1]
    r2 = min(2 * rank, d)
    for i in range(d - 1, -1, -1):  # bulk first, the top values drawn over it
        color = "tab:blue" if i < rank else ("tab:orange" if i < r2 else "0.75")
        bx.plot(sv_steps, sv[:, i], color=color, lw=1.0 if i < r2 else 0.6)
    bx.set_xlabel("step")
    bx.set_ylabel("singular values of $W_1$")
    bx.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)
