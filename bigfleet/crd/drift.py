"""Checks that the typed models and the CRD schemas describe the same fields.

The CRD YAML is what the API server enforces; the models are what our code
decodes. A property present on one side only is drift, reported with its path.
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The model class inside Optional[...], tuple[..., ...] or Annotated[...], if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        found = _nested_model(argument)
        if found is not None:
            return found
    return None


def _object_schema(schema: dict[str, Any]) -> dict[str, Any] | None:
    if schema.get("type") == "array":
        schema = schema.get("items", {})
    return schema if "properties" in schema else None


def compare_model(model: type[BaseModel], schema: dict[str, Any], path: str) -> list[str]:
    """Every property that the model and the object schema do not both have, recursively."""
    properties: dict[str, Any] = schema.get("properties", {})
    fields = {(info.alias or name): info for name, info in model.model_fields.items()}
    problems = [
        f"{path}.{p}: in the CRD schema, not in {model.__name__}"
        for p in sorted(properties.keys() - fields.keys())
    ]
    problems += [
        f"{path}.{f}: in {model.__name__}, not in the CRD schema"
        for f in sorted(fields.keys() - properties.keys())
    ]
    for name in sorted(properties.keys() & fields.keys()):
        inner_model = _nested_model(fields[name].annotation)
        inner_schema = _object_schema(properties[name])
        if inner_model is not None and inner_schema is not None:
            problems += compare_model(inner_model, inner_schema, f"{path}.{name}")
        elif (inner_model is None) != (inner_schema is None):
            problems.append(f"{path}.{name}: structured on one side only")
    return problems


def compare_kind(
    crd: dict[str, Any], spec_type: type[BaseModel], status_type: type[BaseModel] | None
) -> list[str]:
    """Drift between one CRD's served version and the kind's spec and status models."""
    (version,) = (v for v in crd["spec"]["versions"] if v.get("storage"))
    top = version["schema"]["openAPIV3Schema"]["properties"]
    problems = compare_model(spec_type, top["spec"], "spec")
    if status_type is not None:
        problems += compare_model(status_type, top["status"], "status")
    elif top["status"].get("properties"):
        problems.append("status: the CRD has properties but the kind has no status model")
    return problems
