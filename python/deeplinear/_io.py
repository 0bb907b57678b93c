"""Atomic file writes: a crash never leaves a torn result or checkpoint."""

from __future__ import annotations

import json
import os
import tempfile
import tokenize
import zipfile
import zlib
from typing import Any

import numpy as np


def atomic_savez(path: str | os.PathLike, arrays: dict) -> None:
    """``np.savez`` to a temporary file in the target's folder, flushed to disk, then renamed
    over ``path`` (a rename is atomic): readers see the old file or the new one, never half."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".deeplinear-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; these are ordinary files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def as_path(path: Any, name: str) -> str:
    """``os.fspath(path)``, or a TypeError naming ``name`` for what is not a path."""
    try:
        return os.fsdecode(os.fspath(path))  # bytes paths as str: tempfile and os.path mix them with str
    except TypeError:
        raise TypeError(f"{name}: must be a path (str or os.PathLike), got {type(path).__name__}") from None


def check_writable(path: str | os.PathLike, name: str) -> str:
    """``path`` as a string, after checking that a file can be written there (its folder exists
    and is writable, it is not a folder): a ``ValueError`` naming ``name`` otherwise, before any
    work is done."""
    path = as_path(path, name)
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError(f"{name}: {path!r} is a folder, not a file")
    if not os.path.isdir(directory):
        raise ValueError(f"{name}: the folder {directory!r} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ValueError(f"{name}: the folder {directory!r} is not writable")
    return path


# What reading a file that is not the expected .npz may raise (a plain .npy, a corrupt or
# truncated zip, a bad header): turned into a ValueError naming the file.
# What reading a damaged or foreign file can raise (an unsupported compression method, a
# corrupt deflate stream, an unparsable .npy header, a shape too large to allocate): reported
# as a ValueError naming the file.
READ_ERRORS = (OSError, EOFError, KeyError, TypeError, ValueError, AttributeError, zipfile.BadZipFile,
               json.JSONDecodeError, NotImplementedError, zlib.error, tokenize.TokenError, MemoryError)


def open_npz(path: str | os.PathLike, name: str, what: str, format_prefix: str):
    """``(npz, header)``: an ``.npz`` file written by this package and its JSON header (a
    dict whose ``"format"`` starts with ``format_prefix``); a ``ValueError`` naming ``name``
    and saying the file is not ``what`` otherwise.  The caller closes ``npz``."""
    path = as_path(path, name)
    fh = open(path, "rb")  # ours: np.load leaves its own file open when the zip is corrupt
    try:
        z = np.load(fh, allow_pickle=False)
    except READ_ERRORS as exc:
        fh.close()
        raise ValueError(f"{name}: cannot read {path!r} as {what} ({type(exc).__name__}: {exc})") from exc
    if not isinstance(z, np.lib.npyio.NpzFile):
        fh.close()
        raise ValueError(f"{name}: {path!r} is a single .npy array, not {what}")
    z.fid = fh  # closed with z (NpzFile.close closes its fid)
    try:
        header = json.loads(str(z["__header__"][()]))
        if not isinstance(header, dict) or not str(header.get("format", "")).startswith(format_prefix):
            raise ValueError("no format entry" if not isinstance(header, dict) else
                             f"format {header.get('format')!r}")
    except READ_ERRORS as exc:
        z.close()
        raise ValueError(f"{name}: {path!r} is not {what} (its header: {type(exc).__name__}: {exc})") from exc
    return z, header
