"""The JSON Schema of a config file, short forms included, for editors (`needle schema`)."""

from __future__ import annotations

import json
from typing import Any

from needle.train.config import TrainConfig, TrainSettings
from needle.train.constructors import Choice
from needle.train.early_stopping import METRICS
from needle.train.layers import LAYER_TYPES


def _replace_layer_refs(node: Any) -> Any:
    if isinstance(node, dict):
        if node == {"needle_layer": True}:
            return {"$ref": "#/$defs/Layer"}
        return {key: _replace_layer_refs(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_replace_layer_refs(item) for item in node]
    return node


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a config file, short forms included, for editors."""
    schema = TrainConfig.model_json_schema()
    defs = schema.setdefault("$defs", {})
    variants: list[dict[str, Any]] = [{"enum": sorted(LAYER_TYPES)}]
    for name, cls in LAYER_TYPES.items():
        settings = cls.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(settings.pop("$defs", {}))
        settings["properties"].pop("type", None)
        if "required" in settings:
            settings["required"] = [r for r in settings["required"] if r != "type"]
        settings["additionalProperties"] = False
        defs[cls.__name__ + "Settings"] = settings
        forms: list[dict[str, Any]] = [
            {"$ref": f"#/$defs/{cls.__name__}Settings"},
            {"type": "null"},
        ]
        if cls.short is not None:
            forms.append(settings["properties"][cls.short])
        variants.append(
            {
                "type": "object",
                "properties": {name: {"anyOf": forms}},
                "required": [name],
                "additionalProperties": False,
            }
        )
    defs["Layer"] = {
        "description": "a layer: a name, or one key naming its type",
        "anyOf": variants,
    }
    for cls in LAYER_TYPES.values():
        defs.pop(cls.__name__, None)
    for key, field in TrainSettings.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, Choice):
            # a name alone is the short form of the mapping
            choice = defs["TrainSettings"]["properties"][key]
            names = sorted(field.annotation.constructors)
            choice["anyOf"] = [{"enum": names}, {"$ref": choice.pop("$ref")}]
    # early_stopping's short form: a metric name alone
    stopping = defs["TrainSettings"]["properties"]["early_stopping"]
    stopping["anyOf"].insert(0, {"enum": list(METRICS)})
    schema = _replace_layer_refs(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "needle training config"
    return schema


def json_schema_text() -> str:
    """`json_schema()` as indented JSON text."""
    return json.dumps(json_schema(), indent=2)
