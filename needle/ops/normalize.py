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
from needle.ops.shape import sum_to_shape


class Normalize(TensorOp):
    """y = (x − mean) · r · scale + shift, r = 1/√(var + eps), every input broadcast against x
    as numpy broadcasts (a batch norm's running statistics and affine map: one value per
    channel, in a shape with size-1 axes elsewhere).

    With c = x − mean and s = scale · r, for an out_grad g (each summed down to its input's
    shape): ∂x = g · s, ∂mean = −g · s, ∂var = −½ · g · c · scale · r³, ∂scale = g · c · r,
    ∂shift = g.
    """

    def __init__(self, eps: float = 1e-5):
        if not eps >= 0:
            raise UsageError(f"normalize: eps must be ≥ 0 (got {eps!r})")
        self.eps = float(eps)

    def compute(self, x: Any, mean: Any, var: Any, scale: Any, shift: Any) -> Any:
        xp = api(x)
        s = xp.multiply(scale, xp.divide(1.0, xp.sqrt(xp.add(var, self.eps))))
        t = xp.subtract(shift, xp.multiply(mean, s))
        out = xp.multiply(x, s)
        if np.broadcast_shapes(out.shape, t.shape) != out.shape:  # t is the wider one
            return xp.add(out, t)
        # t added into x · s: one new array, not two.
        strided.add_into(out, (slice(None),) * out.ndim, xp.broadcast_to(t, out.shape))
        return out

    def gradient(self, out_grad: Tensor, node: Tensor):
        x, mean, var, scale, shift = node.inputs
        r = (var + self.eps) ** -0.5
        g_s = out_grad * (scale * r)
        g_c = out_grad * (x - mean)
        return (
            sum_to_shape(g_s, x.shape),
            -sum_to_shape(g_s, mean.shape),
            sum_to_shape(g_c * (scale * r**3 * -0.5), var.shape),
            sum_to_shape(g_c * r, scale.shape),
            sum_to_shape(out_grad, shift.shape),
        )


def _group_shape(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A shape that broadcasts to `shape`: some of its trailing axes, some of them size 1."""
    kept = shape[int(rng.integers(0, len(shape) + 1)) :]
    return tuple(1 if rng.random() < 0.5 else n for n in kept)


def _normalize_case(rng: np.random.Generator):
    """x of 1–3 axes (sizes 1–4) and four statistics' shapes that broadcast to it."""
    shape = random_shape(rng, 1, 3)
    eps = float(rng.choice([1e-5, 0.1, 1.0]))
    return {"eps": eps}, [shape] + [_group_shape(rng, shape) for _ in range(4)]


@register(
    Normalize,
    n_inputs=5,
    params=[OpParam("eps", "scalar", "added to the variance, e.g. --eps 1e-5", default=1e-5)],
    shapes_for=lambda p: [(4, 3)] + [(1, 3)] * 4,
    random_case=_normalize_case,
    draws=[normal, normal, positive, normal, normal],
    settings=[
        {"eps": 1e-5},
        Setting({"eps": 0.1}, ((2, 3, 2, 2),) + ((1, 3, 1, 1),) * 4),  # BatchNorm2d's
        Setting({"eps": 1e-5}, ((2, 3),) + ((3,),) * 4),  # statistics without the kept axis
    ],
)
def normalize(
    x: Tensor, mean: Tensor, var: Tensor, scale: Tensor, shift: Tensor, eps: float = 1e-5
) -> Tensor:
    """(x − mean) / √(var + eps) · scale + shift, with the statistics given."""
    return Normalize(eps)(x, mean, var, scale, shift)
