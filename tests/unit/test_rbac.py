"""The shipped user roles grant exactly what docs/api.md "Who may create what" says, no more."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
GROUP = "autoloop.x0tta6bl4.io"
BUILT_IN = {"admin", "edit", "view"}


def _roles() -> dict[str, dict[str, Any]]:
    docs = yaml.safe_load_all((ROOT / "manifests" / "base" / "rbac.yaml").read_text())
    return {d["metadata"]["name"]: d for d in docs if d and d["kind"] == "ClusterRole"}


def _table() -> dict[str, tuple[set[tuple[str, str]], set[str]]]:
    """ClusterRole -> ({(resource, verb)}, {built-in roles it aggregates to}) from the docs table."""
    text = (ROOT / "docs" / "api.md").read_text()
    section = text.split("## Who may create what", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[set[tuple[str, str]], set[str]]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not cells[0].startswith("`autoloop-"):
            continue
        name = cells[0].strip("`")
        resources = [r.strip() for r in cells[1].split(",")]
        verbs = [v.strip() for v in cells[2].split(",")]
        aggregated = {a for a in re.findall(r"[a-z]+", cells[3]) if a in BUILT_IN}
        rows[name] = ({(r, v) for r in resources for v in verbs}, aggregated)
    return rows


def _grants(role: dict[str, Any]) -> set[tuple[str, str]]:
    grants = set()
    for rule in role["rules"]:
        assert rule["apiGroups"] == [GROUP], f"{role['metadata']['name']} reaches outside {GROUP}: {rule}"
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
        grants |= {(r, v) for r in rule["resources"] for v in rule["verbs"]}
    return grants


def _aggregated(role: dict[str, Any]) -> set[str]:
    labels = role["metadata"].get("labels", {})
    prefix = "rbac.authorization.k8s.io/aggregate-to-"
    return {k.removeprefix(prefix) for k, v in labels.items() if k.startswith(prefix) and v == "true"}


def test_every_user_role_grants_exactly_its_row_of_the_table() -> None:
    table = _table()
    users = {name: role for name, role in _roles().items() if name != "autoloop-operator"}
    assert set(users) == set(table), "every shipped user role has a row, every row a role"
    for name, role in users.items():
        grants, aggregated = table[name]
        assert _grants(role) == grants, name
        assert _aggregated(role) == aggregated, name


def test_no_role_a_namespace_user_gets_can_write_maintenance_plans() -> None:
    """MaintenancePlans drain nodes: nothing that aggregates to admin/edit/view may touch them."""
    for name, role in _roles().items():
        if _aggregated(role):
            assert not any(r == "maintenanceplans" for r, _ in _grants(role)), name


def test_the_table_is_read() -> None:
    # Guards the parser: a reworded table must not make the checks above vacuous.
    table = _table()
    assert ("maintenanceplans", "create") in table["autoloop-maintenance-admin"][0]
    assert table["autoloop-edit"][1] == {"admin", "edit"}
