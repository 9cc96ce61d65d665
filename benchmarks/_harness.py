"""What the step benchmarks share: timing a step with its page faults, the heap shift each
fresh process makes first, the medians over processes, the resident set, and glibc's
tuned-malloc settings."""

from __future__ import annotations

import os
import random
import resource
import statistics
import time

TUNED_MALLOC = {"MALLOC_TRIM_THRESHOLD_": str(2**30), "MALLOC_MMAP_THRESHOLD_": str(2**30)}


def time_steps(step, batches, steps: int) -> tuple[float, float]:
    """Seconds per step and minor page faults per step over `steps` steps."""
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    for k in range(steps):
        step(*batches[k % len(batches)])
    seconds = (time.perf_counter() - start) / steps
    return seconds, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps


def alternate(
    needle_step, numpy_step, needle_batches, numpy_batches, rounds: int, steps: int, settle: int = 1
):
    """One warm-up pass of each side (caches, allocator, BLAS threads), then `rounds`
    alternating rounds of `settle` untimed and `steps` timed steps each; the medians of both
    sides' per-step times (ms) and page faults, and their ratio.

    The untimed steps measure each side in its steady state, as a training run is: the first
    step after the other side ran finds the heap laid out by the other side's arrays, and
    glibc trims and faults it back in (at ResNet-9 batch 32, alternating one step of each
    side, needle took 184 page faults a step, against 1.5 with needle alone)."""
    time_steps(needle_step, needle_batches, steps)
    time_steps(numpy_step, numpy_batches, steps)
    needle_runs, numpy_runs = [], []
    for _ in range(rounds):
        if settle:
            time_steps(needle_step, needle_batches, settle)
        needle_runs.append(time_steps(needle_step, needle_batches, steps))
        if settle:
            time_steps(numpy_step, numpy_batches, settle)
        numpy_runs.append(time_steps(numpy_step, numpy_batches, steps))
    needle_ms = statistics.median(t for t, _ in needle_runs) * 1e3
    numpy_ms = statistics.median(t for t, _ in numpy_runs) * 1e3
    return {
        "needle_ms": needle_ms,
        "numpy_ms": numpy_ms,
        "ratio": needle_ms / numpy_ms,
        "needle_faults": statistics.median(f for _, f in needle_runs),
        "numpy_faults": statistics.median(f for _, f in numpy_runs),
    }


def shift_heap(seed: int) -> list[bytearray]:
    """Hold 0–1 MiB of small blocks (and an odd-sized one) so that everything allocated
    after them lands at a different offset in the heap. The floor's speed moves by up to
    ~10 % with where its arrays land (with how much the process allocated before: even the
    directory a script is started from changes it); processes with different seeds sample
    layouts instead of measuring every version of the code at one fixed, arbitrary one."""
    rng = random.Random(seed)
    return [bytearray(4096) for _ in range(rng.randrange(256))] + [bytearray(rng.randrange(4096))]


def summarize(runs: list[dict[str, float]]) -> dict[str, float]:
    """Medians over the processes' rows, plus the range of their ratios."""
    row = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    row["ratio_min"] = min(run["ratio"] for run in runs)
    row["ratio_max"] = max(run["ratio"] for run in runs)
    return row


def median_ms(step, batches, rounds: int, steps: int) -> float:
    """The median over `rounds` rounds of `steps` steps of one side alone, ms a step, after
    one untimed round (caches, allocator, threads): for a side timed in a process of its own."""
    times = []
    for r in range(rounds + 1):
        start = time.perf_counter()
        for k in range(steps):
            step(*batches[k % len(batches)])
        if r:
            times.append((time.perf_counter() - start) / steps)
    return statistics.median(times) * 1e3


def resident_bytes() -> int:
    """The process's resident set now (Linux's /proc; elsewhere its peak so far)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_growth_mb(step, batches, steps: int) -> float:
    """MB by which the process's peak resident set grows over `steps` steps of `step`."""
    before = resident_bytes()
    for k in range(steps):
        step(*batches[k % len(batches)])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return max(peak - before, 0) / 2**20
