"""needle: a small deep-learning framework over numpy (the CMU dlsys course's API)."""

from needle import autograd, data, init, nn, ops, optim
from needle.autograd import Tensor, TensorTuple, no_grad
from needle.devices import BACKEND, Device, all_devices, cpu, cpu_numpy, cuda, default_device
from needle.init import ones, ones_like, zeros, zeros_like
from needle.ops import *  # noqa: F403 - every op function at top level, as the course API has it

__version__ = "0.1.0"
