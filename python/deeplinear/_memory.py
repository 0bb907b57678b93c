"""Up-front memory checks: sizes that cannot fit are refused with a clear error instead of an
allocation failure (or the OOM killer) in the middle of a run."""

from __future__ import annotations

import os


SMALL_BYTES = 16 * 2**20  # below this a request is not checked (see require)


def available_bytes() -> int | None:
    """Memory this process can still use: MemAvailable, capped by a cgroup limit if any."""
    avail = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = None
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as fh:
                text = fh.read().strip()
            if text != "max":
                limit = int(text)
                usage_path = path.replace("memory.max", "memory.current").replace("limit_in_bytes", "usage_in_bytes")
                with open(usage_path) as fh:
                    used = int(fh.read().strip())
                room = max(limit - used, 0)
                avail = room if avail is None else min(avail, room)
            break
        except (OSError, ValueError):
            continue
    return avail


def require(nbytes: int, what: str, name: str) -> None:
    """``ValueError`` naming ``name`` when ``nbytes`` exceeds the memory available.  Sizes up to
    :data:`SMALL_BYTES` pass without reading /proc and /sys (~0.3 ms: every training call of a
    compressed network's 2r × 2r blocks would pay it)."""
    if nbytes <= SMALL_BYTES:
        return
    avail = available_bytes()
    if avail is not None and nbytes > avail:
        raise ValueError(f"{name}: {what} needs {nbytes / 2**30:.2f} GiB but only "
                         f"{avail / 2**30:.2f} GiB of memory is available")


def training_bytes(dims, n_cols: int, itemsize: int, optimizer_buffers: int, input_layer: bool) -> int:
    """Workspace of a training run besides the weights: gradients, optimizer state, prefix
    products and backward-sweep buffers (see cpp/include/deeplinear/network.hpp)."""
    layers = sum(dims[l] * dims[l - 1] for l in range(1, len(dims)))
    acts = sum(dims[l] * n_cols for l in range(1, len(dims)))
    prefix = acts - (0 if input_layer else dims[1] * n_cols)
    return itemsize * (layers * (1 + optimizer_buffers) + acts + prefix)
