"""Every example manifest is a valid resource of its kind (the models are the CRDs' source)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from autoloop.api.maintenanceplan import MaintenancePlan
from autoloop.api.optimizationloop import OptimizationLoop
from autoloop.api.resourceallocation import ResourceAllocation

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"
MODELS = {m.KIND: m for m in (OptimizationLoop, ResourceAllocation, MaintenancePlan)}


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_parses(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    ours = [d for d in docs if d["kind"] in MODELS]
    assert ours or path.name == "workload.yaml", f"{path.name} holds no autoloop resource"
    for doc in ours:
        MODELS[doc["kind"]].model_validate(doc)


def test_a_broken_example_is_refused() -> None:
    # The same check the test above relies on, shown to bite: a quantity the apiserver refuses.
    doc = yaml.safe_load((EXAMPLES / "optimizationloop-usage.yaml").read_text())
    doc["spec"]["knobs"]["cpu"]["min"] = "fifty"
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        OptimizationLoop.model_validate(doc)
