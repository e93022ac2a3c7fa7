"""Watching from the outside: the soak's Deployments, its loops, allocations and plans, the nodes.

One thread per kind lists once, then watches from the list's resourceVersion, resuming from the
last one it saw after any error (an apiserver restart), and lists again only when the apiserver
says that version is gone (410). Each event is reduced at once to what the checks need
(`bench._soak_checks`), under one lock; nothing else is kept.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from autoloop.api.common import GROUP, parse_quantity
from autoloop.operator import kube
from bench import _soak_checks as checks
from bench._soak_cluster import REQUEST_TIMEOUT
from bench._soak_objects import (
    CORDONED_BY_ANNOTATION,
    DECISION_ANNOTATION,
    EDIT_ANNOTATION,
    SIM,
    SOAK_LABEL,
    VERSION,
)

WATCH_SECONDS: Final = 30
"""Each watch request ends after this long (server side) and is renewed: the thread notices a stop
within it."""
POLICY_WATCH_LAG: Final = 5.0
"""A loop's new spec is taken to be in effect this long before the watch saw it (the operator's
cache may have had it a moment earlier)."""

Handler = Callable[[dict[str, Any], float, bool], None]
Lister = Callable[[kube.Clients], Callable[..., Any]]


def deployment_knobs(obj: dict[str, Any]) -> dict[str, float]:
    spec = obj.get("spec") or {}
    knobs = {"replicas": float(spec.get("replicas", 1))}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or [{}]
    requests = (containers[0].get("resources") or {}).get("requests") or {}
    for key in ("cpu", "memory"):
        if key in requests:
            knobs[key] = parse_quantity(str(requests[key]))
    return knobs


def _key(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else str(meta["name"])


@dataclass
class WatchStats:
    lists: int = 0
    errors: int = 0
    events: int = 0


@dataclass
class Recorder:
    """The compact logs of one soak run, filled by the watch threads."""

    record: checks.Record = field(default_factory=checks.Record)
    snapshots: dict[str, checks.Snapshot] = field(default_factory=dict)
    generations: dict[str, int] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    node_last: dict[str, tuple[bool, str | None]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stats: dict[str, WatchStats] = field(default_factory=dict)

    def _newer(self, key: str, obj: dict[str, Any]) -> bool:
        """Whether `obj` is a later version of `key` than the last one seen (caller holds the lock).
        A list answered from an older revision than watch events already seen (the final list of a
        busy run) must not move the snapshot back: that would log a change undone and redone.
        resourceVersions are etcd revisions here, so they compare as integers."""
        text = str(obj["metadata"].get("resourceVersion") or "")
        if not text.isdigit():
            return True
        version, seen = int(text), self.versions.get(key)
        if seen is not None and version <= seen:
            return False
        self.versions[key] = version
        return True

    def on_deployment(self, obj: dict[str, Any], t: float, listed: bool = False) -> None:
        annotations = obj["metadata"].get("annotations") or {}
        snap = checks.Snapshot(
            knobs=deployment_knobs(obj),
            decision=annotations.get(DECISION_ANNOTATION),
            edit_marker=annotations.get(EDIT_ANNOTATION),
        )
        key = _key(obj)
        with self.lock:
            if not self._newer(key, obj):
                return
            previous = self.snapshots.get(key)
            self.snapshots[key] = snap
            if previous is None:
                return
            found = checks.attribute(previous, snap)
            if found is not None:
                author, fresh = found
                self.record.changes.append(
                    checks.Change(
                        t=t,
                        workload=key,
                        before=previous.knobs,
                        after=snap.knobs,
                        author=author,
                        decision=snap.decision,
                        fresh_decision=fresh,
                        listed=listed,
                    )
                )

    def _status(self, kind: str, obj: dict[str, Any]) -> None:
        """Generations and decisions of any of our kinds (caller holds the lock)."""
        meta, status = obj["metadata"], obj.get("status") or {}
        resource = f"{kind}/{_key(obj)}"
        observed = status.get("observedGeneration")
        if isinstance(observed, int):
            seen = self.record.observed_generations.get(resource, 0)
            self.record.observed_generations[resource] = max(seen, observed)
        namespace = str(meta.get("namespace") or "")
        for entry in status.get("decisions") or []:
            key = (namespace, str(entry.get("id")))
            if key not in self.record.decisions and entry.get("time"):
                try:
                    self.record.decisions[key] = checks.decision_from_status(entry)
                except (ValueError, KeyError):
                    continue

    def on_loop(self, obj: dict[str, Any], t: float, listed: bool = False) -> None:
        key, generation = _key(obj), int(obj["metadata"].get("generation") or 0)
        with self.lock:
            self._status("OptimizationLoop", obj)
            if generation > self.generations.get(key, 0):
                self.generations[key] = generation
                timeline = self.record.loop_timelines.setdefault(key, [])
                timeline.append((t - POLICY_WATCH_LAG, checks.loop_policy(obj.get("spec") or {})))

    def on_allocation(self, obj: dict[str, Any], t: float, listed: bool = False) -> None:
        with self.lock:
            self._status("ResourceAllocation", obj)

    def on_plan(self, obj: dict[str, Any], t: float, listed: bool = False) -> None:
        with self.lock:
            self._status("MaintenancePlan", obj)

    def on_node(self, obj: dict[str, Any], t: float, listed: bool = False) -> None:
        name = str(obj["metadata"]["name"])
        cordoned = bool((obj.get("spec") or {}).get("unschedulable"))
        by = (obj["metadata"].get("annotations") or {}).get(CORDONED_BY_ANNOTATION)
        with self.lock:
            if self.node_last.get(name) == (cordoned, by):
                return
            self.node_last[name] = (cordoned, by)
            self.record.node_states.append(
                checks.NodeState(t=t, node=name, cordoned=cordoned, cordoned_by=by)
            )

    def knobs_of(self, workload: str) -> dict[str, float] | None:
        with self.lock:
            snap = self.snapshots.get(workload)
            return dict(snap.knobs) if snap else None


def watch_kind(
    stop: threading.Event,
    connect: Callable[[], kube.Clients],
    lister: Lister,
    handle: Handler,
    stats: WatchStats,
    **kwargs: Any,
) -> None:
    """List, then watch from the list's version until `stop`; resume after errors (see module)."""
    version: str | None = None
    while not stop.is_set():
        try:
            clients = connect()
            fn = lister(clients)
            if version is None:
                answer = fn(**kwargs, _preload_content=False, _request_timeout=REQUEST_TIMEOUT)
                body = json.loads(answer.data)
                now = time.time()
                for item in body.get("items") or []:
                    handle(item, now, True)
                version = str(body["metadata"]["resourceVersion"])
                stats.lists += 1
            w = watch.Watch()
            for event in w.stream(
                fn,
                **kwargs,
                resource_version=version,
                allow_watch_bookmarks=True,
                timeout_seconds=WATCH_SECONDS,
                deserialize=False,
                _request_timeout=(REQUEST_TIMEOUT[0], WATCH_SECONDS + 15),
            ):
                obj = event.get("object") or {}
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if event.get("type") in ("ADDED", "MODIFIED"):
                    stats.events += 1
                    handle(obj, time.time(), False)
                if stop.is_set():
                    w.stop()
                    break
        except ApiException as exc:
            stats.errors += 1
            if exc.status == 410:
                version = None
            stop.wait(1.0)
        except KeyError:
            # The client's watch reads `raw_object` of an ERROR event, absent when not
            # deserializing: that is the "resource version too old" answer. List again.
            stats.errors += 1
            version = None
            stop.wait(1.0)
        except Exception:
            stats.errors += 1
            stop.wait(1.0)


