"""Kubernetes reads and writes the handlers need, over the official client.

Every write to a workload carries the decision id in an annotation, so after a crash the
operator can tell whether a recorded decision reached the target (intent, act, confirm).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from autoloop.api.common import GROUP, TargetRef, parse_quantity

DECISION_ANNOTATION: Final = f"{GROUP}/decision"
"""Annotation on a target naming the last decision autoloop applied to it."""
MANAGED_BY_ANNOTATION: Final = f"{GROUP}/managed-by"
"""Annotation on a target naming the loop (namespace/name) that last changed it."""


class TargetNotFound(Exception):
    """The workload a resource names does not exist in its namespace."""


class StatusRejected(Exception):
    """The apiserver refused a status write (a bug on our side: the status broke the schema)."""


class Conflict(Exception):
    """The object changed under us (HTTP 409); the pass retries with fresh data."""


@dataclass
class Clients:
    """API clients shared by the handlers of one operator process."""

    api: client.ApiClient
    core: client.CoreV1Api
    apps: client.AppsV1Api
    policy: client.PolicyV1Api
    custom: client.CustomObjectsApi
    autoscaling: client.AutoscalingV2Api

    @classmethod
    def connect(
        cls,
        kubeconfig: str | None = None,
        *,
        on_request: Callable[[str, int], None] | None = None,
        pool_size: int | None = None,
    ) -> Clients:
        """In-cluster ServiceAccount, else KUBECONFIG; or the given kubeconfig file. `on_request`
        is called with the verb and the request body's size for every call the handlers make.
        `pool_size`: apiserver connections kept for reuse (the client's default is 5 per CPU);
        give it the number of handler threads."""
        configuration = client.Configuration()
        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        else:
            try:
                config.load_incluster_config(client_configuration=configuration)
            except config.ConfigException:
                config.load_kube_config(client_configuration=configuration)
        if pool_size is not None:
            configuration.connection_pool_maxsize = pool_size
        api = CountingApiClient(configuration, on_request=on_request)
        return cls(
            api=api,
            core=client.CoreV1Api(api),
            apps=client.AppsV1Api(api),
            policy=client.PolicyV1Api(api),
            custom=client.CustomObjectsApi(api),
            autoscaling=client.AutoscalingV2Api(api),
        )


class CountingApiClient(client.ApiClient):
    """The official client, reporting each request (verb, body bytes as sent) to `on_request`."""

    def __init__(
        self, configuration: client.Configuration, *, on_request: Callable[[str, int], None] | None = None
    ) -> None:
        super().__init__(configuration)
        self.on_request = on_request

    def call_api(
        self, method: str, url: str, header_params: Any = None, body: Any = None, *args: Any, **kwargs: Any
    ) -> Any:
        if self.on_request is not None:
            self.on_request(method.upper(), len(json.dumps(body)) if body is not None else 0)
        return super().call_api(method, url, header_params, body, *args, **kwargs)


@dataclass(frozen=True)
class Workload:
    """What autoloop needs to know of a target workload."""

    kind: str
    name: str
    namespace: str
    replicas: int
    ready_replicas: int
    container: str
    cpu_request: float | None
    memory_request: float | None
    cpu_limit: float | None
    memory_limit: float | None
    selector: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    generation: int = 0
    observed_generation: int = 0
    updated_replicas: int = 0
    uid: str = ""
    resource_version: str = ""
    """Sent with our patches: if anyone changed the workload since we read it, the patch gets a
    409 instead of overwriting their change with a decision made on stale settings."""


def _container(template: Any, name: str | None) -> Any:
    containers = template.spec.containers or []
    if not containers:
        raise TargetNotFound("the target's pod template has no containers")
    if name is None:
        return containers[0]
    for c in containers:
        if c.name == name:
            return c
    raise TargetNotFound(f"the target has no container named {name!r}")


def _quantity(resources: dict[str, Any] | None, key: str) -> float | None:
    if not resources or key not in resources:
        return None
    return parse_quantity(resources[key])


def read_workload(clients: Clients, namespace: str, ref: TargetRef, container: str | None = None) -> Workload:
    """The target's replicas and resources; TargetNotFound if it is missing."""
    obj: Any
    try:
        if ref.kind == "Deployment":
            obj = clients.apps.read_namespaced_deployment(ref.name, namespace)
        elif ref.kind == "StatefulSet":
            obj = clients.apps.read_namespaced_stateful_set(ref.name, namespace)
        else:
            raise TargetNotFound(f"unsupported target kind {ref.kind}")
    except ApiException as exc:
        if exc.status == 404:
            raise TargetNotFound(f"{ref.kind} {namespace}/{ref.name} not found") from exc
        raise
    c = _container(obj.spec.template, container)
    requests = c.resources.requests if c.resources else None
    limits = c.resources.limits if c.resources else None
    return Workload(
        kind=ref.kind,
        name=ref.name,
        namespace=namespace,
        replicas=obj.spec.replicas if obj.spec.replicas is not None else 1,
        ready_replicas=(obj.status.ready_replicas or 0) if obj.status else 0,
        container=c.name,
        cpu_request=_quantity(requests, "cpu"),
        memory_request=_quantity(requests, "memory"),
        cpu_limit=_quantity(limits, "cpu"),
        memory_limit=_quantity(limits, "memory"),
        selector=dict(obj.spec.selector.match_labels or {}),
        annotations=dict(obj.metadata.annotations or {}),
        generation=obj.metadata.generation or 0,
        observed_generation=(obj.status.observed_generation or 0) if obj.status else 0,
        updated_replicas=(obj.status.updated_replicas or 0) if obj.status else 0,
        uid=obj.metadata.uid or "",
        resource_version=obj.metadata.resource_version or "",
    )


def rollout_complete(w: Workload) -> bool:
    """The controller has seen the latest spec and every replica runs it and is ready."""
    return w.observed_generation >= w.generation and w.updated_replicas == w.ready_replicas == w.replicas


@dataclass(frozen=True)
class Restarts:
    """Container terminations of a workload's pods that ended within a window."""

    restarts: int
    oom_kills: int


def recent_restarts(clients: Clients, namespace: str, selector: dict[str, str], since: float) -> Restarts:
    """Containers of the workload's pods whose last termination ended at or after `since` (each
    counts once however often it restarted: the kubelet keeps only the last), and how many of
    those were OOM kills."""
    if not selector:
        return Restarts(0, 0)
    query = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    restarts = ooms = 0
    for pod in clients.core.list_namespaced_pod(namespace, label_selector=query).items:
        for cs in (pod.status.container_statuses or []) if pod.status else []:
            ended = cs.last_state.terminated if cs.last_state else None
            if ended is None or ended.finished_at is None or ended.finished_at.timestamp() < since:
                continue
            restarts += 1
            ooms += ended.reason == "OOMKilled"
    return Restarts(restarts, ooms)


def manager_id(kind: str, namespace: str, name: str) -> str:
    """The value of the managed-by annotation autoloop writes on the workloads it changes."""
    return f"{kind}/{namespace}/{name}"


def managed_elsewhere(workload: Workload, kind: str, namespace: str, name: str) -> str | None:
    """Who else manages this workload (the managed-by annotation), or None if nobody or we do.
    Two controllers changing one Deployment fight; the first one that changed it keeps it."""
    claimed = workload.annotations.get(MANAGED_BY_ANNOTATION)
    ours = (manager_id(kind, namespace, name), f"{namespace}/{name}")  # the second: before v0.2
    return claimed if claimed and claimed not in ours else None


def build_workload_patch(
    *,
    container: str,
    decision_id: str,
    owner: str,
    replicas: int | None = None,
    resources: dict[str, dict[str, str]] | None = None,
    resource_version: str = "",
) -> dict[str, Any]:
    """A strategic-merge patch that changes replicas and/or one container's resources; with a
    `resource_version` it only applies to that version of the object (else 409)."""
    patch: dict[str, Any] = {
        "metadata": {"annotations": {DECISION_ANNOTATION: decision_id, MANAGED_BY_ANNOTATION: owner}}
    }
    if resource_version:
        patch["metadata"]["resourceVersion"] = resource_version
    spec: dict[str, Any] = {}
    if replicas is not None:
        spec["replicas"] = replicas
    if resources:
        spec["template"] = {"spec": {"containers": [{"name": container, "resources": resources}]}}
    if spec:
        patch["spec"] = spec
    return patch


def patch_workload(clients: Clients, namespace: str, ref: TargetRef, patch: dict[str, Any]) -> None:
    """Apply a patch built by build_workload_patch; Conflict on 409, TargetNotFound on 404."""
    try:
        if ref.kind == "Deployment":
            clients.apps.patch_namespaced_deployment(ref.name, namespace, patch)
        else:
            clients.apps.patch_namespaced_stateful_set(ref.name, namespace, patch)
    except ApiException as exc:
        if exc.status == 409:
            raise Conflict(str(exc.reason)) from exc
        if exc.status == 404:
            raise TargetNotFound(f"{ref.kind} {namespace}/{ref.name} not found") from exc
        raise


@dataclass(frozen=True)
class Autoscaler:
    """A HorizontalPodAutoscaler that scales a workload, and the resources it scales on."""

    name: str
    resources: frozenset[str]
    """cpu / memory when it targets their utilisation (which our request changes would shift)."""


def autoscalers(clients: Clients, namespace: str) -> dict[tuple[str, str], Autoscaler]:
    """(kind, name) of each workload an HPA (autoscaling/v2) scales in the namespace -> that HPA."""
    found: dict[tuple[str, str], Autoscaler] = {}
    hpa: Any
    for hpa in clients.autoscaling.list_namespaced_horizontal_pod_autoscaler(namespace).items:
        ref = hpa.spec.scale_target_ref
        resources: set[str] = set() if hpa.spec.metrics else {"cpu"}  # v2 default: 80 % CPU
        for metric in hpa.spec.metrics or []:
            source = metric.resource or metric.container_resource
            if source is not None:
                resources.add(str(source.name))
        found[(str(ref.kind), str(ref.name))] = Autoscaler(str(hpa.metadata.name), frozenset(resources))
    return found


def pdb_disruptions_allowed(clients: Clients, namespace: str, pod_labels: dict[str, str]) -> int | None:
    """The smallest disruptionsAllowed of PDBs covering pods with these labels; None when none covers them."""
    allowed: int | None = None
    pdb: Any
    for pdb in clients.policy.list_namespaced_pod_disruption_budget(namespace).items:
        selector = (pdb.spec.selector.match_labels or {}) if pdb.spec and pdb.spec.selector else {}
        if selector and all(pod_labels.get(k) == v for k, v in selector.items()):
            value = int(pdb.status.disruptions_allowed or 0) if pdb.status else 0
            allowed = value if allowed is None else min(allowed, value)
    return allowed


CORDONED_BY_ANNOTATION: Final = f"{GROUP}/cordoned-by"
"""Annotation on a node that autoloop cordoned, naming the plan; only such nodes are uncordoned by us."""


@dataclass(frozen=True)
class Node:
    name: str
    labels: dict[str, str]
    annotations: dict[str, str]
    cpu_allocatable: float
    memory_allocatable: float
    pods_allocatable: int
    unschedulable: bool
    ready: bool


def _node(obj: Any) -> Node:
    alloc = obj.status.allocatable or {}
    ready = any(c.type == "Ready" and c.status == "True" for c in (obj.status.conditions or []))
    return Node(
        name=obj.metadata.name,
        labels=dict(obj.metadata.labels or {}),
        annotations=dict(obj.metadata.annotations or {}),
        cpu_allocatable=parse_quantity(alloc.get("cpu", "0")),
        memory_allocatable=parse_quantity(alloc.get("memory", "0")),
        pods_allocatable=int(parse_quantity(alloc.get("pods", "0"))),
        unschedulable=bool(obj.spec.unschedulable),
        ready=ready,
    )


def list_nodes(clients: Clients, label_selector: str = "") -> list[Node]:
    return [_node(n) for n in clients.core.list_node(label_selector=label_selector).items]


@dataclass(frozen=True)
class PodRequests:
    """A scheduled, unfinished pod's effective requests (what the scheduler reserves for it)."""

    namespace: str
    name: str
    node: str
    labels: dict[str, str]
    cpu: float
    memory: float


def _effective(containers: list[Any] | None, init: list[Any] | None, key: str) -> float:
    """The scheduler's rule: max(sum over app containers, largest init container); containers as
    the apiserver's JSON."""

    def req(c: dict[str, Any]) -> float:
        return _quantity((c.get("resources") or {}).get("requests"), key) or 0.0

    return max(sum(req(c) for c in containers or []), max((req(c) for c in init or []), default=0.0))


POD_PAGE: Final = 500
"""Pods per list call: a cluster's pods are read page by page, as plain JSON."""


def scheduled_pod_requests(clients: Clients, *, page_size: int = POD_PAGE) -> list[PodRequests]:
    """Requests of every pod bound to a node and not finished, in every namespace. Read in pages of
    `page_size` as plain JSON and kept as PodRequests only: the client's models of every pod in the
    cluster took ~50 MiB and seconds per call at ~1,000 pods (docs/benchmarks.md, soak)."""
    out: list[PodRequests] = []
    token: str | None = None
    while True:
        response: Any = clients.core.list_pod_for_all_namespaces(
            field_selector="spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed",
            limit=page_size,
            _continue=token,
            _preload_content=False,
        )
        page = json.loads(response.data)
        for pod in page.get("items") or []:
            meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
            out.append(
                PodRequests(
                    namespace=str(meta.get("namespace", "")),
                    name=str(meta.get("name", "")),
                    node=str(spec.get("nodeName", "")),
                    labels=dict(meta.get("labels") or {}),
                    cpu=_effective(spec.get("containers"), spec.get("initContainers"), "cpu"),
                    memory=_effective(spec.get("containers"), spec.get("initContainers"), "memory"),
                )
            )
        token = (page.get("metadata") or {}).get("continue") or None
        if token is None:
            return out


def read_node(clients: Clients, name: str) -> Node | None:
    try:
        return _node(clients.core.read_node(name))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def set_cordon(clients: Clients, node: str, *, cordoned: bool, owner: str) -> None:
    """Cordon a node (marking it as ours) or uncordon one we cordoned."""
    annotations: dict[str, str | None] = {CORDONED_BY_ANNOTATION: owner if cordoned else None}
    body = {"spec": {"unschedulable": cordoned or None}, "metadata": {"annotations": annotations}}
    clients.core.patch_node(node, body)


def list_deployments(clients: Clients, namespace: str, label_selector: str) -> list[str]:
    """Names of the Deployments in a namespace matching a selector."""
    items: list[Any] = clients.apps.list_namespaced_deployment(namespace, label_selector=label_selector).items
    return sorted(str(d.metadata.name) for d in items)


def object_key(namespace: str, name: str) -> str:
    """`namespace/name`, or `name` for a cluster-scoped object (namespace "")."""
    return f"{namespace}/{name}" if namespace else name


def read_resource(clients: Clients, *, plural: str, namespace: str, name: str) -> dict[str, Any]:
    """One of our resources; `namespace` "" reads a cluster-scoped kind."""
    if namespace:
        obj = clients.custom.get_namespaced_custom_object(GROUP, "v1alpha1", namespace, plural, name)
    else:
        obj = clients.custom.get_cluster_custom_object(GROUP, "v1alpha1", plural, name)
    return cast(dict[str, Any], obj)


def merge_patch_status(
    clients: Clients, *, plural: str, namespace: str, name: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Merge-patch the status subresource with `body`; `namespace` "" for a cluster-scoped kind."""
    if namespace:
        obj = clients.custom.patch_namespaced_custom_object_status(
            GROUP, "v1alpha1", namespace, plural, name, body
        )
    else:
        obj = clients.custom.patch_cluster_custom_object_status(GROUP, "v1alpha1", plural, name, body)
    return cast(dict[str, Any], obj)


def patch_status(
    clients: Clients,
    *,
    plural: str,
    namespace: str,
    name: str,
    status: dict[str, Any],
    resource_version: str | None = None,
) -> str | None:
    """Merge-patch the status subresource of one of our resources; the new resourceVersion.

    With `resource_version` the write is conditional: if anyone wrote the resource since that
    version (another replica, a user's edit, or a pass computed from kopf's cache while its watch
    was still catching up after an apiserver restart), the apiserver answers 409 and this raises
    Conflict, so a decision made from a stale status is never recorded or acted on. A resource
    deleted meanwhile gives None (unconditional) or Conflict (conditional: it changed under us).
    """
    body: dict[str, Any] = {"status": status}
    if resource_version:
        body["metadata"] = {"resourceVersion": resource_version}
    try:
        obj = merge_patch_status(clients, plural=plural, namespace=namespace, name=name, body=body)
    except ApiException as exc:
        if exc.status == 409 or (exc.status == 404 and resource_version):
            raise Conflict(
                f"{object_key(namespace, name)} changed since resourceVersion {resource_version}"
            ) from exc
        if exc.status == 404:
            return None  # deleted meanwhile: nothing to report on
        if exc.status == 422:
            raise StatusRejected(str(exc.body)[:2000]) from exc
        raise
    return str(obj.get("metadata", {}).get("resourceVersion") or "") or None
