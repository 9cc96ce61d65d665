"""Convolution and the ops around it: flip, dilate / undilate, and conv (NHWC, a
cross-correlation as PyTorch's conv2d).

conv's forward is one matrix product over the im2col view of the padded input. Its two
gradients are ops of their own: `ConvInputGrad` (out_grad · bᵀ added back window by window,
col2im, one product per kernel tap) and `ConvWeightGrad` (im2col(a)ᵀ · out_grad, one product
over the forward pass's im2col matrix). All three are bilinear, and their gradients are each
other: the gradient of either gradient op is conv and the other one. So conv can be
differentiated again at any stride and padding, and no step ever convolves a dilated
out_grad full of zeros. `conv_nchw` is the same op on NCHW images.

The window work (im2col, col2im, the taps that read only padding) is `needle.ops.im2col`;
every compute goes through the array primitives of `needle.ops.strided`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from needle.autograd import Tensor, TensorOp
from needle.errors import UsageError
from needle.ops import conv_cases, strided
from needle.ops.im2col import col2im, cropped_kernel, im2col, used_taps
from needle.ops.registry import OpParam, Setting, as_axes, normalize_axes, register
from needle.ops.shape import summation

Axes = int | tuple[int, ...] | None
ALL = slice(None)


def _integer(value: Any, name: str, op: str, low: int) -> int:
    """`value` as an int, refused unless it is an integer ≥ `low`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise UsageError(f"{op}: {name} must be an integer ≥ {low} (got {value!r})")
    return int(value)


AXES = OpParam("axes", "axes", "the axes, e.g. --axes 0,1 (or none for all)")
DILATION = OpParam("dilation", "int", "zeros inserted after each element, e.g. --dilation 1")


# -- flip ------------------------------------------------------------------------------------


class Flip(TensorOp):
    """Reverse `a` along `axes` (None: every axis); the gradient flips back."""

    def __init__(self, axes: Axes):
        self.axes = as_axes(axes)

    def compute(self, a: Any) -> Any:
        return strided.flip(a, normalize_axes(self.axes, a.ndim))

    def gradient(self, out_grad: Tensor, node: Tensor):
        return flip(out_grad, self.axes)


@register(
    Flip,
    params=[AXES],
    shapes_for=lambda p: [(2, 3, 4)],
    random_case=conv_cases.flip_case,
    settings=[{"axes": (0, 1)}, {"axes": 2}, {"axes": (0, -1)}],
)
def flip(a: Tensor, axes: Axes) -> Tensor:
    """a reversed along `axes`."""
    return Flip(axes)(a)


# -- dilate and undilate ---------------------------------------------------------------------


def _dilated_axes(axes: Axes, ndim: int) -> tuple[int, ...]:
    """The listed axes an `ndim`-axis input has, as sorted non-negative ints: an axis ≥ ndim
    is ignored (the course dilates axes (2, 3) of kernels and (1, 2) of images alike)."""
    if axes is None:
        return normalize_axes(None, ndim)
    if isinstance(axes, (int, np.integer)):
        axes = (axes,)
    return normalize_axes(tuple(axis for axis in axes if axis < ndim), ndim)


def _every(step: int, axes: tuple[int, ...], ndim: int) -> strided.Index:
    """The index of every `step`-th element from 0 along `axes`, and all of the others."""
    return tuple(slice(None, None, step) if axis in axes else ALL for axis in range(ndim))


class Dilate(TensorOp):
    """Insert `dilation` zeros after every element along each of `axes` (an axis ≥ ndim is
    ignored): size n becomes n·(dilation + 1), trailing zeros included, and
    out[…, i·(dilation + 1), …] = a[…, i, …]. Dilation 0 is the identity.

    `shape`, when given, is the output's shape instead, with fewer trailing zeros: undilate's
    gradient puts its out_grad back into the shape of undilate's input.
    """

    def __init__(self, axes: Axes, dilation: int, *, shape: tuple[int, ...] | None = None):
        self.axes = as_axes(axes)
        self.dilation = _integer(dilation, "dilation", "dilate", 0)
        self.shape = None if shape is None else tuple(shape)

    def compute(self, a: Any) -> Any:
        axes, step = _dilated_axes(self.axes, a.ndim), self.dilation + 1
        shape = self.shape or tuple(n * step if i in axes else n for i, n in enumerate(a.shape))
        out = strided.zeros(shape, like=a)
        strided.write(out, _every(step, axes, a.ndim), a)
        return out

    def gradient(self, out_grad: Tensor, node: Tensor):
        return undilate(out_grad, self.axes, self.dilation)


