"""Start the operator: settings, clients, handlers, kopf's own settings, /metrics and liveness."""

from __future__ import annotations

import logging
from typing import Any

import kopf
from kubernetes import client

from autoloop.api.common import GROUP, StatusBase
from autoloop.metrics.history_cache import HistoryCache
from autoloop.metrics.prometheus import PrometheusSource
from autoloop.operator import kube, maintenanceplan, memory, optimizationloop, resourceallocation, telemetry
from autoloop.operator.leader import AlwaysLeader, LeaderElector
from autoloop.operator.refits import BackgroundRefits
from autoloop.operator.settings import OperatorSettings


def configure_kopf(settings: kopf.OperatorSettings, workers: int = OperatorSettings.workers) -> None:
    """kopf settings: our annotation prefix, events only when we post them, no peering, `workers`
    handler threads."""
    settings.execution.max_workers = workers
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP, key="last-handled")
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # Handler logs become Events only from WARNING up; our own Events are posted explicitly.
    settings.posting.level = logging.WARNING
    settings.peering.standalone = True
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30


def build_registry(settings: OperatorSettings) -> kopf.OperatorRegistry:
    operator_settings = settings  # kopf's startup handler gets its own `settings`
    registry = kopf.OperatorRegistry()
    for module in (optimizationloop, resourceallocation, maintenanceplan):
        module.register(registry, settings)

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """In-cluster ServiceAccount first, then KUBECONFIG (a custom registry has no default login)."""
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_kopf(settings, workers=operator_settings.workers)

    return registry


def run(settings: OperatorSettings) -> None:
    """Block running the operator until it is stopped."""
    settings.validate()
    memory.limit_malloc_arenas(settings.malloc_arenas)
    if settings.tracemalloc_file:
        memory.trace_memory(
            settings.tracemalloc_file, settings.tracemalloc_every_seconds, settings.tracemalloc_frames
        )
    StatusBase.HISTORY_LIMIT = settings.history_limit  # read by every kind's status.record
    telemetry.serve(settings.metrics_port)
    clients = kube.Clients.connect(on_request=telemetry.api_request, pool_size=settings.workers)
    leader: LeaderElector | AlwaysLeader = AlwaysLeader()
    if settings.leader_election:
        leader = LeaderElector(client.CoordinationV1Api(clients.api), namespace=settings.lease_namespace())
    telemetry.LEADER.set_function(lambda: 1.0 if leader.is_leader() else 0.0)
    leader.start()
    memo = kopf.Memo(
        settings=settings,
        clients=clients,
        leader=leader,
        metrics=PrometheusSource(
            settings.prometheus_url,
            timeout_seconds=settings.prometheus_timeout_seconds,
            max_age_seconds=settings.stale_after_seconds,
            on_query=telemetry.PROMETHEUS_QUERIES.inc,
            pool_size=settings.workers,
        ),
        refits=BackgroundRefits(),
        histories=HistoryCache(),
    )
    kopf.configure(verbose=False)
    # One INFO line per timer tick per object drowns everything else; keep warnings and errors.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    try:
        kopf.run(
            registry=build_registry(settings),
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            liveness_endpoint=f"http://0.0.0.0:{settings.liveness_port}/healthz",
            standalone=True,
            memo=memo,
        )
    finally:
        leader.stop(release=True)  # a graceful stop hands over at once; a crash waits out the Lease
