"""Safe YAML with positions: every value and key keeps the file, line and column it came
from, so a mistake anywhere in a config becomes one line that points at it.

Tags outside plain YAML (`!!python/...`) are refused before anything is constructed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from needle.errors import ConfigError

KeyPath = tuple[str | int, ...]

# -- positions: where each value came from ---------------------------------------------------


def dotted(path: Sequence[str | int]) -> str:
    """("model", "layers", 2, "linear") -> "model.layers[2].linear"."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@dataclass
class SourceMap:
    """Where each value and key of a config was written: a file position or a `--set`."""

    label: str  # the file name as the user gave it
    values: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)  # 1-based line, column
    keys: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    overrides: dict[KeyPath, str] = field(default_factory=dict)  # path -> "--set a.b=1"

    def resolve(self, loc: Sequence[str | int]) -> tuple[KeyPath, KeyPath]:
        """Match a validation location against what was written.

        Returns (the deepest written path along `loc`, the path to show the user). Segments the
        file does not have are skipped: a union's tag (`train.optimizer` has no `adam` level),
        and the field a short form fills (`linear: 64` has no `out_features` level). Skipped
        segments in the middle are dropped from the shown path; trailing ones (a missing key,
        a short form's field) stay, because they say which setting is meant.
        """
        found: KeyPath = ()
        shown: list[str | int] = []
        pending: list[str | int] = []
        for part in loc:
            if found + (part,) in self.values:
                found += (part,)
                shown.append(part)
                pending = []
            else:
                pending.append(part)
        return found, tuple(shown + pending)

    def locate(self, path: KeyPath, *, key: bool = False) -> tuple[str, int | None, int | None]:
        """Where `path` was written: (file label, line, column), of its key with `key=True`;
        or (the `--set` that wrote it, None, None)."""
        for depth in range(len(path), -1, -1):
            if path[:depth] in self.overrides:
                return self.overrides[path[:depth]], None, None
        if key and path in self.keys:
            line, col = self.keys[path]
        else:
            line, col = self.values.get(path, (1, 1))
        return self.label, line, col

    def error(
        self, loc: Sequence[str | int], message: str, *, key: bool = False, hide: int = 0
    ) -> ConfigError:
        """A ConfigError about `loc`, placed where the deepest written part of it was written
        (on its key with `key=True`, when all of `loc` was written). `hide` drops that many
        trailing segments from the key path shown."""
        found, shown = self.resolve(loc)
        source, line, column = self.locate(found, key=key and found == tuple(loc))
        shown = shown[: len(shown) - hide]
        return ConfigError(source, message, line, column, dotted(shown) or None)

    def replace(self, path: KeyPath, label: str) -> None:
        """Record that a `--set` wrote `path`: positions inside it no longer apply."""
        for table in (self.values, self.keys, self.overrides):
            for known in [p for p in table if p[: len(path)] == path]:
                del table[known]
        self.values[path] = (0, 0)
        self.overrides[path] = label


def show_value(value: Any) -> str:
    """A value as the user would write it in YAML, short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return repr(value)


# -- safe YAML with positions ----------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, plus YAML 1.2 floats: `1e-3` is a number, not the string '1e-3'."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)

_PLAIN_TAGS = {
    "tag:yaml.org,2002:" + name for name in ("str", "int", "float", "bool", "null", "map", "seq")
}
_MAX_NODES = 100_000  # aliases can expand a small file into a huge tree ("billion laughs")
_MAX_DEPTH = 64  # real configs nest about 8 deep; far deeper would exhaust Python's stack
_TOO_DEEP = f"the config nests more than {_MAX_DEPTH} levels deep"


def _pos(mark: yaml.Mark) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1


def read_yaml(text: str, label: str, *, inline: bool = False) -> tuple[Any, SourceMap]:
    """Parse one YAML document of plain data; return it and the position of every value/key.

    Raises ConfigError ("label:line:col: ...") for syntax errors, tags other than plain
    YAML's, duplicate keys, keys that are not scalars, alias cycles and nesting deeper than
    `_MAX_DEPTH`. Nothing is constructed from a tag, so `!!python/object/apply:os.system`
    fails before it could run. `inline=True` reads a `--set` value: positions are columns of
    the value, "label: column 3 of the value: ...".
    """
    source = SourceMap(label)
    loader = _Loader(text)

    def fail(mark: yaml.Mark | None, message: str, *, key: str | None = None) -> ConfigError:
        if mark is None:
            return ConfigError(label, message)
        line, col = _pos(mark)
        return ConfigError(label, message, None if inline else line, col, key)

    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            # PyYAML composes nested collections recursively; the stack gives out first.
            raise fail(loader.get_mark(), _TOO_DEEP) from None
        if node is None:
            return None, source
        count = 0

        def build(node: yaml.Node, path: KeyPath, active: set[int]) -> Any:
            nonlocal count
            count += 1
            if count > _MAX_NODES:
                raise fail(node.start_mark, f"the config has more than {_MAX_NODES} values")
            if len(path) > _MAX_DEPTH:
                raise fail(node.start_mark, _TOO_DEEP)
            if node.tag not in _PLAIN_TAGS:
                raise fail(
                    node.start_mark,
                    f"YAML tag '{node.tag.replace('tag:yaml.org,2002:', '!!')}' is not allowed: "
                    "configs are plain data "
                    "(mappings, lists, numbers, strings, true/false, null)",
                )
            source.values[path] = _pos(node.start_mark)
            if isinstance(node, yaml.ScalarNode):
                return loader.construct_object(node)
            if id(node) in active:
                raise fail(node.start_mark, "a YAML alias refers to the mapping or list it is in")
            active = active | {id(node)}
            if isinstance(node, yaml.SequenceNode):
                return [build(item, path + (i,), active) for i, item in enumerate(node.value)]
            loader.flatten_mapping(node)  # resolve `<<: *defaults` merge keys
            mapping: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _PLAIN_TAGS:
                    raise fail(key_node.start_mark, "keys must be plain names")
                key = loader.construct_object(key_node)
                if key in mapping:
                    line, col = source.keys[path + (key,)]
                    first = f"at column {col}" if inline else f"on line {line}"
                    raise fail(
                        key_node.start_mark,
                        f"duplicate key (first written {first})",
                        key=dotted(path + (key,)),
                    )
                source.keys[path + (key,)] = _pos(key_node.start_mark)
                mapping[key] = build(value_node, path + (key,), active)
            return mapping

        return build(node, (), set()), source
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = err.problem or err.context or "invalid YAML"
        raise fail(mark, f"YAML syntax error: {problem}") from None
    except yaml.YAMLError as err:
        raise fail(None, f"YAML syntax error: {err}") from None
    finally:
        loader.dispose()