@register(
    Dilate,
    params=[AXES, DILATION],
    shapes_for=lambda p: [(2, 3, 4)],
    random_case=conv_cases.dilate_case,
    settings=[
        {"axes": (0, 1), "dilation": 1},
        {"axes": 2, "dilation": 2},
        {"axes": (1, 3), "dilation": 1},  # axis 3 of a 3-axis input: ignored
        {"axes": (0,), "dilation": 0},
    ],
)
def dilate(a: Tensor, axes: Axes, dilation: int) -> Tensor:
    """a with `dilation` zeros after every element along `axes`."""
    return Dilate(axes, dilation)(a)


class Undilate(TensorOp):
    """Keep every (dilation + 1)-th element from index 0 along each of `axes` (an axis ≥ ndim
    is ignored): size n becomes ⌈n / (dilation + 1)⌉, and undilate(dilate(a)) = a. The
    gradient dilates out_grad back into the input's shape."""

    def __init__(self, axes: Axes, dilation: int):
        self.axes = as_axes(axes)
        self.dilation = _integer(dilation, "dilation", "undilate", 0)

    def compute(self, a: Any) -> Any:
        axes = _dilated_axes(self.axes, a.ndim)
        return strided.read(a, _every(self.dilation + 1, axes, a.ndim))

    def gradient(self, out_grad: Tensor, node: Tensor):
        return Dilate(self.axes, self.dilation, shape=node.inputs[0].shape)(out_grad)


@register(
    Undilate,
    params=[AXES, DILATION],
    shapes_for=conv_cases.undilate_shapes,
    random_case=conv_cases.undilate_case,
    settings=[
        {"axes": (0, 1), "dilation": 1},
        {"axes": 2, "dilation": 2},
        Setting({"axes": (1, 3), "dilation": 2}, ((2, 5, 3),)),  # 5 = 2·3 − 1: one zero short
    ],
)
def undilate(a: Tensor, axes: Axes, dilation: int) -> Tensor:
    """Every (dilation + 1)-th element of a along `axes`: dilate's left inverse."""
    return Undilate(axes, dilation)(a)


# -- conv ------------------------------------------------------------------------------------


def _conv_kernel(a_shape: tuple[int, ...], b_shape: tuple[int, ...], padding: int) -> int:
    """The kernel size K of a conv of an (N, H, W, Cin) input with a (K, K, Cin, Cout)
    kernel; shapes that do not fit, or a kernel larger than the padded input, are refused."""
    if len(a_shape) != 4:
        raise UsageError(f"conv takes an NHWC input (N, H, W, Cin), got shape {a_shape}")
    if len(b_shape) != 4 or b_shape[0] != b_shape[1]:
        raise UsageError(f"conv takes a kernel of shape (K, K, Cin, Cout), got {b_shape}")
    if a_shape[3] != b_shape[2]:
        raise UsageError(
            f"conv: the input has {a_shape[3]} channels (shape {a_shape}), the kernel "
            f"expects {b_shape[2]} (shape {b_shape})"
        )
    kernel, height, width = b_shape[0], a_shape[1] + 2 * padding, a_shape[2] + 2 * padding
    if kernel > min(height, width):
        raise UsageError(
            f"conv: kernel size {kernel} is larger than the padded input {height}×{width} "
            f"(input {a_shape[1]}×{a_shape[2]}, padding {padding})"
        )
    return kernel


NHWC, NCHW = (0, 2, 3, 1), (0, 3, 1, 2)  # the permutations between the two image layouts


