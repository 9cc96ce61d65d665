"""Reading rows by index: `gather_rows(a, indices)`, out[k] = a[indices[k]], what an
embedding lookup is. Its gradient adds each out_grad row back into the row it was read
from (`ScatterRows`, rows read twice getting both); the two are each other's gradient, as
both are linear, so they can be differentiated to any order.

Both are one call of the device's array API (`take_rows`, `add_rows`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from needle.autograd import Tensor, TensorOp
from needle.backend_ndarray import api
from needle.errors import UsageError
from needle.ops.registry import OpParam, Shape, random_shape, register


def as_indices(indices: Sequence[int] | np.ndarray, op: str) -> np.ndarray:
    """`indices` as a flat intp array; anything else is a UsageError naming `op`."""
    array = np.asarray(indices)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise UsageError(f"{op}: indices must be a flat sequence of integers, got {indices!r}")
    return np.asarray(array, dtype="intp")


class GatherRows(TensorOp):
    """out[k] = a[indices[k]], of shape (len(indices), *a.shape[1:])."""

    def __init__(self, indices: Sequence[int] | np.ndarray):
        self.indices = as_indices(indices, "gather_rows")

    def compute(self, a: Any) -> Any:
        if a.ndim < 1:
            raise UsageError("gather_rows needs an input with at least one axis (its rows)")
        rows = a.shape[0]
        if self.indices.size and not (0 <= self.indices.min() and self.indices.max() < rows):
            raise UsageError(
                f"gather_rows: indices from {self.indices.min()} to {self.indices.max()} for "
                f"an input of {rows} rows (valid: 0 to {rows - 1})"
            )
        return api(a).take_rows(a, self.indices)

    def gradient(self, out_grad: Tensor, node: Tensor):
        return ScatterRows(self.indices, node.inputs[0].shape[0])(out_grad)


class ScatterRows(TensorOp):
    """`gather_rows`' gradient: an array of `rows` rows, zero but for g[k] added into row
    indices[k] for every k. Linear; its gradient is gather_rows at the same indices."""

    def __init__(self, indices: Sequence[int] | np.ndarray, rows: int):
        self.indices, self.rows = as_indices(indices, "gather_rows"), rows

    def compute(self, g: Any) -> Any:
        return api(g).add_rows(g, self.indices, self.rows)

    def gradient(self, out_grad: Tensor, node: Tensor):
        return GatherRows(self.indices)(out_grad)


def _gather_case(rng: np.random.Generator) -> tuple[dict[str, Any], list[Shape]]:
    shape = (int(rng.integers(1, 5)), *random_shape(rng, 0, 2))
    indices = tuple(int(i) for i in rng.integers(0, shape[0], int(rng.integers(1, 6))))
    return {"indices": indices}, [shape]


@register(
    GatherRows,
    params=[OpParam("indices", "shape", "the rows to read, in order, e.g. --indices 2,0,2")],
    shapes_for=lambda p: [(max(p["indices"], default=0) + 1, 3)],
    random_case=_gather_case,
    settings=[{"indices": (2, 0, 2)}, {"indices": (0,)}, {"indices": (1, 1, 1, 0)}],
)
def gather_rows(a: Tensor, indices: Sequence[int] | np.ndarray) -> Tensor:
    """Rows of `a` by index: out[k] = a[indices[k]] (repeats allowed)."""
    return GatherRows(indices)(a)
