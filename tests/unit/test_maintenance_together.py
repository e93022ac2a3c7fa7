"""MaintenancePlan wiring of `spec.routing.groupBy` into the schedule: the together-key of Limits."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from autoloop.api.maintenanceplan import MaintenancePlan
from autoloop.operator import kube
from autoloop.operator.maintenance_planning import Observation, build_problem

ROUTES = [{"namespace": "shop", "name": "web"}]
ZONE = "topology.kubernetes.io/zone"


@pytest.mark.parametrize(
    ("routing", "together"),
    [
        ({"routes": ROUTES, "groupBy": ZONE}, ZONE),
        ({"groupBy": ZONE}, None),  # no route to steer: nothing to keep together for
        ({"routes": ROUTES}, None),
    ],
)
def test_group_by_with_routes_keeps_groups_together(routing: dict[str, object], together: str | None) -> None:
    plan = MaintenancePlan.model_validate(
        {"spec": {"windows": [{"start": "02:00", "end": "05:00"}], "routing": routing}}
    )
    nodes = [kube.Node("n0", {ZONE: "a"}, {}, 1.0, 1.0, 10, False, True)]
    problem = build_problem(
        plan,
        nodes=nodes,
        obs=Observation({}, [], None),
        skip=set(),
        pdb_pods={},
        pdb_allowed={},
        start=datetime(2026, 1, 5, tzinfo=UTC),
    )
    assert problem.limits.together == together
