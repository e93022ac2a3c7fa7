"""The CRDs: generated from the models, structural, with CEL rules and printer columns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from autoloop.api import KINDS
from autoloop.api.crd import custom_resource_definition, render_yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.KIND)
def test_checked_in_crd_matches_models(kind: Any) -> None:
    path = ROOT / "crds" / f"{kind.PLURAL}.yaml"
    assert path.read_text() == render_yaml(kind), f"{path} drifted from the models: run `autoloop crds`"


def test_field_reference_matches_models() -> None:
    from autoloop.api.crd import render_reference

    path = ROOT / "docs" / "api-reference.md"
    assert path.read_text() == render_reference(KINDS), "docs/api-reference.md drifted: run `autoloop crds`"


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        out.append((path, node))
        for key, value in node.get("properties", {}).items():
            out.extend(_walk(value, f"{path}.{key}"))
        if "items" in node:
            out.extend(_walk(node["items"], f"{path}[]"))
        if isinstance(node.get("additionalProperties"), dict):
            out.extend(_walk(node["additionalProperties"], f"{path}{{}}"))
    return out


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.KIND)
def test_schema_is_structural(kind: Any) -> None:
    schema = custom_resource_definition(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "$ref" not in node and "anyOf" not in node and "allOf" not in node, path
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"untyped node at {path}"
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True, path


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.KIND)
def test_names_category_and_status_subresource(kind: Any) -> None:
    crd = custom_resource_definition(kind)
    names = crd["spec"]["names"]
    assert names["categories"] == ["autoloop"]
    assert names["shortNames"] == list(kind.SHORT_NAMES)
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"] for c in version["additionalPrinterColumns"]}
    assert {"Ready", "Age"} <= columns


def test_short_names() -> None:
    assert [k.SHORT_NAMES for k in KINDS] == [("oloop",), ("ralloc",), ("mplan",)]


def test_cel_rules_reach_the_schema() -> None:
    text = render_yaml(KINDS[0]) + render_yaml(KINDS[1]) + render_yaml(KINDS[2])
    for rule in (
        "self.min <= self.max",
        "quantity(string(self.min)).compareTo(quantity(string(self.max))) <= 0",
        "has(self.metric) != has(self.query)",
        "self.start != self.end",
        "!has(self.namespace)",
    ):
        assert rule in text, rule


def test_nested_defaults_apply() -> None:
    # An object with defaults inside must itself default to {} or the apiserver never fills it.
    spec = custom_resource_definition(KINDS[0])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    safety = spec["properties"]["spec"]["properties"]["safety"]
    assert safety["default"] == {}
    assert safety["properties"]["cooldown"]["default"] == "5m"
    assert safety["properties"]["sloGuard"]["default"] == {}


def test_yaml_round_trips() -> None:
    for kind in KINDS:
        assert yaml.safe_load(render_yaml(kind)) == custom_resource_definition(kind)
