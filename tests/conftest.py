"""Fixtures shared by the test files: `device`, every CPU storage a Tensor can have."""

from __future__ import annotations

import pytest

import needle as ndl

CPU_DEVICES = [ndl.cpu_numpy(), ndl.cpu()]


@pytest.fixture(params=CPU_DEVICES, ids=str)
def device(request):
    """cpu_numpy() (numpy arrays) and cpu() (NDArrays over numpy), in turn."""
    return request.param
