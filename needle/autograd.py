"""Reverse-mode automatic differentiation: `Tensor`, `Op` and the graph they make.

A `Tensor` holds an array of its device (`cached_data`: a numpy array on cpu_numpy(), an
NDArray on cpu() and cuda(); see needle.devices) and, when it was computed from tensors that
require a gradient, the `op` that made it and its `inputs`. `backward()` runs the backward
pass over that graph (`needle.backward`, whose functions are re-exported here). Gradients
are built from needle ops, so they can be differentiated again. A `TensorTuple` is a graph
value holding several arrays (what `split` returns).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Self

import numpy as np

from needle.backend_ndarray import api
from needle.devices import (
    Device,
    as_device_array,
    check_device,
    check_same_device,
    device_of,
)
from needle.errors import UsageError

# Number of live graph values; incremented when one is made, decremented when it dies.
TENSOR_COUNTER = 0
# False inside `no_grad()`: ops then make constants and keep no graph.
_GRAD_ENABLED = True


class no_grad:
    """Context manager: ops inside it build no graph, whatever their inputs require.

    For evaluation: `with ndl.autograd.no_grad(): logits = model(X)`.
    """

    def __enter__(self) -> None:
        global _GRAD_ENABLED
        self._saved = _GRAD_ENABLED
        _GRAD_ENABLED = False

    def __exit__(self, *exc: object) -> None:
        global _GRAD_ENABLED
        _GRAD_ENABLED = self._saved


class Op:
    """An operator: `compute` maps arrays of one device to an array of it, through the
    device's array namespace (`api(a)`); `gradient` maps the output's adjoint to one adjoint
    per input, written with needle ops."""

    def __call__(self, *args):
        raise NotImplementedError

    def compute(self, *args: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def gradient(self, out_grad: Tensor, node: Tensor) -> Tensor | tuple[Tensor | None, ...]:
        raise NotImplementedError

    def gradient_as_tuple(self, out_grad: Tensor, node: Tensor) -> tuple[Tensor | None, ...]:
        grads = self.gradient(out_grad, node)
        return grads if isinstance(grads, tuple) else (grads,)

    # An op may keep arrays its forward pass made for its gradient (a conv's im2col matrix,
    # an LSTM's activations). They belong to one call: an op object called again, on other
    # inputs, computes another node, whose gradient must not read the first call's arrays.
    def keep(self, inputs: tuple[Any, ...], value: Any) -> None:
        """Keep `value`, made by `compute` from the arrays `inputs`, for that call's gradient."""
        self._kept = (inputs, value)

    def kept(self, node: Value) -> Any:
        """What `keep` kept, handed over once, when it was kept for `node`'s own input
        arrays; None otherwise (the op was called since on others, or it was taken): the
        gradient then computes it again."""
        kept = getattr(self, "_kept", None)
        if kept is None:
            return None
        inputs, value = kept
        if len(inputs) != len(node.inputs):
            return None
        for array, x in zip(inputs, node.inputs, strict=True):
            if array is not x.cached_data:
                return None
        self._kept = None
        return value


class TensorOp(Op):
    """An op whose result is a Tensor."""

    def __call__(self, *args: Value) -> Tensor:
        return Tensor.make_from_op(self, args)


class TensorTupleOp(Op):
    """An op whose result is a TensorTuple."""

    def __call__(self, *args: Value) -> TensorTuple:
        return TensorTuple.make_from_op(self, args)


class Value:
    """A node of the computational graph."""

    op: Op | None
    inputs: tuple[Value, ...]
    cached_data: Any
    requires_grad: bool
    grad: Any

    def realize_cached_data(self) -> Any:
        return self.cached_data

    @classmethod
    def make_from_op(cls, op: Op, inputs: Sequence[Value]) -> Self:
        """Run `op` on `inputs`; keep the graph only if some input requires a gradient."""
        # The hot path of every forward and backward pass: kept to plain attribute writes.
        global TENSOR_COUNTER
        if len(inputs) == 2:  # most ops take one or two inputs: no argument list to build
            a, b = inputs[0].cached_data, inputs[1].cached_data
            if type(a) is not np.ndarray or type(b) is not np.ndarray:  # two numpy: one device
                check_same_device((a, b), op)
            data = op.compute(a, b)
        elif len(inputs) == 1:
            data = op.compute(inputs[0].cached_data)
        else:
            datas = [x.cached_data for x in inputs]
            for d in datas:
                if type(d) is not np.ndarray:  # all numpy: one device, nothing to check
                    check_same_device(datas, op)
                    break
            data = op.compute(*datas)
        tensor = cls.__new__(cls)
        tensor.cached_data = data
        tensor.grad = None
        TENSOR_COUNTER += 1
        if _GRAD_ENABLED:
            for x in inputs:
                if x.requires_grad:
                    tensor.op, tensor.inputs, tensor.requires_grad = op, tuple(inputs), True
                    return tensor
        tensor.op, tensor.inputs, tensor.requires_grad = None, (), False
        return tensor

    @classmethod
    def make_const(cls, data: Any, requires_grad: bool = False) -> Self:
        """Wrap data (an array; a tuple of them for a TensorTuple) without copying it (the
        caller gives up ownership)."""
        global TENSOR_COUNTER
        TENSOR_COUNTER += 1  # on every backward pass (each node's .grad): plain writes
        tensor = cls.__new__(cls)
        tensor.op, tensor.inputs, tensor.cached_data = None, (), data
        tensor.requires_grad, tensor.grad = requires_grad, None
        return tensor

    def is_leaf(self) -> bool:
        return self.op is None

    def __del__(self) -> None:
        global TENSOR_COUNTER
        TENSOR_COUNTER -= 1


