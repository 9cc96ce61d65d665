"""Devices: where an NDArray's buffers live and which kernels compute on them.

A `BackendDevice` is a name and a module; devices compare equal by name and print as
`cpu()`, `cuda()`, `cpu_numpy()`, as the course's code expects.

- `cpu()` and `cuda()` hold NDArrays. Their modules are one implementation of the kernels,
  `ArrayBackend` (ndarray_backend_array.py), over numpy for cpu() and over CuPy for cuda().
- `cpu_numpy()` is the hw1/2-style device, whose arrays are plain `numpy.ndarray`s: its
  module is numpy itself. It holds no NDArrays (making one there raises UsageError), and its
  helpers (`rand`, `randn`, `one_hot`, `empty`, `full`) return numpy arrays.

CuPy is imported the first time `cuda()` is called, never by `import needle`. When it cannot
be imported, or sees no GPU, `cuda()` is still a device (all_devices() lists it) whose
`enabled()` is False, as course code checks before using it.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy

from needle.backend_ndarray.ndarray_backend_array import ArrayBackend
from needle.errors import UsageError

NUMPY_KERNELS = ArrayBackend(numpy, to_host=numpy.array)


# What a device that is not enabled lacks (only cuda() can be), for the errors that say so.
NEEDS = "it needs CuPy and a CUDA GPU"


class BackendDevice:
    """A named device over a backend module; attributes it lacks are the module's kernels
    (`cpu().Array(n)`, `cpu().matmul_tiled`, `cpu().__tile_size__`), as in the course."""

    def __init__(self, name: str, mod: Any):
        self.name = name
        self.mod = mod

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BackendDevice) and self.name == other.name

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"{self.name}()"

    def __reduce__(self) -> tuple:
        # The module is not picklable; a copy is the device of that name made anew (for
        # cuda(), on a machine that may or may not have a GPU).
        return {"cpu": cpu, "cuda": cuda, "cpu_numpy": cpu_numpy}[self.name], ()

    def __getattr__(self, name: str) -> Any:
        mod = self.__dict__.get("mod")  # absent while unpickling or copying: no recursion
        if not isinstance(mod, ArrayBackend):
            raise AttributeError(f"{self} has no NDArray kernels, so no {name!r}")
        return getattr(mod, name)

    @property
    def api(self) -> Any:
        """The array namespace computing on this device's arrays (see array_api.py)."""
        from needle.backend_ndarray import ndarray_api, numpy_api

        return numpy_api if self.mod is numpy else ndarray_api

    def array(self, values: Any, dtype: Any = None) -> Any:
        """`values` (a numpy array, NDArray or anything numpy takes) as an array of this
        device: for cpu_numpy() `np.asarray` (no copy when nothing changes), else a new
        NDArray (default dtype: values' when float32 or float64, else float32)."""
        if self.mod is numpy:
            if isinstance(values, _ndarray_class()):
                values = values.numpy()
            return numpy.asarray(values, dtype=dtype)
        if dtype is None:
            dtype = getattr(values, "dtype", None)
            dtype = dtype if str(dtype) in ("float32", "float64") else "float32"
        return _ndarray_class()(values, device=self, dtype=dtype)

    def enabled(self) -> bool:
        """Whether arrays can be made on this device (False for cuda() without CuPy or a GPU)."""
        return self.mod is not None

    def check_holds_ndarrays(self) -> None:
        """Raise UsageError unless NDArrays can live on this device."""
        if self.mod is None:
            raise UsageError(f"{self} is not enabled: {NEEDS}")
        if not isinstance(self.mod, ArrayBackend):
            raise UsageError(f"{self} holds plain numpy arrays, not NDArrays; use cpu() for those")

    # -- arrays made from numpy values (one numpy call each, then cast) -------------------------

    def rand(self, *shape: int, dtype: str = "float32") -> Any:
        """Uniform samples in [0, 1), drawn by numpy's global RNG."""
        return self._from_numpy(numpy.random.rand(*shape), dtype)

    def randn(self, *shape: int, dtype: str = "float32") -> Any:
        """Standard normal samples, drawn by numpy's global RNG."""
        return self._from_numpy(numpy.random.randn(*shape), dtype)

    def one_hot(self, n: int, i: Any, dtype: str = "float32") -> Any:
        """Rows of the n×n identity picked by the integer index (or index array) `i`."""
        return self._from_numpy(numpy.eye(n)[i], dtype)

    def empty(self, shape: tuple[int, ...], dtype: str = "float32") -> Any:
        """An array of `shape`, contents undefined."""
        if not isinstance(self.mod, ArrayBackend):
            return numpy.empty(shape, dtype=dtype)
        return _ndarray_class().make(shape, device=self, dtype=dtype)

    def full(self, shape: tuple[int, ...], fill_value: float, dtype: str = "float32") -> Any:
        """An array of `shape` with every element `fill_value`."""
        array = self.empty(shape, dtype)
        array.fill(fill_value)
        return array

    def _from_numpy(self, values: numpy.ndarray, dtype: str) -> Any:
        if not isinstance(self.mod, ArrayBackend):
            return values.astype(dtype)
        return _ndarray_class()(values, device=self, dtype=dtype)


def _ndarray_class() -> type:
    # ndarray.py imports this module, so the class is looked up when first needed.
    from needle.backend_ndarray.ndarray import NDArray

    return NDArray


@functools.cache
def _cuda_kernels() -> ArrayBackend | None:
    """CuPy's kernels, or None when CuPy cannot be imported or sees no GPU (asked once)."""
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() <= 0:
            return None
    except Exception:  # ImportError, or a CUDA error without a driver: there is no GPU to use
        return None
    return ArrayBackend(cupy, to_host=cupy.asnumpy)


def cpu() -> BackendDevice:
    """The CPU: NDArrays over numpy buffers."""
    return BackendDevice("cpu", NUMPY_KERNELS)


def cuda() -> BackendDevice:
    """The GPU: NDArrays over CuPy buffers; `enabled()` is False without CuPy or a GPU."""
    return BackendDevice("cuda", _cuda_kernels())


def cpu_numpy() -> BackendDevice:
    """The hw1/2 device: its arrays are numpy arrays themselves."""
    return BackendDevice("cpu_numpy", numpy)


def default_device() -> BackendDevice:
    """Where arrays go when no device is given: cpu()."""
    return cpu()


# Every device by name, each made when asked for: cuda() imports CuPy and starts CUDA, so
# a name is known (a config's `train.device`) without that.
DEVICES = {"cpu": cpu, "cuda": cuda, "cpu_numpy": cpu_numpy}


def all_devices() -> list[BackendDevice]:
    """Every device, enabled or not (course code skips those whose enabled() is False)."""
    return [make() for make in DEVICES.values()]