class ConvOp(TensorOp):
    """The settings every conv op carries: `stride` ≥ 1, zero `padding` ≥ 0 around H and W,
    and the layout of its images (inputs, out_grads, outputs; never the kernel):
    `channels_first` takes and gives (N, C, H, W), as views of the NHWC arrays it computes
    on, so an NCHW layer needs no permute nodes around the op."""

    def __init__(self, stride: int = 1, padding: int = 0, *, channels_first: bool = False):
        self.stride = _integer(stride, "stride", "conv", 1)
        self.padding = _integer(padding, "padding", "conv", 0)
        self.channels_first = bool(channels_first)

    def _nhwc(self, images: Any) -> Any:
        """Images as the NHWC array the computation reads (a view when channels come first)."""
        return strided.permute(images, NHWC) if self.channels_first else images

    def _in_layout(self, images: Any) -> Any:
        """NHWC images computed here, in the op's layout (a view when channels come first)."""
        return strided.permute(images, NCHW) if self.channels_first else images

    def _size(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """(H, W) of images of `shape` in the op's layout."""
        return shape[2:4] if self.channels_first else shape[1:3]

    def _options(self) -> dict[str, Any]:
        return {"channels_first": self.channels_first}


class Conv(ConvOp):
    """Cross-correlation of an NHWC input `a` (N, H, W, Cin) with a kernel `b`
    (K, K, Cin, Cout), `a` zero-padded by p = `padding` around H and W, windows every
    s = `stride` rows and columns:

        out[n, i, j, o] = Σ_{di, dj, c} pad(a)[n, i·s + di, j·s + dj, c] · b[di, dj, c, o]

    of shape (N, (H + 2p − K)//s + 1, (W + 2p − K)//s + 1, Cout), plus a (Cout,) bias
    when a third input is given. The forward pass is the im2col matrix of pad(a),
    (N·Ho·Wo, K·K·Cin), times b as a (K·K·Cin, Cout) matrix.
    """

    def compute(self, a: Any, b: Any, bias: Any = None) -> Any:
        inputs = (a, b) if bias is None else (a, b, bias)
        a = self._nhwc(a)
        kernel = _conv_kernel(a.shape, b.shape, self.padding)
        cols, (n, ho, wo) = im2col(a, kernel, self.stride, self.padding)
        out = strided.matmul(
            cols, cropped_kernel(b, used_taps(a.shape, kernel, self.stride, self.padding))
        )
        if bias is not None:
            if bias.shape != (b.shape[3],):
                raise UsageError(
                    f"conv: the bias has shape {bias.shape}, the kernel's {b.shape[3]} output "
                    f"channels need ({b.shape[3]},)"
                )
            # into the product itself, a new array: no second one of its size
            strided.add_into(out, (ALL, ALL), bias)
        # Kept for the kernel's gradient, which multiplies the same matrix: the backward
        # pass then copies no window twice. Without a graph the op is dropped with it.
        self.keep(inputs, cols)
        return self._in_layout(strided.reshape(out, (n, ho, wo, b.shape[3])))

    def gradient(self, out_grad: Tensor, node: Tensor):
        a, b = node.inputs[:2]
        cols = self.kept(node)  # handed over once; a second pass copies again
        settings = (self.stride, self.padding)
        # An input that needs no gradient (the images of a first layer) skips its product.
        grad_a = grad_b = None
        if a.requires_grad:
            size = self._size(a.shape)
            grad_a = ConvInputGrad(*settings, size=size, **self._options())(out_grad, b)
        if b.requires_grad:
            weight_grad = ConvWeightGrad(*settings, kernel=b.shape[0], cols=cols, **self._options())
            grad_b = weight_grad(a, out_grad)
        if len(node.inputs) == 2:
            return grad_a, grad_b
        # The bias's: Σ over N, Ho and Wo.
        return grad_a, grad_b, summation(out_grad, (0, 2, 3) if self.channels_first else (0, 1, 2))


class ConvInputGrad(ConvOp):
    """conv's gradient in its input: for an out_grad g (N, Ho, Wo, Cout) and a kernel b, the
    (N, H, W, Cin) array ∂⟨g, conv(a, b)⟩/∂a, `size` = (H, W): every window's share of
    g · bᵀ added back into place (col2im), one product per kernel tap.

    Bilinear in (g, b): for a cotangent u of the output, ⟨u, ConvInputGrad(g, b)⟩ =
    ⟨g, conv(u, b)⟩, so the gradient in g is conv(u, b) and in b ConvWeightGrad(u, g).
    """

    def __init__(
        self, stride: int, padding: int, *, size: tuple[int, int], channels_first: bool = False
    ):
        super().__init__(stride, padding, channels_first=channels_first)
        self.size = tuple(size)

    def compute(self, g: Any, b: Any) -> Any:
        return self._in_layout(col2im(self._nhwc(g), b, self.size, self.stride, self.padding))

    def gradient(self, out_grad: Tensor, node: Tensor):
        g, b = node.inputs
        settings, options = (self.stride, self.padding), self._options()
        grad_g = Conv(*settings, **options)(out_grad, b) if g.requires_grad else None
        grad_b = None
        if b.requires_grad:
            grad_b = ConvWeightGrad(*settings, kernel=b.shape[0], **options)(out_grad, g)
        return grad_g, grad_b


class ConvWeightGrad(ConvOp):
    """conv's gradient in its kernel: for an input a and an out_grad g (N, Ho, Wo, Cout),
    the (K, K, Cin, Cout) array ∂⟨g, conv(a, b)⟩/∂b = im2col(pad(a))ᵀ · g, one product;
    `kernel` = K. `cols`, when given, is im2col(pad(a)) as conv's forward pass made it,
    taken instead of a second copy.

    Bilinear in (a, g): for a cotangent v of the output, ⟨v, ConvWeightGrad(a, g)⟩ =
    ⟨g, conv(a, v)⟩, so the gradient in a is ConvInputGrad(g, v) and in g conv(a, v).
    """

    def __init__(
        self,
        stride: int,
        padding: int,
        *,
        kernel: int,
        cols: Any = None,
        channels_first: bool = False,
    ):
        super().__init__(stride, padding, channels_first=channels_first)
        self.kernel = kernel
        self.cols = cols

    def compute(self, a: Any, g: Any) -> Any:
        a, g = self._nhwc(a), self._nhwc(g)
        cols, self.cols = self.cols, None
        if cols is None:
            cols = im2col(a, self.kernel, self.stride, self.padding)[0]
        n, ho, wo, c_out = g.shape
        product = strided.matmul(
            strided.permute(cols, (1, 0)), strided.reshape(g, (n * ho * wo, c_out))
        )
        rows, columns = used_taps(a.shape, self.kernel, self.stride, self.padding)
        taps = strided.reshape(product, (len(rows), len(columns), a.shape[3], c_out))
        if len(rows) == len(columns) == self.kernel:
            return taps
        # The taps that read only padding multiplied zeros: their gradient is zero.
        full = strided.zeros((self.kernel, self.kernel, a.shape[3], c_out), like=product)
        at = (slice(rows.start, rows.stop), slice(columns.start, columns.stop), ALL, ALL)
        strided.write(full, at, taps)
        return full

    def gradient(self, out_grad: Tensor, node: Tensor):
        a, g = node.inputs
        settings, options = (self.stride, self.padding), self._options()
        grad_a = None
        if a.requires_grad:
            size = self._size(a.shape)
            grad_a = ConvInputGrad(*settings, size=size, **options)(g, out_grad)
        grad_g = Conv(*settings, **options)(a, out_grad) if g.requires_grad else None
        return grad_a, grad_g


CONV_PARAMS = [
    OpParam("stride", "int", "rows and columns between windows, e.g. --stride 2", default=1),
    OpParam("padding", "int", "zeros around H and W, e.g. --padding 1", default=1),
]


@register(
    Conv,
    n_inputs=2,
    params=CONV_PARAMS,
    shapes_for=conv_cases.conv_shapes,
    random_case=conv_cases.conv_case,
    settings=[
        {"stride": 1, "padding": 1},
        {"stride": 2, "padding": 1},
        {"stride": 1, "padding": 0},
        Setting({"stride": 3, "padding": 2}, ((1, 4, 5, 2), (2, 2, 2, 1))),
    ],
)
def conv(
    a: Tensor, b: Tensor, stride: int = 1, padding: int = 1, *, bias: Tensor | None = None
) -> Tensor:
    """2-D cross-correlation of NHWC a with a (K, K, Cin, Cout) kernel b."""
    if bias is None:
        return Conv(stride, padding)(a, b)
    # Added to the product in the same node: no second image-sized array, no second node.
    return Conv(stride, padding)(a, b, bias)


@register(
    Conv,
    n_inputs=2,
    params=CONV_PARAMS,
    shapes_for=conv_cases.channels_first(conv_cases.conv_shapes),
    random_case=conv_cases.channels_first(conv_cases.conv_case),
    settings=[
        {"stride": 1, "padding": 1},
        {"stride": 2, "padding": 1},
        Setting({"stride": 3, "padding": 2}, ((1, 2, 4, 5), (2, 2, 2, 1))),
    ],
)
def conv_nchw(
    a: Tensor, b: Tensor, stride: int = 1, padding: int = 1, *, bias: Tensor | None = None
) -> Tensor:
    """conv of NCHW images a (N, Cin, H, W), giving (N, Cout, Ho, Wo): views of the NHWC
    arrays conv computes, so NCHW layers need no permute nodes around it."""
    op = Conv(stride, padding, channels_first=True)
    return op(a, b) if bias is None else op(a, b, bias)
