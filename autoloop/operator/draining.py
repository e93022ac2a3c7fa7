"""Node maintenance writes: cordon, evict, restart, annotate, uncordon, over the official client.

Every call here is idempotent, so a step repeated after a crash does no harm: cordoning a cordoned
node, evicting a pod that is gone, or restarting a Deployment that already carries this node's
restart stamp changes nothing. Draining evicts the pods of every namespace on the node (nodes are
cluster-scoped, as with `kubectl drain` and kured); restarts touch the one namespace the plan names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from kubernetes.client.exceptions import ApiException

from autoloop.api.common import GROUP, LabelSelector
from autoloop.operator import kube

RESTARTED_AT_ANNOTATION: Final = "kubectl.kubernetes.io/restartedAt"
"""The pod-template annotation `kubectl rollout restart` sets; changing it rolls the Deployment."""
MAINTENANCE_ANNOTATION: Final = f"{GROUP}/maintenance"
"""Node annotation `<plan>@<node start>`: marks that this turn's node actions were applied."""
MIRROR_POD_ANNOTATION: Final = "kubernetes.io/config.mirror"
"""Static pods' API mirrors carry this; they cannot be evicted (the kubelet owns them)."""


class Eviction(StrEnum):
    EVICTED = "Evicted"
    GONE = "Gone"
    REFUSED = "Refused"
    """A PodDisruptionBudget refused the eviction (HTTP 429): retry later."""


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    owner_kinds: tuple[str, ...] = ()
    mirror: bool = False
    finished: bool = False
    terminating: bool = False
    uid: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Budget:
    """A PodDisruptionBudget as the scheduler and the drain report need it."""

    key: str
    selector: LabelSelector
    namespace: str
    disruptions_allowed: int

    def covers(self, pod: Pod) -> bool:
        return pod.namespace == self.namespace and self.selector.matches(pod.labels)


def _pod(obj: Any) -> Pod:
    meta = obj.metadata
    return Pod(
        namespace=meta.namespace,
        name=meta.name,
        labels=dict(meta.labels or {}),
        owner_kinds=tuple(str(o.kind) for o in (meta.owner_references or [])),
        mirror=MIRROR_POD_ANNOTATION in (meta.annotations or {}),
        finished=(obj.status.phase if obj.status else None) in ("Succeeded", "Failed"),
        terminating=meta.deletion_timestamp is not None,
        uid=str(meta.uid or ""),
    )


def node_pods(clients: kube.Clients, node: str) -> list[Pod]:
    """Every pod bound to the node, in every namespace."""
    items: list[Any] = clients.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items
    return sorted((_pod(p) for p in items), key=lambda p: p.key)


def to_evict(pods: list[Pod], selector: LabelSelector | None) -> list[Pod]:
    """The pods a drain must remove: not DaemonSet-owned, not mirrors, not finished, matching the selector."""
    return [
        p
        for p in pods
        if "DaemonSet" not in p.owner_kinds
        and not p.mirror
        and not p.finished
        and (selector is None or selector.matches(p.labels))
    ]


def evict(clients: kube.Clients, pod: Pod, *, grace_period_seconds: int | None) -> tuple[Eviction, str]:
    """Ask the Eviction API to remove a pod; a PDB refusal comes back as REFUSED with its message."""
    body: dict[str, Any] = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": pod.name, "namespace": pod.namespace},
    }
    if grace_period_seconds is not None:
        body["deleteOptions"] = {"gracePeriodSeconds": grace_period_seconds}
    try:
        clients.core.create_namespaced_pod_eviction(pod.name, pod.namespace, body)  # type: ignore[arg-type]
    except ApiException as exc:
        if exc.status == 404:
            return Eviction.GONE, "already gone"
        if exc.status == 429:
            return Eviction.REFUSED, _api_message(exc)
        raise
    return Eviction.EVICTED, "evicted"


def delete_pod(clients: kube.Clients, pod: Pod, *, grace_period_seconds: int | None) -> None:
    """Delete a pod outright (spec.force only): bypasses PodDisruptionBudgets."""
    try:
        clients.core.delete_namespaced_pod(pod.name, pod.namespace, grace_period_seconds=grace_period_seconds)
    except ApiException as exc:
        if exc.status != 404:
            raise


def _api_message(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        return str(exc.reason)
    causes = [c.get("message", "") for c in (body.get("details") or {}).get("causes") or []]
    return "; ".join(m for m in [body.get("message", ""), *causes] if m)[:500] or str(exc.reason)


def budgets(clients: kube.Clients) -> list[Budget]:
    """Every PodDisruptionBudget in the cluster (drains cross namespaces, so their budgets do too)."""
    result: list[Budget] = []
    pdb: Any
    for pdb in clients.policy.list_pod_disruption_budget_for_all_namespaces().items:
        raw = pdb.spec.selector.to_dict() if pdb.spec and pdb.spec.selector else {}
        result.append(
            Budget(
                key=f"{pdb.metadata.namespace}/{pdb.metadata.name}",
                selector=LabelSelector.model_validate(
                    {
                        "match_labels": raw.get("match_labels") or {},
                        "match_expressions": raw.get("match_expressions") or [],
                    }
                ),
                namespace=pdb.metadata.namespace,
                disruptions_allowed=int(pdb.status.disruptions_allowed or 0) if pdb.status else 0,
            )
        )
    return result


def budget_pods(pods: list[Pod], all_budgets: list[Budget]) -> dict[str, int]:
    """PDB key -> how many of these pods it covers."""
    counts: dict[str, int] = {}
    for budget in all_budgets:
        covered = sum(1 for p in pods if budget.covers(p))
        if covered:
            counts[budget.key] = covered
    return counts


def cordon(clients: kube.Clients, node: str, *, owner: str) -> None:
    kube.set_cordon(clients, node, cordoned=True, owner=owner)


def uncordon(clients: kube.Clients, node: str, *, owner: str) -> bool:
    """Uncordon a node only if this plan cordoned it; True when it did."""
    found = kube.read_node(clients, node)
    if found is None or found.annotations.get(kube.CORDONED_BY_ANNOTATION) != owner:
        return False
    kube.set_cordon(clients, node, cordoned=False, owner=owner)
    return True


def annotate_node(clients: kube.Clients, node: str, annotations: dict[str, str | None]) -> None:
    clients.core.patch_node(node, {"metadata": {"annotations": annotations}})


def restart_deployments(
    clients: kube.Clients, namespace: str, selector: LabelSelector, *, stamp: str
) -> list[str]:
    """Roll the matching Deployments by setting restartedAt=stamp; those already at stamp are skipped."""
    restarted: list[str] = []
    items: list[Any] = clients.apps.list_namespaced_deployment(
        namespace, label_selector=selector.to_query()
    ).items
    for d in items:
        template_annotations = (
            (d.spec.template.metadata.annotations or {}) if d.spec.template.metadata else {}
        )
        if template_annotations.get(RESTARTED_AT_ANNOTATION) == stamp:
            continue
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: stamp}}}}}
        clients.apps.patch_namespaced_deployment(d.metadata.name, namespace, patch)
        restarted.append(str(d.metadata.name))
    return sorted(restarted)


def read_plan_status(
    clients: kube.Clients, *, plural: str, namespace: str, name: str
) -> tuple[str, dict[str, Any]]:
    """The resource's resourceVersion and status, fresh from the apiserver."""
    obj = kube.read_resource(clients, plural=plural, namespace=namespace, name=name)
    return str(obj["metadata"]["resourceVersion"]), dict(obj.get("status") or {})
