"""Reverse-mode differentiation over the graph of `needle.autograd`: the backward pass.

`find_topo_sort` orders a graph (iteratively, so deep graphs do not hit Python's recursion
limit); `compute_gradient_of_variables` applies the chain rule in reverse over it, summing
each node's adjoint and storing it in `.grad` (what `Tensor.backward()` runs); `vjp` is the
same walk stopped at given nodes, returning their adjoints and writing no `.grad`;
`fused_vjp_gradient` is the gradient of a fused gradient op, from the composition it fuses.
Every adjoint is built of needle ops, so it can be differentiated again. `needle.autograd`
re-exports these names, as the course has them there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from needle.autograd import Tensor, TensorOp, TensorTuple, Value
from needle.backend_ndarray import api


def find_topo_sort(node_list: Iterable[Value], stop: Iterable[Value] = ()) -> list[Value]:
    """Post-order depth-first walk over `node.inputs`: every node after all of its inputs.

    Iterative, so a chain of any length works; visits inputs in order, so the result is
    deterministic. (Nodes hash by identity, so they are their own keys.) The nodes in `stop`
    are neither walked through nor listed.
    """
    order: list[Value] = []
    visited: set[Value] = set(stop)
    for root in node_list:
        if root in visited:
            continue
        visited.add(root)
        stack = [(root, iter(root.inputs))]
        while stack:
            node, children = stack[-1]
            for child in children:
                if child not in visited:
                    visited.add(child)
                    stack.append((child, iter(child.inputs)))
                    break
            else:
                stack.pop()
                order.append(node)
    return order


class _Cast(TensorOp):
    """The engine's conversion of a gradient to its input's dtype; differentiable, so a
    converted gradient can be differentiated again (its own gradient converts back)."""

    def __init__(self, dtype: np.dtype):
        self.dtype = dtype

    def compute(self, a: Any) -> Any:
        return api(a).astype(a, self.dtype)

    def gradient(self, out_grad: Tensor, node: Tensor):
        return _Cast(node.inputs[0].dtype)(out_grad)


def _in_dtype(grad: Tensor, dtype: Any) -> Tensor:
    """`grad` in `dtype` when that is a floating one.

    Ops compute in numpy's promoted dtype, so a float32 input used with a float64 one gets a
    float64 product; converted here, every op's gradient has its input's dtype. An integer
    or boolean input keeps the floating gradient: in its own dtype it would be truncated.
    """
    if grad.cached_data.dtype == dtype:  # an NDArray's dtype is a name, equal to np.dtype's
        return grad
    dtype = np.dtype(dtype)
    if dtype.kind not in "fc":
        return grad
    return _Cast(dtype)(grad)


def compute_gradient_of_variables(output_tensor: Tensor, out_grad: Tensor) -> None:
    """Reverse-mode differentiation of `output_tensor` with cotangent `out_grad`.

    Stores the summed adjoint of every node that requires a gradient in its `.grad`, in the
    node's dtype (see `_in_dtype`). An op's `gradient` may return None for an input that
    needs no gradient.

    A leaf's `.grad` keeps its graph, so it can be differentiated again. An intermediate
    node's `.grad` is stored detached: a stored graph there would point back at the node
    itself, and such cycles keep every activation alive until the garbage collector runs.

    A TensorTuple's adjoint is gathered element by element (see `_add_part`) and becomes one
    TensorTuple, zeros where no element was read, when its node's turn comes.
    """
    adjoints: dict[Value, Any] = {}
    _add_adjoint(adjoints, output_tensor, out_grad)
    _reverse_pass(adjoints, find_topo_sort([output_tensor]), store=True)


def vjp(outputs: Sequence[Value], cotangents: Sequence[Value], inputs: Sequence[Value]) -> list:
    """The vector-Jacobian product: the adjoints of `inputs` under `cotangents` for
    `outputs`, None for an input that needs no gradient or that no output depends on.

    The walk stops at `inputs` (they may be any nodes, not only leaves) and writes no
    `.grad`. Each adjoint is built of ops, so it can be differentiated again: a fused op's
    second derivative can be the vjp of the composition it fuses (`ops.lstm_layer`).
    """
    adjoints: dict[Value, Any] = {}
    for output, cotangent in zip(outputs, cotangents, strict=True):
        if output.requires_grad:
            _add_adjoint(adjoints, output, cotangent)
    roots = [x for x in outputs if x.requires_grad]
    _reverse_pass(adjoints, find_topo_sort(roots, stop=inputs), store=False)
    found = []
    for x in inputs:
        adjoint = adjoints.get(x)
        if adjoint is not None and type(x) is TensorTuple:
            adjoint = _assemble(x, adjoint)
        found.append(adjoint)
    return found


def fused_vjp_gradient(
    composition: Any, inputs: Sequence[Value], primals: int, out_grad: Value
) -> tuple:
    """The gradient of a fused vector-Jacobian product op from the composition it fuses.

    The op computes F(x, u) = the vjp of `composition` at the primals x = inputs[:primals]
    under the cotangents u = inputs[primals:] (its outputs', in order), in arrays of its own.
    Its gradient under `out_grad` w is that of ⟨w, F(x, u)⟩ in (x, u): here the vjp of the
    vjp of the composition, built of ops, so it differentiates again. One entry an input,
    None where an input needs no gradient."""
    # Primals that need no gradient become leaves that do, so the composition's vjp has a
    # gradient in each to take ⟨w, ·⟩ of (a constant still shapes the others).
    xs = [
        x if x.requires_grad else Tensor.make_const(x.cached_data, requires_grad=True)
        for x in inputs[:primals]
    ]
    cotangents = list(inputs[primals:])
    outputs = composition(*xs)
    if isinstance(outputs, TensorTuple):
        outputs = outputs.tuple()
    elif isinstance(outputs, Tensor):
        outputs = [outputs]
    weights = out_grad.tuple() if isinstance(out_grad, TensorTuple) else (out_grad,)
    total = None
    for first, w in zip(vjp(outputs, cotangents, xs), weights, strict=True):
        if first is not None:
            term = (first * w).sum()
            total = term if total is None else total + term
    if total is None:
        return (None,) * len(inputs)
    ones = Tensor.make_const(api(total.cached_data).ones_like(total.cached_data))
    grads = vjp([total], [ones], xs + cotangents)
    return tuple(g if x.requires_grad else None for x, g in zip(inputs, grads, strict=True))


def _reverse_pass(adjoints: dict[Value, Any], order: list[Value], store: bool) -> None:
    """Propagate `adjoints` back over `order` (a topological order), each node's gradient
    adding into its inputs'; `store`: keep each node's adjoint in its `.grad`."""
    make_const = Tensor.make_const  # the loop runs once per node: its lookups hoisted
    for node in reversed(order):
        adjoint = adjoints.pop(node, None)
        if adjoint is None or not node.requires_grad:
            continue
        if type(node) is TensorTuple:
            adjoint = _assemble(node, adjoint)
        op = node.op
        if op is None:
            if store:
                node.grad = adjoint
            continue
        if store:
            node.grad = make_const(adjoint.cached_data)  # detached
        if type(op) is ops.TupleGetItem:
            # Reading element i adds to element i's adjoint only. Its gradient as an op, a
            # whole tuple with zeros elsewhere, would make T reads of a T-step `split` (every
            # recurrent layer) cost T² additions of zeros.
            _add_part(adjoints, node.inputs[0], op.index, adjoint)
            continue
        grads = op.gradient(adjoint, node)
        if type(grads) is not tuple:
            grads = (grads,)
        for child, grad in zip(node.inputs, grads, strict=True):
            if grad is not None and child.requires_grad:
                _add_adjoint(adjoints, child, grad)


def _add_adjoint(adjoints: dict[Value, Any], node: Value, grad: Value) -> None:
    """Add `grad` to `node`'s adjoint; contributions are summed in the order they arrive, so
    the result is deterministic."""
    if type(node) is TensorTuple:
        for index, part in enumerate(grad.tuple()):
            _add_part(adjoints, node, index, part)
        return
    dtype = node.cached_data.dtype
    if grad.cached_data.dtype != dtype:
        grad = _in_dtype(grad, dtype)
    earlier = adjoints.get(node)
    adjoints[node] = grad if earlier is None else earlier + grad


def _add_part(adjoints: dict[Value, Any], node: TensorTuple, index: int, grad: Tensor) -> None:
    """Add `grad` to the adjoint of element `index` of `node`, kept as a list of parts (None
    where nothing has arrived)."""
    parts = adjoints.setdefault(node, [None] * len(node))
    grad = _in_dtype(grad, node.cached_data[index].dtype)
    parts[index] = grad if parts[index] is None else parts[index] + grad


def _assemble(node: TensorTuple, parts: list[Tensor | None]) -> TensorTuple:
    """A tuple node's adjoint from its parts, zeros for the elements nothing read."""
    return ops.make_tuple(
        *[
            Tensor.make_const(api(array).zeros_like(array)) if part is None else part
            for array, part in zip(node.cached_data, parts, strict=True)
        ]
    )


from needle import ops  # noqa: E402  (the ops' gradients are what this pass runs)
