"""The law-of-parsimony figure (``deeplinear run parsimony``)."""

from __future__ import annotations

import numpy as np

ANGLE_FLOOR = 1e-17  # where exact zeros are drawn on the log axis


def plot_parsimony(path: str, *, steps: np.ndarray, singular_values: np.ndarray,
                   rho: np.ndarray, rank: int, angles_right: np.ndarray,
                   angles_left: np.ndarray, angles_align: np.ndarray, title: str = "",
                   xscale: str = "linear", linthresh: float = 10.0, bulk_tol: float = 1e-9) -> None:
    """The law-of-parsimony figure (the paper's Figure 1 layout), saved as a PNG.

    Column ``l`` is layer ``l = 1..L`` (layer 1 on the left).  Top row: every singular value of
    ``W_l`` at the recorded steps, coloured as the top ``r`` values, the other values of the
    learning ``2r × 2r`` block, and the bulk (values within ``bulk_tol``·s₁ of ``|ρ(t)|``), with
    the predicted ``|ρ(t)|`` dashed.  Bottom row: the largest principal angle (radians, log
    scale) between the learning subspaces of ``W_l`` and the invariant subspaces
    ``V_{l,1}``, ``U_{l,1}`` of the initialisation, and between ``U_l`` and ``V_{l+1}``, each
    at its own step from ``t = 0``; exact zeros are drawn at ``ANGLE_FLOOR``.

    Parameters
    ----------
    path : str
        Output file (PNG).
    steps : (n,) int
        Recorded steps.
    singular_values : (n, L, d) float
        Descending singular values of every layer at ``steps``.
    rho : (T + 1,) float
        Predicted ρ(t) for ``t = 0..T`` (:func:`deeplinear.parsimony.rho_schedule`).
    rank : int
        r.
    angles_right, angles_left : (n, L) float
        Largest principal angle per record and layer (NaN: not measured).
    angles_align : (n, L − 1) float
    xscale : {"linear", "symlog"}
        Step axis: linear, or linear up to ``linthresh`` then logarithmic (shows ``t = 0`` and
        a fast early phase together).
    """
    if xscale not in ("linear", "symlog"):
        raise ValueError(f"xscale: must be 'linear' or 'symlog', got {xscale!r}")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    steps = np.asarray(steps)
    sv = np.asarray(singular_values)
    n, L, d = sv.shape
    rho = np.asarray(rho)
    t_rho = np.arange(len(rho))
    rho_at = np.abs(rho[steps])

    fig = Figure(figsize=(4.0 * L + 0.6, 7.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, L, sharex=True, squeeze=False)
    colors = {"top": "tab:blue", "block": "tab:orange", "bulk": "0.78"}
    for l in range(L):
        ax = axes[0, l]
        s = sv[:, l, :]
        bulk = np.abs(s - rho_at[:, None]) <= bulk_tol * np.maximum(s[:, :1], np.finfo(float).tiny)
        # curves by sorted index (a block value crossing the bulk changes index), one artist
        # per colour
        ax.plot(*_polyline(steps, np.where(bulk, s, np.nan)), color=colors["bulk"], lw=3.5)
        # block curves start from the record before they leave the bulk (e.g. t = 0, where
        # every value is ε)
        leave = ~bulk
        leave[:-1] |= ~bulk[1:]
        blk = np.where(leave, s, np.nan)
        ax.plot(*_polyline(steps, blk[:, rank:]), color=colors["block"], lw=1.2)
        ax.plot(*_polyline(steps, blk[:, :rank]), color=colors["top"], lw=1.2)
        ax.plot(t_rho, np.abs(rho), color="k", ls="--", lw=1.3)
        ax.set_title(f"layer {l + 1}: singular values of $W_{{{l + 1}}}$")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        if l == 0:
            ax.set_ylabel("singular value")
            ax.legend(handles=[
                Line2D([], [], color=colors["top"], lw=1.2, label=f"top {rank}"),
                Line2D([], [], color=colors["block"], lw=1.2, label=f"rest of the {2 * rank}×{2 * rank} block"),
                Line2D([], [], color=colors["bulk"], lw=3.5, label=f"bulk ({d - 2 * rank} values)"),
                Line2D([], [], color="k", ls="--", lw=1.3, label=r"predicted $|\rho(t)|$"),
            ], fontsize=8, loc="lower left")

        ax = axes[1, l]
        series = [(angles_right[:, l], rf"$\angle(V_{{{l + 1}}}(t),\, V_{{{l + 1},1}})$",
                   dict(color="tab:green", marker="o", ms=4.5, mfc="none", mew=0.8)),
                  (angles_left[:, l], rf"$\angle(U_{{{l + 1}}}(t),\, U_{{{l + 1},1}})$",
                   dict(color="tab:purple", marker="s", ms=1.8))]
        if l + 1 < L:
            series.append((angles_align[:, l], rf"$\angle(U_{{{l + 1}}}(t),\, V_{{{l + 2}}}(t))$",
                           dict(color="tab:red", marker="^", ms=2.5)))
        top = ANGLE_FLOOR
        for y, label, style in series:
            y = np.asarray(y, dtype=float)
            ok = np.isfinite(y)
            if ok.any():
                top = max(top, float(y[ok].max()))
            ax.plot(steps[ok], np.maximum(y[ok], ANGLE_FLOOR), ls="none", label=label, **style)
        ax.set_yscale("log")
        ax.set_ylim(ANGLE_FLOOR / 3, min(10.0, max(1e-6, 1e3 * top)))
        ax.set_xlabel("step t")
        ax.grid(alpha=0.3, which="major")
        ax.set_title(f"layer {l + 1}: largest principal angle (rad)")
        ax.legend(fontsize=8, loc="upper right")
        if l == 0:
            ax.set_ylabel(f"angle (rad); 0 drawn at {ANGLE_FLOOR:.0e}")
    for ax in axes.flat:
        if xscale == "symlog":
            ax.set_xscale("symlog", linthresh=linthresh)
        ax.set_xlim(0, steps[-1] if steps[-1] > 0 else 1)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110)


def _polyline(x: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The columns of ``ys`` (n × k) as one polyline broken by NaN: one artist instead of k."""
    n, k = ys.shape
    xx = np.empty((k, n + 1))
    yy = np.empty((k, n + 1))
    xx[:, :n] = x
    yy[:, :n] = ys.T
    xx[:, n] = yy[:, n] = np.nan
    return xx.ravel(), yy.ravel()
