"""One entry of each row by index: `take_along_rows(a, indices)`, out[k] = a[k, indices[k]]
for a 2-D `a`, what a loss does when it reads each sample's score for its label. Its gradient
puts each out_grad entry back where it was read from, into zeros (`PutAlongRows`); the two
are each other's gradient, as both are linear, so they can be differentiated to any order.

Both are one call of the device's array API (`take_along_rows`, `put_along_rows`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from needle.autograd import Tensor, TensorOp
from needle.backend_ndarray import api
from needle.errors import UsageError
from needle.ops.gather import as_indices
from needle.ops.registry import OpParam, Shape, register


class TakeAlongRows(TensorOp):
    """out[k] = a[k, indices[k]] for a of shape (len(indices), columns); out (len(indices),)."""

    def __init__(self, indices: Sequence[int] | np.ndarray):
        self.indices = as_indices(indices, "take_along_rows")

    def compute(self, a: Any) -> Any:
        if a.ndim != 2 or a.shape[0] != self.indices.size:
            raise UsageError(
                f"take_along_rows: {self.indices.size} indices for an input of shape {a.shape} "
                f"(valid: shape ({self.indices.size}, columns), one index a row)"
            )
        columns = a.shape[1]
        if self.indices.size and not (0 <= self.indices.min() and self.indices.max() < columns):
            raise UsageError(
                f"take_along_rows: indices from {self.indices.min()} to {self.indices.max()} "
                f"for an input of {columns} columns (valid: 0 to {columns - 1})"
            )
        return api(a).take_along_rows(a, self.indices)

    def gradient(self, out_grad: Tensor, node: Tensor):
        return PutAlongRows(self.indices, node.inputs[0].shape[1])(out_grad)


class PutAlongRows(TensorOp):
    """`take_along_rows`' gradient: an array (len(g), columns), zero but for g[k] at
    [k, indices[k]]. Linear; its gradient is take_along_rows at the same indices."""

    def __init__(self, indices: Sequence[int] | np.ndarray, columns: int):
        self.indices, self.columns = as_indices(indices, "take_along_rows"), columns

    def compute(self, g: Any) -> Any:
        return api(g).put_along_rows(g, self.indices, self.columns)

    def gradient(self, out_grad: Tensor, node: Tensor):
        return TakeAlongRows(self.indices)(out_grad)


def rows_shape(indices: Sequence[int]) -> Shape:
    """The sample input's shape for one index a row (also cross_entropy's): one column more
    than the largest index, so some entries are never read."""
    return (len(indices), max(indices, default=0) + 2)


def rows_case(rng: np.random.Generator) -> tuple[dict[str, Any], list[Shape]]:
    """A random case of one index a row: 1–5 rows of 1–5 columns, each row's index drawn."""
    rows, columns = (int(n) for n in rng.integers(1, 6, 2))
    indices = tuple(int(i) for i in rng.integers(0, columns, rows))
    return {"indices": indices}, [(rows, columns)]


@register(
    TakeAlongRows,
    params=[OpParam("indices", "shape", "each row's column, in row order, e.g. --indices 2,0,2")],
    shapes_for=lambda p: [rows_shape(p["indices"])],
    random_case=rows_case,
    settings=[{"indices": (2, 0, 2)}, {"indices": (0,)}, {"indices": (1, 1, 1, 0)}],
)
def take_along_rows(a: Tensor, indices: Sequence[int] | np.ndarray) -> Tensor:
    """One entry of each row of a 2-D `a`: out[k] = a[k, indices[k]]."""
    return TakeAlongRows(indices)(a)
