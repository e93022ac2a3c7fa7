"""The API of autoloop: pydantic models for the spec and status of each custom resource.

Contract: these models are the single source of truth. `autoloop.api.crd` turns them into the CRD
YAML in `crds/`; the operator parses objects with them; engines may use them as plain data.
This package imports nothing else of ours.
"""

from autoloop.api.common import GROUP, VERSION
from autoloop.api.maintenanceplan import MaintenancePlan
from autoloop.api.optimizationloop import OptimizationLoop
from autoloop.api.resourceallocation import ResourceAllocation

KINDS = (OptimizationLoop, ResourceAllocation, MaintenancePlan)

__all__ = ["GROUP", "KINDS", "VERSION", "MaintenancePlan", "OptimizationLoop", "ResourceAllocation"]
