"""needle's ops: each a `TensorOp` class with a function of the same name, registered in
`REGISTRY` (see `needle.ops.registry`)."""

import types as _types

from needle.autograd import TensorTupleOp
from needle.ops.conv import Conv, Dilate, Flip, Undilate, conv, conv_nchw, dilate, flip, undilate
from needle.ops.cross_entropy import CrossEntropy, CrossEntropyGrad, cross_entropy
from needle.ops.elementwise import (
    AddScalar,
    DivScalar,
    EWiseAdd,
    EWiseDiv,
    EWiseMul,
    EWisePow,
    Exp,
    Log,
    MulScalar,
    Negate,
    PowerScalar,
    RDivScalar,
    ReLU,
    Sigmoid,
    Tanh,
    add,
    add_scalar,
    divide,
    divide_scalar,
    exp,
    log,
    mul_scalar,
    multiply,
    negate,
    power,
    power_scalar,
    rdivide_scalar,
    relu,
    sigmoid,
    tanh,
)
from needle.ops.gather import GatherRows, ScatterRows, gather_rows
from needle.ops.lstm import LSTMGates, LSTMGatesGrad, lstm_gates
from needle.ops.matmul import MatMul, matmul
from needle.ops.normalize import Normalize, normalize
from needle.ops.pool import (
    AvgPool2d,
    AvgPoolInputGrad,
    MaxPool2d,
    MaxPoolGather,
    MaxPoolScatter,
    avgpool2d,
    maxpool2d,
)
from needle.ops.recurrence import Recurrence, RecurrenceGrad, lstm_layer, rnn_layer
from needle.ops.registry import REGISTRY, OpParam, OpSpec, Setting, get_op
from needle.ops.shape import (
    BroadcastTo,
    Permute,
    Reshape,
    Summation,
    SumToShape,
    Transpose,
    broadcast_to,
    permute,
    reshape,
    sum_to_shape,
    summation,
    transpose,
)
from needle.ops.softmax import LogSoftmax, LogSumExp, Softmax, logsoftmax, logsumexp, softmax
from needle.ops.standardize import (
    AffineStandardizeGrad,
    GroupSum,
    InverseStd,
    Standardize,
    StandardizeGrad,
    standardize,
)
from needle.ops.take_along_rows import PutAlongRows, TakeAlongRows, take_along_rows
from needle.ops.tuples import (
    MakeTensorTuple,
    Split,
    Stack,
    TupleGetItem,
    make_tuple,
    split,
    stack,
    tuple_get_item,
)

# Functions, op classes and the registry, but not the submodules.
__all__ = [
    name
    for name, value in list(globals().items())
    if not name.startswith("_") and not isinstance(value, _types.ModuleType)
]
