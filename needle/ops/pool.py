"""Pooling of NHWC images: `maxpool2d` and `avgpool2d` over K×K windows every s rows and
columns (no padding), out[n, i, j, c] = max or mean of a[n, i·s + di, j·s + dj, c] over
0 ≤ di, dj < K, of shape (N, (H − K)//s + 1, (W − K)//s + 1, C).

Each computes with K² strided reads, one per window position (di, dj): the (N, Ho, Wo, C)
view of the entries every window holds there. The gradients are ops of their own and
linear in out_grad, so they can be differentiated again:

- avgpool's gradient adds out_grad / K² back to every position (`AvgPoolInputGrad`); its
  gradient is avgpool itself (⟨u, spread(g)⟩ = ⟨avgpool(u), g⟩).
- maxpool's gradient routes out_grad to each window's maximum (`MaxPoolScatter`), and the
  gradient of that is reading a cotangent at those same places (`MaxPoolGather`), and back.
  Which entry is each window's maximum depends on `a` only through comparisons, so the
  gradient in `a` of either is zero (None) away from ties.

Ties: when several entries of a window equal its maximum, the first in row-major window
order (smallest di, then smallest dj) takes the whole gradient, as argmax picks.
"""

from __future__ import annotations

from typing import Any

from needle.autograd import Tensor, TensorOp
from needle.backend_ndarray import api
from needle.errors import UsageError
from needle.ops import pool_cases, strided
from needle.ops.registry import OpParam, Setting, distinct, register

ALL = slice(None)


