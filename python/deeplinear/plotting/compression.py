"""Figures of exact compression (MATH.md §3): wide vs compressed training
(``deeplinear run equivalence``) and the time per step (``deeplinear run iteration-time``)."""

from __future__ import annotations

import numpy as np


def plot_equivalence(path: str, *, comp_loss, wide_loss, rel, floor, c_steps, sv_c, rho_c, w_steps,
                     sv_w, rank2: int, loss_tol: float = 1e-10, title: str = "") -> None:
    """Loss curves (log y), their relative difference, and per-layer singular values (layer 1
    on the left): compressed as lines (2r block values, |ρ| dashed), wide as markers (its 2r
    learning values and the bulk, from an exact SVD of the d × d weights)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    L = sv_c.shape[1]
    n_wide = len(wide_loss) - 1
    zoom = n_wide < 0.2 * (len(comp_loss) - 1)  # the wide run covers only the start: zoom on it
    fig = Figure(figsize=(4.2 * max(L, 2), 11.0 if zoom else 7.6), layout="constrained")
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(3 if zoom else 2, max(L, 2))
    half = max(L, 2) // 2
    ax = fig.add_subplot(gs[0, :half + (max(L, 2) % 2)])
    ax.semilogy(np.arange(len(comp_loss)), comp_loss, color="C0", lw=2, label="compressed (2r × 2r blocks + ρ)")
    ax.semilogy(np.arange(len(wide_loss)), wide_loss, color="C3", ls="--", lw=1.5, label="wide (d × d)")
    if len(wide_loss) < len(comp_loss):
        ax.axvline(len(wide_loss) - 1, color="C3", lw=0.8, alpha=0.5)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("loss")
    ax.legend(fontsize=8)
    ax2 = fig.add_subplot(gs[0, half + (max(L, 2) % 2):])
    tiny = 1e-17
    ax2.semilogy(np.arange(len(rel)), np.maximum(rel, tiny), color="C3", lw=1, label="|wide − compressed| / compressed")
    ax2.semilogy(np.arange(len(floor)), np.maximum(floor, tiny), color="0.5", lw=0.8, alpha=0.8,
                 label="round-off floor (compressed, target perturbed by 1 ulp)")
    ax2.axhline(loss_tol, color="k", ls=":", lw=0.8, label=f"{loss_tol:g}")
    ax2.set_xlabel("step")
    ax2.set_ylabel("relative loss difference")
    ax2.set_title("relative loss difference (0 drawn at 1e-17)", fontsize=10)
    ax2.legend(fontsize=7)
    for l in range(L):
        a = fig.add_subplot(gs[1, l])
        for i in range(rank2):
            a.semilogy(c_steps, sv_c[:, l, i], color="C0", lw=1.2, label="compressed: block" if i == 0 else None)
        a.semilogy(c_steps, np.abs(rho_c), color="C0", ls="--", lw=1.2, label="compressed: |ρ| (d − 2r values)")
        for k, s in enumerate(w_steps):
            learn, bulk = _learning_and_bulk(sv_w[k, l], rank2)
            a.semilogy(np.full(rank2, s), learn, "o", ms=4, mfc="none", color="C3",
                       label="wide: learning values" if k == 0 else None)
            a.semilogy([s], [bulk], "s", ms=4, mfc="none", color="C2", label="wide: bulk" if k == 0 else None)
        a.set_title(f"layer {l + 1}: singular values")
        a.set_xlabel("step")
        if l == 0:
            a.legend(fontsize=7)
        if zoom:
            z = fig.add_subplot(gs[2, l])
            m = c_steps <= n_wide
            for i in range(rank2):
                z.plot(c_steps[m], sv_c[m, l, i], color="C0", lw=1.0)
            z.plot(c_steps[m], np.abs(rho_c[m]), color="C0", ls="--", lw=1.0)
            for k, s in enumerate(w_steps):
                learn, bulk = _learning_and_bulk(sv_w[k, l], rank2)
                z.plot(np.full(rank2, s), learn, "o", ms=4, mfc="none", color="C3")
                z.plot([s], [bulk], "s", ms=4, mfc="none", color="C2")
            z.set_title(f"layer {l + 1}: zoom on the wide run (steps 0..{n_wide})", fontsize=9)
            z.set_xlabel("step")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)


def _learning_and_bulk(s: np.ndarray, rank2: int) -> tuple[np.ndarray, float]:
    """Of one layer's singular values: the 2r farthest from the bulk (the median, in s²), and
    the median (the bulk value |ρ|)."""
    med = float(np.median(s))
    idx = np.argsort(-np.abs(s * s - med * med), kind="stable")[:rank2]
    return np.sort(s[idx])[::-1], med


def plot_iteration_time(path: str, *, d, wide, compressed, reduced, title: str = "") -> None:
    """Time per step vs d, log-log, with a d³ guide through the wide points."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for y, lab, st in ((wide, "wide (d × d)", "o-"), (compressed, "compressed (compress + 2r × 2r)", "s-"),
                       (reduced, "reduced (no d × d matrix)", "^-")):
        m = np.isfinite(y)
        if m.any():
            ax.loglog(d[m], y[m], st, label=lab)
    m = np.isfinite(wide)
    if m.sum() >= 1:
        d0, w0 = d[m][-1], wide[m][-1]
        xs = np.array([d[m][0], d[m][-1]], dtype=float)
        ax.loglog(xs, w0 * (xs / d0) ** 3, ":", color="0.5", label="∝ d³")
    ax.set_xlabel("width d")
    ax.set_ylabel("seconds per GD step")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.savefig(path, dpi=110)
