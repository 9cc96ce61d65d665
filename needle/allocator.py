"""Keeping freed memory for the next step: glibc malloc's trimming, turned off for training.

A training step allocates its graph's arrays and frees them all at the next `reset_grad`.
With glibc's default settings the freed top of the heap goes back to the kernel and every
page is faulted in (and zeroed) again on the next step: the MNIST CNN of
benchmarks/conv_step.py, trained alone in a process on one BLAS thread, took 7,700 page
faults and 57 ms a step at batch 128 that way and 1 fault and 47 ms with the memory kept;
2,200 faults and 15.1 ms against 1 and 11.9 ms at batch 32 (`benchmarks/alone_step.py`).
PyTorch users get the same from jemalloc or tcmalloc.

`retain_freed_memory()` sets, once per process, glibc's trim threshold to 1 GiB (freed
memory is kept up to that much) and its mmap threshold to 32 MiB, its largest (arrays below
that come from the heap, which is kept, instead of a fresh mapping each time; setting either
threshold stops glibc adapting them). The process then keeps its peak resident set, as any
long training process does. needle's training loop (`needle.train.loop.run_batches`, so
`needle train`, `fit` and `epoch`) calls it; a loop of one's own can too. Nothing happens
off glibc (macOS, Windows, musl), or with `NEEDLE_MALLOC=default` in the environment.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

TRIM_THRESHOLD = 2**30  # bytes of freed memory kept at the top of the heap
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest: DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
OPT_OUT = "NEEDLE_MALLOC"

_applied: bool | None = None  # None: not tried yet in this process


def retain_freed_memory() -> bool:
    """Keep freed memory for reuse instead of returning it to the kernel (see the module's
    docstring). Returns whether the settings are in effect; tries once per process."""
    global _applied
    if _applied is None:
        _applied = _set_thresholds()
    return _applied


def _set_thresholds() -> bool:
    if os.environ.get(OPT_OUT, "").strip().lower() == "default":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    # mallopt returns 1 on success, 0 for a value it refuses.
    return bool(
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
