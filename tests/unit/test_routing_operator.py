"""The operator's rights on routes: the shipped ClusterRole grants exactly what docs/api.md says.

operator.routing itself is tested against the real apiserver in tests/cluster/test_routing_operator.py.
"""

from __future__ import annotations

from pathlib import Path

import yaml


def test_the_operator_may_patch_routes_exactly_as_the_docs_table_says() -> None:
    root = Path(__file__).resolve().parents[2]
    groups = {"gateway.networking.k8s.io", "networking.istio.io"}
    docs = yaml.safe_load_all((root / "manifests" / "base" / "rbac.yaml").read_text())
    role = next(
        d for d in docs if d and d["kind"] == "ClusterRole" and d["metadata"]["name"] == "autoloop-operator"
    )
    rules = [r for r in role["rules"] if set(r["apiGroups"]) & groups]
    granted = {
        (g, r, v)
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    text = (root / "docs" / "api.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| gateway.networking.k8s.io"))
    cells = [[x.strip() for x in c.split(",")] for c in row.strip("|").split("|")[:3]]
    assert granted == {(g, r, v) for g in cells[0] for r in cells[1] for v in cells[2]}
    assert {v for _, _, v in granted} == {"get", "list", "watch", "patch"}
    # Reading the routes' backends needs pods and Services, which the role already reads.
    assert any("pods" in r["resources"] and "list" in r["verbs"] for r in role["rules"])
