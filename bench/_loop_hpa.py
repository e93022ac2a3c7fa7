"""The Kubernetes HorizontalPodAutoscaler (autoscaling/v2) on CPU, with VPA-sized memory.

Faithful to kubernetes/kubernetes pkg/controller/podautoscaler at its defaults:
- horizontal.go: sync every 15 s (`--horizontal-pod-autoscaler-sync-period`); scale-down
  stabilisation window 300 s (the highest recommendation of the window is used); default
  behaviour scale-up policies "100 % or 4 pods per 15 s, whichever is more", scale-down "100 % per
  15 s"; replicas clamped to [minReplicas, maxReplicas].
- replica_calculator.go `GetResourceReplicas`: usage ratio = utilisation of the pods with metrics /
  target (70 % here); within the tolerance 0.1 nothing changes; pods not yet ready are left out,
  and on a scale-up counted as using 0 %, and if that flips the decision nothing changes;
  desired = ceil(ratio x pods).

Pod size: the HPA owns CPU, so (as the VPA README requires of the two together) the VPA controls
memory only (`controlledResources: [memory]`): `bench._rs_vpa.VpaRecommender` fed each minute's
working set and every OOM kill, applied by the updater's rule (request outside [lower, upper], or
the pod lived 12 h and the change is >= 10 %), which rolls the pods. CPU stays at the start's
request.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Final

import numpy as np

from autoloop.simulation import service_pods
from bench import _rs_vpa

SYNC_S: Final[float] = 15.0
TARGET_UTILISATION: Final[float] = 0.70
TOLERANCE: Final[float] = 0.1
DOWNSCALE_WINDOW_S: Final[float] = 300.0
SCALE_UP_PODS: Final[int] = 4
SCALE_UP_PERCENT: Final[float] = 100.0
# updater/priority/update_priority_calculator.go: podLifetimeUpdateThreshold, minChangePriority.
VPA_LIFETIME_S: Final[float] = 12 * 3600.0
VPA_MIN_CHANGE: Final[float] = 0.10
# updater/main.go `--updater-interval` default 1 min.
VPA_UPDATER_S: Final[float] = 60.0


class Hpa:
    """One HPA: feed it every sync's pod metrics, get the replica count to set."""

    def __init__(self, min_replicas: int, max_replicas: int) -> None:
        self.min, self.max = min_replicas, max_replicas
        self.recommendations: deque[tuple[float, int]] = deque()

    def _raw(self, current: int, s: service_pods.PodStep) -> int:
        if s.ready_pods == 0 or s.ready_cpu_requested <= 0:
            return current
        per_pod_request = s.ready_cpu_requested / s.ready_pods
        ratio = s.ready_cpu_used / s.ready_cpu_requested / TARGET_UTILISATION
        unready = max(current - s.ready_pods, 0)
        pods = s.ready_pods
        if ratio > 1.0 and unready:
            ratio = s.ready_cpu_used / ((s.ready_pods + unready) * per_pod_request) / TARGET_UTILISATION
            pods += unready
            if ratio <= 1.0:
                return current
        if abs(ratio - 1.0) <= TOLERANCE:
            return current
        return math.ceil(ratio * pods)

    def desired(self, t: float, current: int, s: service_pods.PodStep) -> int:
        rec = self._raw(current, s)
        self.recommendations.append((t, rec))
        while self.recommendations and t - self.recommendations[0][0] > DOWNSCALE_WINDOW_S:
            self.recommendations.popleft()
        if rec < current:
            rec = min(current, max(r for _, r in self.recommendations))
        up_limit = max(current * (1 + SCALE_UP_PERCENT / 100.0), current + SCALE_UP_PODS)
        return int(min(max(min(rec, up_limit), self.min), self.max))


class VpaMemory:
    """The VPA recommender and updater for the memory request only."""

    def __init__(self) -> None:
        self.rec = _rs_vpa.VpaRecommender("memory")
        self.last_update = -math.inf
        self.pods_since = 0.0

    def observe(self, t: float, working_set: float, oom: bool, limit: float) -> None:
        if oom:
            self.rec.record_oom(t, limit)
        elif working_set > 0:
            self.rec.add_samples(np.array([t]), np.array([working_set]), 0.0)

    def update(self, t: float, request: float) -> float | None:
        """The new memory request when the updater would evict now, else None."""
        if t - self.last_update < VPA_UPDATER_S or self.rec.count == 0:
            return None
        self.last_update = t
        target, lower, upper = self.rec.recommend()
        outside = request < lower or request > upper
        lived = t - self.pods_since >= VPA_LIFETIME_S
        if outside or (lived and abs(target - request) / request >= VPA_MIN_CHANGE):
            self.pods_since = t
            return float(target)
        return None
