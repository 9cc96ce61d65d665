"""needle.data.safe_pickle: numpy arrays and plain data load as `pickle` would load them; a
pickle that names any other global is refused before it can call it (shown by a marker file
that the same pickle creates when loaded with plain `pickle`)."""

from __future__ import annotations

import os
import pickle
import shlex

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from needle.data.safe_pickle import load_pickle
from needle.errors import UsageError

# Protocol 3 (Python 3.0) onward writes bytes as bytes; 0-2 need _codecs.encode, refused.
PROTOCOLS = list(range(3, pickle.HIGHEST_PROTOCOL + 1))
DTYPES = ["uint8", "int8", ">i2", "<i4", "int64", "float32", ">f8", "bool", "complex64"]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    array=st.sampled_from(DTYPES).flatmap(
        lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    ),
    protocol=st.sampled_from(PROTOCOLS),
    fortran=st.booleans(),
)
def test_arrays_pickled_by_numpy_load_unchanged(tmp_path, array, protocol, fortran):
    if fortran:
        array = np.asfortranarray(array)
    path = tmp_path / "array.pkl"
    path.write_bytes(pickle.dumps(array, protocol=protocol))
    back = load_pickle(path)
    # What plain pickle builds (numpy itself turns '>i2' native below protocol 5).
    expected = pickle.loads(path.read_bytes())
    assert type(back) is np.ndarray
    assert back.dtype == expected.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_plain_data_loads_as_pickle_loads_it(tmp_path, protocol):
    value = {
        b"batch_label": b"training batch 1 of 5",
        b"labels": [3, 1, 4, 1, 5],
        b"data": np.arange(12, dtype=np.uint8).reshape(2, 6),
        b"filenames": [b"cat_1.png", "dog_2.png"],
        b"meta": (1.5, None, True, -7, 2**70),
    }
    path = tmp_path / "batch.pkl"
    path.write_bytes(pickle.dumps(value, protocol=protocol))
    back = load_pickle(path)
    expected = pickle.loads(path.read_bytes())
    assert back.keys() == expected.keys()
    for key in expected:
        if isinstance(expected[key], np.ndarray):
            np.testing.assert_array_equal(back[key], expected[key])
        else:
            assert back[key] == expected[key]


class _System:
    """Unpickles as os.system(command): the classic pickle that runs a shell."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _Eval:
    def __init__(self, source: str) -> None:
        self.source = source

    def __reduce__(self):
        return (eval, (self.source,))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_pickle_that_runs_a_command_is_refused_and_runs_nothing(tmp_path, protocol):
    marker = tmp_path / "MARKER"
    payload = _System(f"touch {shlex.quote(str(marker))}")
    path = tmp_path / "data_batch_1"
    # Hidden inside the data a CIFAR batch really holds.
    path.write_bytes(pickle.dumps({b"labels": [1, 2], b"data": payload}, protocol=protocol))
    with pytest.raises(UsageError) as caught:
        load_pickle(path)
    assert str(caught.value).startswith(
        f"'{path}' is a pickle that names the global {os.system.__module__}.system, which needle "
        "refuses to load"
    )
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the control: plain pickle runs the command
    assert marker.exists()


def test_builtins_eval_is_refused(tmp_path):
    marker = tmp_path / "MARKER"
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps([_Eval(f"open({str(marker)!r}, 'w').close()")]))
    with pytest.raises(UsageError, match=r"names the global builtins\.eval, which needle refuses"):
        load_pickle(path)
    assert not marker.exists()
    pickle.loads(path.read_bytes())
    assert marker.exists()


@pytest.mark.parametrize(
    "name", ["os.getcwd", "numpy.load", "numpy.frombuffer", "pickle.loads", "_codecs.decode"]
)
def test_every_other_global_is_refused(tmp_path, name):
    module, attr = name.rsplit(".", 1)
    path = tmp_path / "p.pkl"
    path.write_bytes(b"\x80\x02c" + f"{module}\n{attr}\n".encode() + b")R.")  # call name()
    with pytest.raises(UsageError, match=rf"names the global {module}\.{attr},"):
        load_pickle(path)


def _py2_string(value: bytes) -> bytes:
    return b"U" + bytes([len(value)]) + value  # SHORT_BINSTRING: a Python 2 str


def python2_batch(labels: list[int], data: bytes, shape: tuple[int, int]) -> bytes:
    """The opcodes Python 2's cPickle wrote for CIFAR's {'labels': [...], 'data': uint8 array}:
    Python 2 str values, and numpy.core's _reconstruct with a (version, shape, dtype, fortran,
    raw bytes) state."""
    rows, cols = shape
    dtype = (
        b"cnumpy\ndtype\n" + _py2_string(b"u1") + b"K\x00K\x01\x87R"
        b"(K\x03" + _py2_string(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    )
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85"
        + _py2_string(b"b")
        + b"\x87R(K\x01"
        + bytes([0x4B, rows, 0x4B, cols])
        + b"\x86"
        + dtype
        + b"\x89T"
        + len(data).to_bytes(4, "little")
        + data
        + b"tb"
    )
    label_list = b"](" + b"".join(b"K" + bytes([y]) for y in labels) + b"e"
    return (
        b"\x80\x02}(" + _py2_string(b"labels") + label_list + _py2_string(b"data") + array + b"u."
    )


def test_a_python2_cifar_batch_loads_with_bytes_keys(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 12), dtype=np.uint8)
    path = tmp_path / "data_batch_1"
    path.write_bytes(python2_batch([4, 0, 9], images.tobytes(), images.shape))
    batch = load_pickle(path)
    assert batch.keys() == {b"labels", b"data"} and batch[b"labels"] == [4, 0, 9]
    np.testing.assert_array_equal(batch[b"data"], images)
    # The same bytes through plain pickle, the course's reading:
    expected = pickle.loads(path.read_bytes(), encoding="bytes")
    np.testing.assert_array_equal(expected[b"data"], batch[b"data"])


def test_python3_protocol_2_bytes_are_refused_by_name(tmp_path):
    path = tmp_path / "old.pkl"
    path.write_bytes(pickle.dumps({b"data": np.zeros(3, np.uint8)}, protocol=2))
    with pytest.raises(UsageError, match=r"names the global _codecs\.encode, which needle"):
        load_pickle(path)


def test_missing_and_damaged_files_are_named(tmp_path):
    with pytest.raises(UsageError, match=f"'{tmp_path / 'nope'}' does not exist"):
        load_pickle(tmp_path / "nope")
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps({b"data": np.zeros(100, np.uint8)})[:-20])
    with pytest.raises(UsageError, match=f"'{path}' is not a readable pickle"):
        load_pickle(path)