def _as_array(array: Any, device: Device | None, dtype: Any) -> Any:
    if isinstance(array, Value):
        return as_device_array(array.cached_data, device or array.device, dtype, share=True)
    return as_device_array(array, device, dtype, share=False)


class Tensor(Value):
    """An n-dimensional array on a device that records how it was computed.

    `Tensor(array, device=None, dtype=None, requires_grad=True)` takes a numpy array, an
    NDArray, a Tensor, a list or a number. `device=None` keeps an NDArray's or Tensor's
    device, else `default_device()`; `dtype=None` keeps the input's dtype. Built from a
    Tensor on the same device in the same dtype, the new tensor shares its storage; from
    anything else it holds a copy.
    """

    grad: Tensor | None

    def __init__(
        self,
        array: Any,
        *,
        device: Device | None = None,
        dtype: Any = None,
        requires_grad: bool = True,
    ) -> None:
        global TENSOR_COUNTER
        TENSOR_COUNTER += 1  # first: a construction that raises below still reaches __del__
        data = _as_array(array, check_device(device), dtype)
        self.op, self.inputs, self.cached_data = None, (), data
        self.requires_grad, self.grad = requires_grad, None

    # -- data access -------------------------------------------------------------------
    @property
    def data(self) -> Tensor:
        """A detached tensor sharing this tensor's storage."""
        return self.detach()

    @data.setter
    def data(self, value: Tensor) -> None:
        if not isinstance(value, Tensor):
            raise TypeError(f"Tensor.data must be assigned a Tensor, got {type(value).__name__}")
        if value.dtype != self.dtype:
            raise TypeError(f"Tensor.data: dtype {value.dtype} does not match {self.dtype}")
        if value.device != self.device:
            raise UsageError(f"Tensor.data: a tensor on {value.device} set on one on {self.device}")
        self.cached_data = value.cached_data

    def detach(self) -> Tensor:
        return Tensor.make_const(self.cached_data)

    def numpy(self) -> np.ndarray:
        """The data as a numpy array (the array itself on cpu_numpy(), else a copy)."""
        return api(self.cached_data).to_numpy(self.cached_data)

    def to(self, device: Device) -> Tensor:
        """This tensor on `device`: itself when already there, else a copy (a leaf,
        requiring a gradient as this one does)."""
        if check_device(device) == self.device:
            return self
        return Tensor(self, device=device, requires_grad=self.requires_grad)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.cached_data.shape

    @property
    def dtype(self) -> np.dtype:
        dtype = self.cached_data.dtype
        return dtype if type(dtype) is not str else np.dtype(dtype)  # an NDArray's is a name

    @property
    def ndim(self) -> int:
        return self.cached_data.ndim

    @property
    def size(self) -> int:
        return self.cached_data.size

    @property
    def device(self) -> Device:
        return device_of(self.cached_data)

    def __len__(self) -> int:
        return self.cached_data.shape[0]

    def __repr__(self) -> str:
        return f"needle.Tensor({self.cached_data!r})"

    def __str__(self) -> str:
        return str(self.cached_data)

    # -- autograd ----------------------------------------------------------------------
    def backward(self, out_grad: Tensor | None = None) -> None:
        """Write `.grad` on every node of this tensor's graph that requires a gradient,
        replacing what was there; tensors outside the graph keep theirs.

        A tensor that requires no gradient has no graph, so there would be nothing to write:
        that is an error, not a silent no-op that leaves older gradients looking current.
        """
        if not self.requires_grad:
            raise UsageError(
                f"backward() on a tensor of shape {self.shape} that does not depend on any "
                "tensor requiring a gradient (requires_grad=False, made from constants or "
                "under no_grad()); nothing would get a .grad"
            )
        if out_grad is None:
            out_grad = Tensor.make_const(api(self.cached_data).ones_like(self.cached_data))
        compute_gradient_of_variables(self, out_grad)

    # -- operators: each is one registered op (see needle.ops) --------------------------
    def __add__(self, other: Any) -> Tensor:
        if isinstance(other, Tensor):
            return ops.add(self, other)
        return ops.add_scalar(self, other)

    __radd__ = __add__

    def __mul__(self, other: Any) -> Tensor:
        if isinstance(other, Tensor):
            return ops.multiply(self, other)
        return ops.mul_scalar(self, other)

    __rmul__ = __mul__

    def __pow__(self, other: Any) -> Tensor:
        if isinstance(other, Tensor):
            return ops.power(self, other)
        return ops.power_scalar(self, other)

    def __sub__(self, other: Any) -> Tensor:
        if isinstance(other, Tensor):
            return ops.add(self, ops.negate(other))
        return ops.add_scalar(self, -other)

    def __rsub__(self, other: Any) -> Tensor:
        return ops.add_scalar(ops.negate(self), other)

    def __truediv__(self, other: Any) -> Tensor:
        if isinstance(other, Tensor):
            return ops.divide(self, other)
        return ops.divide_scalar(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return ops.rdivide_scalar(self, other)

    def __matmul__(self, other: Tensor) -> Tensor:
        return ops.matmul(self, other)

    def __neg__(self) -> Tensor:
        return ops.negate(self)

    def sum(self, axes: int | tuple[int, ...] | None = None) -> Tensor:
        return ops.summation(self, axes)

    def reshape(self, shape: tuple[int, ...]) -> Tensor:
        return ops.reshape(self, shape)

    def broadcast_to(self, shape: tuple[int, ...]) -> Tensor:
        return ops.broadcast_to(self, shape)

    def transpose(self, axes: tuple[int, int] | None = None) -> Tensor:
        return ops.transpose(self, axes)

    # Identity semantics: optimizers key their state by tensor.
    __hash__ = object.__hash__
    __eq__ = object.__eq__


class TensorTuple(Value):
    """A graph value holding a tuple of arrays: what `split` returns and `stack` consumes.

    `t[i]` is element i as a Tensor (the op `tuple_get_item`), so reading an element is
    differentiable like any other op; `t.tuple()` reads them all.
    """

    grad: TensorTuple | None

    def __init__(self, arrays: Iterable[Any]) -> None:
        """A constant tuple of the given arrays (or tensors' arrays), requiring no gradient."""
        global TENSOR_COUNTER
        TENSOR_COUNTER += 1
        self.op, self.inputs, self.requires_grad, self.grad = None, (), False, None
        self.cached_data = tuple(_as_array(a, None, None) for a in arrays)

    def __len__(self) -> int:
        return len(self.cached_data)

    def __getitem__(self, index: int) -> Tensor:
        return ops.tuple_get_item(self, index)

    def __iter__(self) -> Iterator[Tensor]:
        """Its elements in order (`for x in split(…)`, `a, b = …`): without this, Python
        would index until an IndexError, and an index out of range is a UsageError here."""
        return iter(self.tuple())

    def __add__(self, other: TensorTuple) -> TensorTuple:
        """Element by element, as the backward pass sums two adjoints of a tuple."""
        if not isinstance(other, TensorTuple) or len(other) != len(self):
            got = f"{len(other)} elements" if isinstance(other, TensorTuple) else type(other)
            raise UsageError(
                f"a TensorTuple of {len(self)} elements adds only one of as many (got {got})"
            )
        return ops.make_tuple(*[a + b for a, b in zip(self.tuple(), other.tuple(), strict=True)])

    def detach(self) -> TensorTuple:
        return TensorTuple.make_const(self.cached_data)

    @property
    def device(self) -> Device:
        return device_of(self.cached_data)

    def __repr__(self) -> str:
        return f"needle.TensorTuple({self.cached_data!r})"

    def __str__(self) -> str:
        return f"({', '.join(str(a) for a in self.cached_data)})"

    # Named as the course names it; defined last, as it shadows the builtin in this body.
    def tuple(self) -> tuple[Tensor, ...]:
        # Each index is in range by construction: no checks, as the backward pass reads
        # every tuple adjoint this way.
        return tuple(ops.TupleGetItem(i)(self) for i in range(len(self.cached_data)))

    __hash__ = object.__hash__
    __eq__ = object.__eq__


# The backward pass is defined in needle.backward, which walks these classes, and is
# re-exported here, where the course has it; imported before the ops, which call it.
from needle.backward import (  # noqa: E402, F401, I001
    compute_gradient_of_variables,
    find_topo_sort,
    fused_vjp_gradient,
    vjp,
)
from needle import ops  # noqa: E402  (ops are built on Tensor; Tensor's operators call ops)
