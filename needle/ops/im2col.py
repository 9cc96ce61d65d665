"""The array work under the conv ops: every window of a padded NHWC image as a row of one
matrix (`im2col`), its adjoint (`col2im`), and which kernel taps read the image at all
(`used_taps`): a tap that reads only padding multiplies zeros for every output, and the conv
ops skip it.

Plain functions of arrays, through the array primitives of `needle.ops.strided`: the ops in
`needle.ops.conv` are built on them.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

from needle.ops import strided

ALL = slice(None)


Taps = tuple[range, range]


@functools.lru_cache(maxsize=1024)
def used_offsets(size: int, kernel: int, stride: int, padding: int) -> range:
    """The kernel offsets along one axis from the first to the last that reads the input
    itself for some output, not only its zero padding: offset d reads the input's row
    i·s + d − p for outputs i in [0, out). Every offset outside the run multiplies zeros, for
    every output (at a 1×1 map, a 3×3 kernel with padding 1 reads the input at its centre
    tap alone); at a stride above 1 an offset inside it may too, and is kept. Cached: each
    conv asks four times a step."""
    out = (size + 2 * padding - kernel) // stride + 1
    used = []
    for d in range(kernel):
        first = max(0, -((d - padding) // stride))  # the first i with i·s + d − p ≥ 0
        if first < out and first * stride + d - padding < size:
            used.append(d)
    return range(used[0], used[-1] + 1) if used else range(0)


def used_taps(shape: tuple[int, ...], kernel: int, stride: int, padding: int) -> Taps:
    """The kernel rows and columns an NHWC input of `shape` reads itself at."""
    return tuple(used_offsets(n, kernel, stride, padding) for n in shape[1:3])


def im2col(a: Any, kernel: int, stride: int, padding: int) -> tuple[Any, tuple[int, int, int]]:
    """Every window of the padded NHWC `a` as one row, at the kernel taps that read `a`
    itself (`used_taps`): the (N·Ho·Wo, Kh·Kw·Cin) matrix (one copy, of the window view), and
    (N, Ho, Wo). The other taps would add columns of zeros: no copy, no product for them."""
    n, h, w, c = a.shape
    p, s = padding, stride
    ho, wo = (h + 2 * p - kernel) // s + 1, (w + 2 * p - kernel) // s + 1
    rows, columns = used_taps(a.shape, kernel, s, p)
    if not rows or not columns:  # every window lies in the padding: no column at all
        return strided.zeros((n * ho * wo, 0), like=a), (n, ho, wo)
    inside = (
        rows.start >= p
        and columns.start >= p
        and rows.start + s * (ho - 1) + len(rows) <= p + h
        and columns.start + s * (wo - 1) + len(columns) <= p + w
    )
    if inside:  # every window read lies in `a`: no padded copy
        origin = strided.read(
            a, (ALL, slice(rows.start - p, None), slice(columns.start - p, None), ALL)
        )
    else:
        padded = strided.pad(a, ((0, 0), (p, p), (p, p), (0, 0)))
        origin = strided.read(
            padded, (ALL, slice(rows.start, None), slice(columns.start, None), ALL)
        )
    view = strided.windows(origin, (len(rows), len(columns)), s, count=(ho, wo))
    if c == 1:
        return _single_channel_columns(view), (n, ho, wo)
    return strided.reshape(view, (n * ho * wo, len(rows) * len(columns) * c)), (n, ho, wo)


def _single_channel_columns(view: Any) -> Any:
    """im2col's matrix of a one-channel image batch from its (N, Ho, Wo, Kh, Kw, 1) window
    view, copied one kernel tap at a time into a tap-major (Kh·Kw, N·Ho·Wo) array and seen
    transposed (a view). The one copy of the whole view runs numpy's inner loop over a
    window row of Kw entries; a tap's copy runs it over a row of Wo outputs. At an MNIST
    CNN's first layer (batch 128, 28×28, 3×3) that took 2.26 ms the one way and 0.46 ms
    the other, and the products with the matrix were as fast or faster (its kernel
    gradient's 0.90 → 0.79 ms)."""
    n, ho, wo, kh, kw, _ = view.shape
    taps = strided.zeros((kh, kw, n, ho, wo, 1), like=view)
    tap_first = strided.permute(view, (3, 4, 0, 1, 2, 5))  # (Kh, Kw, N, Ho, Wo, 1)
    for di in range(kh):
        for dj in range(kw):
            at = (slice(di, di + 1), slice(dj, dj + 1), ALL, ALL, ALL, ALL)
            strided.write(taps, at, strided.read(tap_first, at))
    return strided.permute(strided.reshape(taps, (kh * kw, n * ho * wo)), (1, 0))


def cropped_kernel(b: Any, taps: Taps) -> Any:
    """The kernel (K, K, Cin, Cout) at the taps `taps`, as a (Kh·Kw·Cin, Cout) matrix."""
    rows, columns = taps
    part = strided.read(
        b, (slice(rows.start, rows.stop), slice(columns.start, columns.stop), ALL, ALL)
    )
    return strided.reshape(part, (len(rows) * len(columns) * b.shape[2], b.shape[3]))


def tap_reads(d: int, size: int, out: int, stride: int, padding: int) -> tuple[slice, slice]:
    """For kernel offset d along one axis: the outputs i whose window reads a real row at
    it (0 ≤ i·s + d − p < size), and the rows they read, as slices (empty when none)."""
    first = max(0, -((d - padding) // stride))
    last = min(out - 1, (size - 1 + padding - d) // stride)
    if first > last:
        return slice(0, 0), slice(0, 0)
    start = first * stride + d - padding
    return slice(first, last + 1), slice(start, start + (last - first) * stride + 1, stride)


def col2im(g: Any, b: Any, size: tuple[int, int], stride: int, padding: int) -> Any:
    """The adjoint of conv in its input: each window's share of g · bᵀ added back where the
    window read the input (what it read of the padding is dropped); an (N, H, W, Cin) array
    for `size` (H, W).

    One product per kernel tap (di, dj), g (N·Ho·Wo, Cout) · b[di, dj]ᵀ, is a compact
    (N, Ho, Wo, Cin) block; the part of it whose windows read the input at that tap goes
    into the rows and columns read. One product for every tap at once would be the same
    arithmetic, but its (N, Ho, Wo, K, K, Cin) result is read back Cin entries at a time: at
    an MNIST CNN's second layer (batch 128, 16→32 channels, stride 2) the sum took 15.5 ms
    that way and 9.6 ms tap by tap. Adding into the input's shape itself, not a padded one
    cut down after, saves a copy of the gradient.

    The taps that between them read every input entry once (`covering_offsets`) come first
    and are written, not added: at a stride of 2, four of the nine taps of a 3×3 kernel; at
    a stride of 1 the centre tap. At that second layer col2im took 9.9 ms adding all nine,
    8.3 ms so. (The centre tap's block at a stride of 1, the whole gradient's shape, could be
    the gradient itself, saving the zeros and a write: 0.03–0.17 ms at ResNet-9's layers,
    within the step's noise; left, for one way of filling the gradient.)"""
    n, ho, wo, c_out = g.shape
    kernel, _, c_in, _ = b.shape
    rows = strided.reshape(g, (n * ho * wo, c_out))
    plan = col2im_plan(size, (ho, wo), kernel, stride, padding)
    out = strided.zeros((n, *size, c_in), like=g)
    taps = strided.permute(b, (0, 1, 3, 2))  # each tap's (Cout, Cin) block, as views
    for tap in plan:
        share = strided.reshape(
            strided.matmul(rows, strided.read(taps, (tap.di, tap.dj))), (n, ho, wo, c_in)
        )
        if tap.write:
            strided.write(out, tap.reads, strided.read(share, tap.outputs))
        else:
            strided.add_into(out, tap.reads, strided.read(share, tap.outputs))
    return out


class TapShare(NamedTuple):
    """One kernel tap's part in col2im: which entries of its (N, Ho, Wo, C) block read the
    input (`outputs`), the input entries they read (`reads`), and whether they are written
    there (the tap is one of those that read each entry once, and comes before the rest) or
    added."""

    di: int
    dj: int
    outputs: tuple
    reads: tuple
    write: bool


@functools.lru_cache(maxsize=1024)
def col2im_plan(
    size: tuple[int, int], out: tuple[int, int], kernel: int, stride: int, padding: int
) -> tuple[TapShare, ...]:
    """The kernel taps whose windows read the input (H, W) = `size` for some of the
    (Ho, Wo) = `out` outputs: col2im's loop, worked out once per geometry (a tap that reads
    only padding is left out: it adds nothing). When `covering_offsets` finds offsets along
    both axes that read every row and column once, the taps made of them come first, to be
    written; the others follow, in order, to be added."""
    (h, w), (ho, wo) = size, out
    used_rows, used_columns = (used_offsets(n, kernel, stride, padding) for n in size)
    covering_rows = covering_offsets(h, ho, kernel, stride, padding)
    covering_columns = covering_offsets(w, wo, kernel, stride, padding)
    writes, adds = [], []
    for di in used_rows:
        outputs_i, read_rows = tap_reads(di, h, ho, stride, padding)
        for dj in used_columns:
            outputs_j, read_columns = tap_reads(dj, w, wo, stride, padding)
            if outputs_i.stop == outputs_i.start or outputs_j.stop == outputs_j.start:
                continue
            outputs, reads = (ALL, outputs_i, outputs_j, ALL), (ALL, read_rows, read_columns, ALL)
            write = di in covering_rows and dj in covering_columns
            (writes if write else adds).append(TapShare(di, dj, outputs, reads, write))
    return (*writes, *adds)


@functools.lru_cache(maxsize=1024)
def covering_offsets(size: int, out: int, kernel: int, stride: int, padding: int) -> tuple:
    """Kernel offsets along one axis whose reads (`tap_reads`) are each input row exactly
    once between them: for each class of rows r, r + s, r + 2s, … (r < s, the stride),
    the first offset that reads all of that class. Empty when some class has no such
    offset (a stride wider than the kernel leaves rows no window reads; an input longer
    than the windows reach leaves its last rows unread)."""
    chosen = []
    for first in range(min(stride, size)):
        for d in range(kernel):
            _, reads = tap_reads(d, size, out, stride, padding)
            if reads.start == first < reads.stop and reads.stop - 1 + stride >= size:
                chosen.append(d)
                break
        else:
            return ()
    return tuple(chosen)
