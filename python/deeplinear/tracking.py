"""What ``dl.train(..., track=...)`` records: :class:`Tracking`.

``track="incremental"`` is shorthand for ``track=dl.Tracking("incremental")``; the settings of a
mode are given as ``dl.Tracking("incremental", every=10, k=20, tol=1e-10)``.  Each setting is
validated here, once, when the object is made; a setting that belongs to another mode is
refused (``tol`` and ``max_iter`` are the incremental mode's, ``verify_every`` the structured
mode's), never ignored.
"""

from __future__ import annotations

from typing import Any

from . import _validation as V

MODES = ("full", "incremental", "structured")


class Tracking:
    """Singular values and learning-subspace angles of every layer, recorded during training.

    Parameters
    ----------
    mode : {"full", "incremental", "structured"}
        ``"full"``: an exact SVD of every layer per record.  ``"incremental"``: the top ``k``
        singular triplets by a warm-started block Krylov iteration, each record's values
        certified to within ``tol``·s₁ of the exact ones (else a full SVD after ``max_iter``
        block steps).  ``"structured"`` (factorization, orthogonal init, GD or momentum): the
        exact values from one ``2r × 2r`` SVD per layer plus ρ(t).  For a
        :class:`~deeplinear.CompressedNetwork` every mode records the exact values of the wide
        network, from the blocks' SVDs plus ``d − 2r`` copies of |ρ(t)| (no lift).

        Cost of a record of a wide network, relative to one plain training step (measured at
        d = 1000, L = 3, 2r = 20 on 2 cores): structured ~0.02, incremental ~0.10-0.12 (four thin
        products with every layer), full ~8 (an SVD of every layer).  A call's first record
        also computes the reference basis (~0.1 s at d = 1000); a later call on the same
        network reuses it.  Record less often with ``every`` where that matters.
    every : int
        Record every this many steps (and at the last step).
    k : int, optional
        The top ``k`` and bottom ``k`` singular values (all when None); incremental: the top
        ``k`` (default 2r, or every value without a reference basis).
    tol : float, optional
        Incremental only: the certified error of the values relative to s₁ (default 1e-10).
    max_iter : int, optional
        Incremental only: block steps before the fallback to a full SVD (default 10; a record
        whose safeguard against a missed value needs three steps falls back below 3).
    verify_every : int, optional
        Structured (wide network) only: compare with a full SVD every this many records.
    basis : InvariantBasis, optional
        Reference subspaces for the angles (and the basis of ``"structured"``); by default the
        invariant basis of a factorization (:func:`deeplinear.invariant_basis`) where it exists.
        A compressed network is tracked against its own basis (refused there).
    """

    def __init__(self, mode: str, *, every: int = 1, k: int | None = None, tol: float | None = None,
                 max_iter: int | None = None, verify_every: int | None = None, basis: Any = None) -> None:
        from .parsimony import InvariantBasis

        self.mode = V.choice(mode, "track", MODES)
        self.every = V.integer(every, "every", low=1)
        self.k = V.integer(k, "k", low=1, allow_none=True)
        self.tol = V.real(tol, "tol", low=0.0, low_open=True, allow_none=True)
        self.max_iter = V.integer(max_iter, "max_iter", low=1, allow_none=True)
        self.verify_every = V.integer(verify_every, "verify_every", low=0, allow_none=True)
        if basis is not None and not isinstance(basis, InvariantBasis):
            raise TypeError(f"basis: must be an InvariantBasis, got {type(basis).__name__}")
        self.basis = basis
        for name in ("tol", "max_iter"):
            if getattr(self, name) is not None and self.mode != "incremental":
                raise ValueError(f"{name}: applies to incremental tracking only, not {self.mode!r}")
        if self.verify_every is not None and self.mode != "structured":
            raise ValueError(f"verify_every: applies to structured tracking only, not {self.mode!r}")

    @classmethod
    def of(cls, track: Any) -> "Tracking | None":
        """``track=`` of :func:`deeplinear.train` as a Tracking (None stays None)."""
        if track is None or isinstance(track, Tracking):
            return track
        if isinstance(track, str):
            return cls(track)
        raise TypeError(f"track: must be None, 'full', 'incremental', 'structured' or a dl.Tracking, "
                        f"got {type(track).__name__}")

    def settings(self) -> dict:
        """The settings with their defaults filled in (what a checkpoint's fingerprint holds)."""
        return {"mode": self.mode, "every": self.every, "k": self.k,
                "tol": 1e-10 if self.tol is None else self.tol,
                "max_iter": 10 if self.max_iter is None else self.max_iter,
                "verify_every": 0 if self.verify_every is None else self.verify_every}

    def __repr__(self) -> str:
        given = {k: v for k, v in (("every", self.every), ("k", self.k), ("tol", self.tol),
                                   ("max_iter", self.max_iter), ("verify_every", self.verify_every))
                 if v is not None and not (k == "every" and v == 1)}
        extra = "".join(f", {k}={v!r}" for k, v in given.items())
        return f"Tracking({self.mode!r}{extra}{', basis=...' if self.basis is not None else ''})"
