"""normalize: (x − μ) / √(σ² + eps) · w + b with the statistics given, not computed: a batch
norm's evaluation, as one op.

Written as a chain of ops, a batch norm's evaluation is about a dozen graph nodes, most of
them on (C,) arrays (the statistics' reshapes, σ² + eps, its root, w divided by it, μ times
that, b minus it) and two passes over x, each with an array of x's size. `Normalize` is one
node: the per-group numbers s = w / √(σ² + eps) and t = b − μ · s on the small arrays, then
y = x · s + t in one new array. Its gradient is written in needle ops, so it can be
differentiated again.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from needle.autograd import Tensor, TensorOp
from needle.backend_ndarray import api
from needle.errors import UsageError
from needle.ops import strided
from needle.ops.registry import OpParam, Setting, normal, positive, random_shape, register
from needle.ops.shape import reshape, summation
from needle.ops.standardize import GroupLayout


class Normalize(TensorOp):
    """y = (x − mean) · r · scale + shift, r = 1/√(var + eps), with mean, var, scale and
    shift one value per entry of x's axis `axis` (a batch norm's running statistics and
    affine map: (C,) arrays, for the channel axis), the same for every other index.

    With c = x − mean, s = scale · r, and Σ over every axis but `axis`, for an out_grad g:
    ∂x = g · s, ∂mean = −Σ g · s, ∂var = −½ · Σ(g · c) · scale · r³, ∂scale = Σ(g · c) · r,
    ∂shift = Σ g.
    """

    def __init__(self, eps: float = 1e-5, axis: int = -1):
        if not eps >= 0:
            raise UsageError(f"normalize: eps must be ≥ 0 (got {eps!r})")
        self.eps, self.axis = float(eps), int(axis)

    def _view(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape a (C,) array takes to broadcast along `axis` of an input of `shape`:
        size 1 on every other axis (none after the last: numpy adds leading ones)."""
        ndim = len(shape)
        if not -ndim <= self.axis < ndim:
            raise UsageError(f"normalize: axis {self.axis} is out of range for shape {shape}")
        axis = self.axis % ndim
        return (shape[axis],) + (1,) * (ndim - 1 - axis)

    def compute(self, x: Any, mean: Any, var: Any, scale: Any, shift: Any) -> Any:
        view = self._view(x.shape)
        for name, given in (("mean", mean), ("var", var), ("scale", scale), ("shift", shift)):
            if given.shape != view[:1]:
                raise UsageError(
                    f"normalize: the {name} has shape {given.shape}; one value per entry of "
                    f"axis {self.axis} of an input of shape {x.shape} is {view[:1]}"
                )
        xp = api(x)
        s = xp.multiply(scale, xp.divide(1.0, xp.sqrt(xp.add(var, self.eps))))
        t = xp.subtract(shift, xp.multiply(mean, s))
        axis = self.axis % x.ndim
        layout = GroupLayout.of(x, tuple(i for i in range(x.ndim) if i != axis))
        if layout.order is not None:  # the rows of x's memory, groups innermost
            out = xp.multiply(layout.rows(x), s)
            strided.add_into(out, (slice(None), slice(None)), t)  # one new array, not two
            return layout.back(out)
        out = xp.multiply(x, xp.reshape(s, view))
        strided.add_into(out, (slice(None),) * out.ndim, xp.reshape(t, view))
        return out

    def gradient(self, out_grad: Tensor, node: Tensor):
        x, mean, var, scale, shift = node.inputs
        view = self._view(x.shape)
        others = tuple(i for i in range(x.ndim) if i != self.axis % x.ndim)

        def along(t: Tensor) -> Tensor:  # a (C,) tensor seen along `axis`
            return t if t.shape == view else reshape(t, view)

        def per_group(t: Tensor) -> Tensor:  # Σ over every other axis: back to (C,)
            return summation(t, others) if others else t

        r = (var + self.eps) ** -0.5
        g_s = out_grad * along(scale * r)
        sum_g_c = per_group(out_grad * (x - along(mean)))
        return (
            g_s,
            -per_group(g_s),
            sum_g_c * (scale * r**3 * -0.5),
            sum_g_c * r,
            per_group(out_grad),
        )


def _normalize_case(rng: np.random.Generator):
    """x of 1–3 axes (sizes 1–4), any of its axes, and (C,) statistics for it."""
    shape = random_shape(rng, 1, 3)
    axis = int(rng.integers(-len(shape), len(shape)))
    eps = float(rng.choice([1e-5, 0.1, 1.0]))
    return {"eps": eps, "axis": axis}, [shape] + [(shape[axis],)] * 4


@register(
    Normalize,
    n_inputs=5,
    params=[
        OpParam("eps", "scalar", "added to the variance, e.g. --eps 1e-5", default=1e-5),
        OpParam("axis", "int", "the axis the statistics run along, e.g. --axis 1", default=-1),
    ],
    shapes_for=lambda p: [(4, 3)] + [(3,)] * 4,
    random_case=_normalize_case,
    draws=[normal, normal, positive, normal, normal],
    settings=[
        {"eps": 1e-5, "axis": -1},
        Setting({"eps": 0.1, "axis": 1}, ((2, 3, 2, 2),) + ((3,),) * 4),  # BatchNorm2d's
        Setting({"eps": 1e-5, "axis": 0}, ((3, 2),) + ((3,),) * 4),
    ],
)
def normalize(
    x: Tensor,
    mean: Tensor,
    var: Tensor,
    scale: Tensor,
    shift: Tensor,
    eps: float = 1e-5,
    axis: int = -1,
) -> Tensor:
    """(x − mean) / √(var + eps) · scale + shift, with (C,) statistics given for `axis`."""
    return Normalize(eps, axis)(x, mean, var, scale, shift)
