"""`needle.backend_ndarray` (the course's `nd`): the strided NDArray and its devices.

The array module the course's ops call when `NEEDLE_BACKEND=nd`: `NDArray`, the devices
(`cpu()`, `cuda()`, `cpu_numpy()`), and `array`, `empty`, `full`, `broadcast_to`, `reshape`,
`maximum`, `log`, `exp`, `tanh`, `sum`, `flip`. Also importable as the submodule
`needle.backend_ndarray.ndarray`, as in the course.
"""

from needle.backend_ndarray import ndarray
from needle.backend_ndarray.array_api import api
from needle.backend_ndarray.ndarray import (
    BackendDevice,
    NDArray,
    ShapeError,
    all_devices,
    array,
    broadcast_to,
    cpu,
    cpu_numpy,
    cuda,
    default_device,
    empty,
    exp,
    flip,
    full,
    log,
    matmul,
    maximum,
    reshape,
    sum,
    tanh,
    where,
)
