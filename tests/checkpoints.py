"""What "the same run" means, checked by every test that resumes a run or trains it twice:
two checkpoints hold the same state, to the last bit."""

from __future__ import annotations

from dataclasses import fields

import numpy as np


def assert_same_state(a, b) -> None:
    """Checkpoints `a` and `b` hold the same weights, optimizer state (every buffer and
    counter), RNG state, history (all but the wall-clock seconds), early-stopping monitor
    and carried hidden states."""
    assert a.model.keys() == b.model.keys()
    for name in a.model:
        np.testing.assert_array_equal(a.model[name], b.model[name], err_msg=name)
    assert a.optimizer.keys() == b.optimizer.keys()
    for name, value in a.optimizer.items():
        if isinstance(value, dict):  # a buffer per parameter
            assert value.keys() == b.optimizer[name].keys(), name
            for i in value:
                np.testing.assert_array_equal(value[i], b.optimizer[name][i], err_msg=name)
        else:  # a counter, such as Adam's t
            assert value == b.optimizer[name], name
    np.testing.assert_array_equal(a.rng[1], b.rng[1])
    assert a.rng[2:] == b.rng[2:]
    kept = [f.name for f in fields(a.history[0]) if f.name != "seconds"] if a.history else []
    assert [[getattr(m, k) for k in kept] for m in a.history] == [
        [getattr(m, k) for k in kept] for m in b.history
    ]
    assert a.monitor == b.monitor
    assert a.carried.keys() == b.carried.keys()
    for name in a.carried:
        np.testing.assert_array_equal(a.carried[name], b.carried[name], err_msg=name)
