"""Where a Tensor's data lives: the backend choice, the default device, and conversion of
values onto a device.

Storage follows the device: on `cpu_numpy()` a tensor's `cached_data` is a numpy array
(needle's hw1/2 path, and its fastest); on `cpu()` and `cuda()` it is a
`needle.backend_ndarray.NDArray` (over numpy, or over CuPy). All of them live in one process.
`NEEDLE_BACKEND`, read once at import into `BACKEND`, only picks `default_device()`, where
tensors go when no device is given: `np` (the default) → cpu_numpy(), `nd` → cpu().
`using_device(d)` makes d the default within a block (a training run's `train.device`).
docs/spec.md ("Devices and backends") says why np is the default.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from needle.backend_ndarray import BackendDevice, NDArray, all_devices, cpu, cpu_numpy, cuda
from needle.backend_ndarray.device import DEVICES, NEEDS
from needle.errors import UsageError

__all__ = [
    "BACKEND",
    "BACKENDS",
    "Device",
    "all_devices",
    "cpu",
    "cpu_numpy",
    "cuda",
    "device_named",
    "using_device",
    "DEVICES",
    "NEEDS",
]

Device = BackendDevice
BACKENDS = ("np", "nd")


def _backend_from_env() -> str:
    name = os.environ.get("NEEDLE_BACKEND", "np").strip() or "np"
    if name not in BACKENDS:
        raise UsageError(f"NEEDLE_BACKEND={name!r} is not a backend; valid: {', '.join(BACKENDS)}")
    return name


BACKEND = _backend_from_env()
CPU_NUMPY = cpu_numpy()
_DEFAULT = cpu() if BACKEND == "nd" else CPU_NUMPY


def default_device() -> BackendDevice:
    """Where tensors go when no device is given: cpu() under NEEDLE_BACKEND=nd, else
    cpu_numpy(); inside `using_device(d)`, d."""
    return _DEFAULT


def device_named(name: str) -> BackendDevice:
    """The device called `name` ("cpu_numpy", "cpu" or "cuda"), enabled or not."""
    if name not in DEVICES:
        raise DeviceError(f"unknown device {name!r}; valid: {', '.join(DEVICES)}")
    return DEVICES[name]()


@contextlib.contextmanager
def using_device(device: BackendDevice) -> Iterator[BackendDevice]:
    """Within the block, `default_device()` is `device`: the tensors, parameters and batches
    made there without a device go to it (a training run on one device, `train.device`).
    The previous default comes back on leaving, by an exception too. Not thread-local: one
    run at a time per process. A device that is not enabled is refused (UsageError)."""
    global _DEFAULT
    if not isinstance(device, BackendDevice):
        raise DeviceError(f"using_device takes a device, got {device!r}")
    if not device.enabled():
        raise UsageError(f"{device} is not enabled: {NEEDS}")
    before, _DEFAULT = _DEFAULT, device
    try:
        yield device
    finally:
        _DEFAULT = before


def device_of(data: Any) -> BackendDevice:
    """The device holding `data`: an NDArray's own, cpu_numpy() for numpy arrays and scalars;
    a tuple's (a TensorTuple's data) is its first element's."""
    if isinstance(data, NDArray):
        return data.device
    if isinstance(data, tuple) and data:
        return device_of(data[0])
    return CPU_NUMPY


class DeviceError(UsageError, ValueError):
    """Not a device. Also a ValueError, as hw1/2-era code expects of a bad argument."""


def check_device(device: Any) -> BackendDevice | None:
    """`device` itself when it is a device (or None), else DeviceError."""
    if device is None or isinstance(device, BackendDevice):
        return device
    names = ", ".join(str(d) for d in all_devices())
    raise DeviceError(f"unknown device {device!r}; valid: {names}")


def check_same_device(datas: Iterable[Any], op: Any) -> None:
    """UsageError unless every array in `datas` is on one device."""
    devices = {device_of(d) for d in datas}
    if len(devices) > 1:
        names = " and ".join(sorted(str(d) for d in devices))
        raise UsageError(
            f"{type(op).__name__}: inputs on different devices ({names}); move them to one "
            "with .to(device)"
        )


def as_device_array(value: Any, device: BackendDevice | None, dtype: Any, *, share: bool) -> Any:
    """`value` (a numpy array, NDArray, list, number) as an array of `device` (default: the
    value's own if it is an NDArray, else `default_device()`) in `dtype` (None: keep).

    With `share`, an array already right (device and dtype) is returned itself; otherwise
    the result is a copy, as a Tensor must not change when its caller's array does. NDArray
    devices keep float32 and float64; anything else (labels, masks) becomes float32, as in
    the course's NDArray.
    """
    if device is None:
        device = value.device if isinstance(value, NDArray) else _DEFAULT
    if device.name == "cpu_numpy":
        if isinstance(value, NDArray):
            value, share = value.numpy(), True  # already a copy
        if share:
            same = dtype is None or value.dtype == np.dtype(dtype)
            return value if same else value.astype(dtype)
        return np.array(value, dtype=dtype)
    if share and isinstance(value, NDArray) and value.device == device:
        if dtype is None or value.dtype == np.dtype(dtype).name:
            return value
    if dtype is not None and np.dtype(dtype).name not in ("float32", "float64"):
        dtype = "float32"
    return device.array(value, dtype)
