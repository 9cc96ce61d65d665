"""`--set key.path=value`: one override applied to a raw config, its value read as YAML."""

from __future__ import annotations

import re
from typing import Any

from needle.errors import ConfigError
from needle.train.source import KeyPath, SourceMap, dotted, read_yaml, show_value

# -- overrides -------------------------------------------------------------------------------

_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|(\d+)")


def parse_key_path(text: str, *, label: str | None = None) -> KeyPath:
    """Read a key path: `model.layers[2].linear` (or `model.layers.2.linear`) becomes
    ("model", "layers", 2, "linear"). `label` names the source in messages."""
    label = label or f"--set {text}"
    path: list[str | int] = []
    rest = text
    while rest:
        match = _SEGMENT.match(rest)
        if not match:
            raise ConfigError(
                label,
                f"cannot read the key path at '{rest}' "
                "(write names and list indices, such as model.layers[2].linear)",
            )
        name, bracket, bare = match.groups()
        path.append(name if name is not None else int(bracket or bare))
        rest = rest[match.end() :]
        if rest.startswith("."):
            rest = rest[1:]
            if not rest:
                raise ConfigError(label, "the key path ends with '.'")
        elif rest and not rest.startswith("["):
            raise ConfigError(label, f"cannot read the key path at '{rest}'")
    return tuple(path)


def apply_override(data: dict[str, Any], source: SourceMap, override: str) -> None:
    """Apply one `key.path=value` to the raw config; the value is read as YAML."""
    label = f"--set {override}"
    key_text, sep, value_text = override.partition("=")
    if not sep or not key_text.strip():
        raise ConfigError(label, "expected key.path=value, such as train.epochs=5")
    path = parse_key_path(key_text.strip(), label=label)
    value, _ = read_yaml(value_text, label, inline=True)
    node: Any = data
    for depth, part in enumerate(path[:-1]):
        _check_container(node, part, path[: depth + 1], label)
        if isinstance(node, dict) and part not in node:
            node[part] = {}  # `--set data.path=x` may name a section the file leaves out
            source.replace(path[: depth + 1], label)
        node = node[part]
    _check_container(node, path[-1], path, label)
    node[path[-1]] = value
    source.replace(path, label)


def _check_container(node: Any, part: str | int, path: KeyPath, label: str) -> None:
    parent = dotted(path[:-1]) or "the config"
    if isinstance(part, int):
        if not isinstance(node, list):
            raise ConfigError(label, f"{parent} is not a list (got {show_value(node)})")
        if not 0 <= part < len(node):
            last = len(node) - 1
            raise ConfigError(label, f"{parent} has {len(node)} entries (0 to {last}), not {part}")
    elif not isinstance(node, dict):
        hint = " (use an index, such as [0])" if isinstance(node, list) else ""
        raise ConfigError(label, f"{parent} is not a mapping (got {show_value(node)}){hint}")
