"""`api(a)`: the array namespace of a's device, `numpy_api` for numpy arrays (cpu_numpy())
and `ndarray_api` for NDArrays (cpu(), cuda()). Both define the names in `NAMES`."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy

from needle.backend_ndarray import ndarray_api, numpy_api
from needle.backend_ndarray.strided import StridedArray

NAMES = (
    "add", "subtract", "multiply", "divide", "power", "negative", "maximum", "greater",
    "abs", "sqrt", "log", "exp", "tanh", "where", "isfinite", "all", "sum", "max",
    "reshape", "transpose", "swapaxes", "broadcast_to", "matmul", "astype",
    "ascontiguousarray", "to_numpy", "zeros_like", "ones_like", "flip", "pad",
    "element_strides", "as_strided", "getitem", "setitem", "add_into", "stack", "unstack",
    "take_rows", "add_rows", "take_along_rows", "put_along_rows",
    "errstate",
)  # fmt: skip


def api(a: Any) -> ModuleType:
    """The namespace that computes on `a`: numpy's for numpy arrays and scalars, NDArray's
    for NDArrays (whatever their device: the kernels are the device's)."""
    if type(a) is numpy.ndarray or not isinstance(a, StridedArray):
        return numpy_api
    return ndarray_api
