"""Turn the pydantic models into CustomResourceDefinitions with structural OpenAPI schemas.

Kubernetes wants a *structural* schema: every node typed, no `$ref`, no `anyOf` carrying types,
OpenAPI 3.0 keywords. Pydantic emits JSON Schema 2020-12, so this module inlines references,
drops `null` alternatives, rewrites exclusive bounds and adds `default: {}` to optional objects
so the apiserver applies nested defaults.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from pydantic import BaseModel

from autoloop.api.common import GROUP, VERSION

CATEGORY = "autoloop"

_DROPPED_KEYS = frozenset({"title", "$defs", "additionalProperties_", "discriminator", "const"})


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """Inline `$ref`s recursively, merging keys that stand beside a reference."""
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        merged = {**target, **siblings}
        if "x-kubernetes-validations" in target and "x-kubernetes-validations" in siblings:
            merged["x-kubernetes-validations"] = (
                target["x-kubernetes-validations"] + siblings["x-kubernetes-validations"]
            )
        return _resolve(merged, defs)
    return {key: _resolve(value, defs) for key, value in node.items()}


def _drop_null(node: dict[str, Any]) -> dict[str, Any]:
    """`anyOf: [X, null]` becomes X (keeping the outer description and default)."""
    for key in ("anyOf", "oneOf"):
        options = node.get(key)
        if not options:
            continue
        kept = [o for o in options if o.get("type") != "null"]
        if len(kept) == 1:
            rest = {k: v for k, v in node.items() if k != key}
            return {**kept[0], **rest}
        node = {**node, key: kept}
    return node


def _is_nullable(node: dict[str, Any]) -> bool:
    """An optional (`X | None`) field: absent means 'not set', so it must get no default."""
    return any(o.get("type") == "null" for o in node.get("anyOf", []) + node.get("oneOf", []))


def _structural(node: Any) -> Any:
    if isinstance(node, list):
        return [_structural(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = _drop_null(node)
    if node.get("x-kubernetes-int-or-string"):
        node = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf", "type")}
    elif "anyOf" in node:
        raise ValueError(f"cannot express a union in a structural schema: {node}")
    out: dict[str, Any] = {}
    nullable: set[str] = set()
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "default" and value is None:
            continue
        if key == "exclusiveMinimum" and not isinstance(value, bool):
            out["minimum"], out["exclusiveMinimum"] = value, True
            continue
        if key == "exclusiveMaximum" and not isinstance(value, bool):
            out["maximum"], out["exclusiveMaximum"] = value, True
            continue
        if key == "properties":
            nullable = {name for name, prop in value.items() if _is_nullable(prop)}
            out[key] = {name: _structural(prop) for name, prop in value.items()}
            continue
        out[key] = _structural(value)
    if out.get("x-kubernetes-preserve-unknown-fields"):
        out["type"] = "object"
        out.pop("additionalProperties", None)
    elif out.get("type") == "object" and out.get("additionalProperties") is True:
        out.pop("additionalProperties")
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if "properties" in out:
        required = set(out.get("required", [])) | nullable
        for name, prop in out["properties"].items():
            # `default: {}` lets the apiserver fill nested defaults. Not for optional fields
            # (an absent selector must stay absent) nor objects with required fields.
            if (
                name not in required
                and prop.get("type") == "object"
                and "properties" in prop
                and not prop.get("required")
            ):
                prop.setdefault("default", {})
    return out


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a model."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    schema: dict[str, Any] = _structural(_resolve(raw, defs))
    return schema


def custom_resource_definition(kind: type[BaseModel]) -> dict[str, Any]:
    """The CRD of one kind: schema, status subresource, names, category and printer columns."""
    schema = openapi_schema(kind)
    properties = schema["properties"]
    properties["status"].pop("default", None)
    root = {
        "type": "object",
        "description": (kind.__doc__ or "").strip(),
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": properties["spec"],
            "status": properties["status"],
        },
        "required": ["spec"],
    }
    plural = kind.PLURAL  # type: ignore[attr-defined]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "autoloop"},
        },
        "spec": {
            "group": GROUP,
            "scope": getattr(kind, "SCOPE", "Namespaced"),
            "names": {
                "kind": kind.KIND,  # type: ignore[attr-defined]
                "listKind": f"{kind.KIND}List",  # type: ignore[attr-defined]
                "plural": plural,
                "singular": kind.SINGULAR,  # type: ignore[attr-defined]
                "shortNames": list(kind.SHORT_NAMES),  # type: ignore[attr-defined]
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": list(kind.PRINTER_COLUMNS),  # type: ignore[attr-defined]
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def render_yaml(kind: type[BaseModel]) -> str:
    header = "# Generated by `autoloop crds` from autoloop/api; do not edit by hand.\n"
    body = yaml.safe_dump(custom_resource_definition(kind), sort_keys=False, width=100)
    return header + body


def _reference_rows(node: dict[str, Any], path: str, required: bool) -> list[str]:
    kind = node.get("type", "int-or-string" if node.get("x-kubernetes-int-or-string") else "")
    if kind == "array" and isinstance(node.get("items"), dict):
        kind = f"[]{node['items'].get('type', '')}"
    facts = []
    if "enum" in node:
        facts.append("one of " + ", ".join(f"`{v}`" for v in node["enum"]))
    if "default" in node and node["default"] != {}:
        facts.append(f"default `{node['default']}`")
    for key, word in (("minimum", "≥"), ("maximum", "≤"), ("minItems", "items ≥"), ("maxItems", "items ≤")):
        if key in node:
            facts.append(f"{word} {node[key]}")
    if "pattern" in node:
        facts.append(f"pattern `{node['pattern']}`")
    rules = [f"Rule: {r['message']}." for r in node.get("x-kubernetes-validations", [])]
    text = node.get("description", "")
    description = " ".join(filter(None, [text, ("; ".join(facts) + ".") if facts else "", *rules]))
    cell = description.replace("|", "\\|")
    rows = [f"| `{path}` | {kind} | {'yes' if required else ''} | {cell} |"]
    children = node.get("properties", {})
    if kind.startswith("[]") and isinstance(node.get("items"), dict):
        children = node["items"].get("properties", {})
        path = f"{path}[]"
        node = node["items"]
    needed = set(node.get("required", []))
    for name, child in children.items():
        rows.extend(_reference_rows(child, f"{path}.{name}", name in needed))
    return rows


def render_reference(kinds: tuple[type[BaseModel], ...]) -> str:
    """A Markdown field reference of every kind's spec, from the same schema the CRDs carry."""
    out = [
        "# API field reference",
        "",
        "Generated by `autoloop crds` from `autoloop/api`; do not edit by hand. The prose guide is docs/api.md.",
        "",
    ]
    for kind in kinds:
        crd = custom_resource_definition(kind)
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        names = crd["spec"]["names"]
        out += [
            f"## {names['kind']} (`{GROUP}/{VERSION}`, short name `{names['shortNames'][0]}`)",
            "",
            schema["description"],
            "",
            "| field | type | required | meaning and limits |",
            "| --- | --- | --- | --- |",
            *_reference_rows(schema["properties"]["spec"], "spec", True),
            "",
        ]
    return "\n".join(out)
