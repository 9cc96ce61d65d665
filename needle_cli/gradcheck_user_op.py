"""`needle gradcheck --op FILE.py:ClassName`: a TensorOp class from the user's own file.

It is their code: the file is imported from that path with importlib, and nothing else is
looked up. Each way it can go wrong (no such file, a file that does not import, no such
class, a class that is not a TensorOp) is one line and exit 2.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any


def load_op_class(text: str) -> type:
    """The class `ClassName` defined in `FILE.py`, given as `FILE.py:ClassName`."""
    import importlib.util

    from needle.autograd import TensorOp
    from needle.errors import UsageError, did_you_mean

    path_text, colon, name = text.rpartition(":")
    if not colon or not path_text or not name.isidentifier():
        raise UsageError(f"--op expects FILE.py:ClassName, e.g. my_ops.py:MyExp (got '{text}')")
    path = Path(path_text)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "not found"
        raise UsageError(f"--op file '{path}' {what}; give a Python file, e.g. my_ops.py:MyExp")
    # A name of its own per file, so two files with one stem do not replace each other.
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    module_name = f"needle_user_op_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"--op file '{path}' cannot be imported as Python (is it a .py file?)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up there
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # their code: whatever it raises, it is theirs to fix
        del sys.modules[module_name]
        raise UsageError(f"--op file '{path}' raised {_one_line(err)} when imported") from None
    if not hasattr(module, name):
        ops = _op_classes(module, TensorOp)
        hint = did_you_mean(name, ops) or (
            f" its TensorOp classes: {', '.join(ops)}" if ops else " it defines no TensorOp class"
        )
        raise UsageError(f"--op file '{path}' has no class '{name}';{hint}")
    found = getattr(module, name)
    if not (isinstance(found, type) and issubclass(found, TensorOp)):
        kind = "a class" if isinstance(found, type) else f"a {type(found).__name__}"
        raise UsageError(
            f"'{name}' in '{path}' is {kind}, not a subclass of needle's TensorOp "
            "(from needle.autograd import TensorOp)"
        )
    return found


def _op_classes(module: Any, base: type) -> list[str]:
    return sorted(
        name
        for name, value in vars(module).items()
        if isinstance(value, type) and issubclass(value, base) and value is not base
    )


def _one_line(err: Exception) -> str:
    """`SyntaxError: invalid syntax (line 3)`: the error's type and the first line of it."""
    if isinstance(err, SyntaxError):
        return f"SyntaxError: {err.msg} (line {err.lineno})"
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