def _integer(value: Any, name: str, op: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{op}: {name} must be an integer ≥ 1 (got {value!r})")
    return value


class PoolOp(TensorOp):
    """The settings every pooling op carries: `kernel` K ≥ 1, `stride` s ≥ 1 (None: K, so
    windows tile the image without overlap)."""

    name = "pool"

    def __init__(self, kernel: int, stride: int | None = None):
        self.kernel = _integer(kernel, "kernel", self.name)
        self.stride = self.kernel if stride is None else _integer(stride, "stride", self.name)

    def out_size(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """(Ho, Wo) for an NHWC input of `shape`; a shape that is not NHWC, or a kernel
        larger than the image, is refused."""
        if len(shape) != 4:
            raise UsageError(f"{self.name} takes an NHWC input (N, H, W, C), got shape {shape}")
        h, w = shape[1:3]
        if self.kernel > min(h, w):
            raise UsageError(
                f"{self.name}: kernel size {self.kernel} is larger than the input {h}×{w}"
            )
        return (h - self.kernel) // self.stride + 1, (w - self.kernel) // self.stride + 1

    def positions(self, shape: tuple[int, ...]) -> list[strided.Index]:
        """For each window position (di, dj), in row-major order, the index of the entries
        every window holds there: an (N, Ho, Wo, C) view when read."""
        ho, wo = self.out_size(shape)
        k, s = self.kernel, self.stride
        return [
            (ALL, slice(di, di + s * (ho - 1) + 1, s), slice(dj, dj + s * (wo - 1) + 1, s), ALL)
            for di in range(k)
            for dj in range(k)
        ]

    def maximum_masks(self, a: Any) -> list[Any]:
        """For each window position, 1 where that entry is its window's maximum and no
        earlier position's was (ties go to the first), else 0; in a's dtype."""
        xp, indices = api(a), self.positions(a.shape)
        entries = [strided.read(a, index) for index in indices]
        top = entries[0]
        for entry in entries[1:]:
            top = xp.maximum(top, entry)
        unclaimed = xp.ones_like(strided.compact(top))
        masks = []
        for entry in entries:
            # entry ≤ top everywhere, so "not below the top" is "equal to it".
            at_top = xp.add(xp.negative(xp.astype(xp.greater(top, entry), a.dtype)), 1.0)
            mask = xp.multiply(at_top, unclaimed)
            unclaimed = xp.subtract(unclaimed, mask)
            masks.append(mask)
        return masks


class MaxPool2d(PoolOp):
    """out[n, i, j, c] = max over 0 ≤ di, dj < K of a[n, i·s + di, j·s + dj, c]."""

    name = "maxpool2d"

    def compute(self, a: Any) -> Any:
        xp = api(a)
        entries = [strided.read(a, index) for index in self.positions(a.shape)]
        top = strided.compact(entries[0])
        for entry in entries[1:]:
            top = xp.maximum(top, entry)
        return top

    def gradient(self, out_grad: Tensor, node: Tensor):
        return MaxPoolScatter(self.kernel, self.stride)(node.inputs[0], out_grad)


class MaxPoolScatter(PoolOp):
    """maxpool's gradient: g (N, Ho, Wo, C) added at each window's maximum in `a`, zeros
    elsewhere, an array of a's shape. Linear in g; its gradient in g is `MaxPoolGather`."""

    name = "maxpool2d"

    def compute(self, a: Any, g: Any) -> Any:
        xp, out = api(a), strided.zeros(a.shape, like=g)
        for index, mask in zip(self.positions(a.shape), self.maximum_masks(a), strict=True):
            strided.add_into(out, index, xp.multiply(g, mask))
        return out

    def gradient(self, out_grad: Tensor, node: Tensor):
        return None, MaxPoolGather(self.kernel, self.stride)(node.inputs[0], out_grad)


class MaxPoolGather(PoolOp):
    """u (of a's shape) read at each window's maximum in `a`: an (N, Ho, Wo, C) array, and
    maxpool(a) when u = a. Linear in u; its gradient in u is `MaxPoolScatter`."""

    name = "maxpool2d"

    def compute(self, a: Any, u: Any) -> Any:
        xp, total = api(a), None
        for index, mask in zip(self.positions(a.shape), self.maximum_masks(a), strict=True):
            picked = xp.multiply(strided.read(u, index), mask)
            total = picked if total is None else xp.add(total, picked)
        return total

    def gradient(self, out_grad: Tensor, node: Tensor):
        return None, MaxPoolScatter(self.kernel, self.stride)(node.inputs[0], out_grad)


class AvgPool2d(PoolOp):
    """out[n, i, j, c] = (1/K²) Σ over 0 ≤ di, dj < K of a[n, i·s + di, j·s + dj, c]."""

    name = "avgpool2d"

    def compute(self, a: Any) -> Any:
        xp, total = api(a), None
        for index in self.positions(a.shape):
            entry = strided.read(a, index)
            total = strided.compact(entry) if total is None else xp.add(total, entry)
        return xp.multiply(total, 1.0 / self.kernel**2)

    def gradient(self, out_grad: Tensor, node: Tensor):
        return AvgPoolInputGrad(self.kernel, self.stride, shape=node.inputs[0].shape)(out_grad)


class AvgPoolInputGrad(PoolOp):
    """avgpool's gradient: g / K² added to every entry of each window, an array of the
    input's `shape`. Linear; its gradient is avgpool."""

    name = "avgpool2d"

    def __init__(self, kernel: int, stride: int | None, *, shape: tuple[int, ...]):
        super().__init__(kernel, stride)
        self.shape = tuple(shape)

    def compute(self, g: Any) -> Any:
        xp, out = api(g), strided.zeros(self.shape, like=g)
        share = xp.multiply(g, 1.0 / self.kernel**2)
        for index in self.positions(self.shape):
            strided.add_into(out, index, share)
        return out

    def gradient(self, out_grad: Tensor, node: Tensor):
        return avgpool2d(out_grad, self.kernel, self.stride)


PARAMS = [
    OpParam("kernel", "int", "the window's rows and columns, e.g. --kernel 2"),
    OpParam("stride", "int", "rows and columns between windows (default: kernel)", default=None),
]
SETTINGS = [
    {"kernel": 2, "stride": None},
    {"kernel": 2, "stride": 1},
    {"kernel": 3, "stride": 2},
    Setting({"kernel": 1, "stride": None}, ((2, 3, 2, 2),)),
]


@register(
    MaxPool2d,
    params=PARAMS,
    shapes_for=pool_cases.pool_shapes,
    random_case=pool_cases.pool_case,
    draws=[distinct],
    settings=SETTINGS,
    nondifferentiable="a tie for a window's maximum (the first in row-major order wins)",
)
def maxpool2d(a: Tensor, kernel: int, stride: int | None = None) -> Tensor:
    """The maximum of each K×K window of NHWC a, windows every `stride` (default K)."""
    return MaxPool2d(kernel, stride)(a)


@register(
    AvgPool2d,
    params=PARAMS,
    shapes_for=pool_cases.pool_shapes,
    random_case=pool_cases.pool_case,
    settings=SETTINGS,
)
def avgpool2d(a: Tensor, kernel: int, stride: int | None = None) -> Tensor:
    """The mean of each K×K window of NHWC a, windows every `stride` (default K)."""
    return AvgPool2d(kernel, stride)(a)