def start_watches(
    recorder: Recorder, stop: threading.Event, connect: Callable[[], kube.Clients], run: str
) -> list[threading.Thread]:
    """One thread per kind, all stopping on `stop`."""
    selector = f"{SOAK_LABEL}={run}"

    def custom(plural: str) -> Lister:
        return lambda c: functools.partial(c.custom.list_cluster_custom_object, GROUP, VERSION, plural)

    kinds: list[tuple[str, Lister, Handler, dict[str, Any]]] = [
        (
            "deployments",
            lambda c: c.apps.list_deployment_for_all_namespaces,
            recorder.on_deployment,
            {"label_selector": f"{selector},{SIM}/enabled=true"},
        ),
        ("optimizationloops", custom("optimizationloops"), recorder.on_loop, {"label_selector": selector}),
        (
            "resourceallocations",
            custom("resourceallocations"),
            recorder.on_allocation,
            {"label_selector": selector},
        ),
        ("maintenanceplans", custom("maintenanceplans"), recorder.on_plan, {"label_selector": selector}),
        ("nodes", lambda c: c.core.list_node, recorder.on_node, {}),
    ]
    threads = []
    for name, lister, handle, kwargs in kinds:
        stats = recorder.stats.setdefault(name, WatchStats())
        thread = threading.Thread(
            target=watch_kind,
            args=(stop, connect, lister, handle, stats),
            kwargs=kwargs,
            name=f"watch-{name}",
            daemon=True,
        )
        thread.start()
        threads.append(thread)
    return threads
