"""A faithful port of the Kubernetes VPA recommender (and the updater's eviction test) for replay.

Every constant is the upstream default, cited by file (kubernetes/autoscaler,
vertical-pod-autoscaler/pkg/...):
- recommender/model/aggregations_config.go: 24 h decay half-life for CPU and memory, bucket growth
  5 %, CPU histogram first bucket 0.001 core up to 1000 cores, memory first bucket 1e7 bytes up to
  1e12, minSampleWeight 0.1, epsilon 0.001*minSampleWeight, memory aggregation interval 24 h,
  OOM bump x1.2 and at least 100 MiB.
- recommender/logic/recommender.go: target percentile 0.9, lower 0.5, upper 0.95 (CPU and memory),
  safety margin 0.15, pod minimum 25 millicores and 250 MiB, upper bound confidence multiplier
  (1.0, +1), lower bound (0.001, -2).
- recommender/logic/estimator.go: confidence = min(lifespan days, samples / (60*24)).
- util/histogram.go, decaying_histogram.go: percentile returns the END of the bucket where the
  cumulative weight reaches the threshold; sample weight x 2^((t - ref)/halfLife).
- recommender/model/aggregate_container_state.go: CPU samples weighted by max(request, 0.1).
- updater/priority/update_priority_calculator.go: update when the request is outside
  [lower, upper], or when the pod lived >= 12 h and the change is >= 10 %.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

DECAY_HALF_LIFE_S: Final[float] = 24 * 3600.0  # DefaultCPU/MemoryHistogramDecayHalfLife
BUCKET_GROWTH: Final[float] = 0.05  # DefaultHistogramBucketSizeGrowth
CPU_FIRST_BUCKET: Final[float] = 0.001  # cores, cpuHistogramOptions
CPU_MAX: Final[float] = 1000.0
MEM_FIRST_BUCKET: Final[float] = 1e7  # bytes, memoryHistogramOptions
MEM_MAX: Final[float] = 1e12
MIN_SAMPLE_WEIGHT: Final[float] = 0.1
EPSILON: Final[float] = 0.001 * MIN_SAMPLE_WEIGHT
MEMORY_AGGREGATION_INTERVAL_S: Final[float] = 24 * 3600.0
OOM_BUMP_RATIO: Final[float] = 1.2
OOM_MIN_BUMP: Final[float] = 100 * 1024 * 1024
TARGET_PERCENTILE: Final[float] = 0.9
LOWER_PERCENTILE: Final[float] = 0.5
UPPER_PERCENTILE: Final[float] = 0.95
SAFETY_MARGIN: Final[float] = 0.15
POD_MIN_CPU: Final[float] = 0.025  # cores (25 millicores)
POD_MIN_MEMORY: Final[float] = 250 * 1024 * 1024  # bytes (250 MiB)
# decaying_histogram.go: maxDecayExponent = 100 (shift the reference before weights overflow).
MAX_DECAY_EXPONENT: Final[float] = 100.0


class ExponentialHistogram:
    """util/histogram.go with exponential bucketing, plus decaying_histogram.go's decay."""

    def __init__(self, first_bucket: float, max_value: float, half_life_s: float = DECAY_HALF_LIFE_S) -> None:
        self.first = first_bucket
        self.ratio = 1.0 + BUCKET_GROWTH
        self.n = math.ceil(math.log(max_value * (self.ratio - 1) / first_bucket + 1, self.ratio)) + 1
        self.weights = np.zeros(self.n)
        self.half_life = half_life_s
        self.ref: float | None = None

    def bucket(self, value: float) -> int:
        if value < self.first:
            return 0
        b = math.floor(math.log(value * (self.ratio - 1) / self.first + 1, self.ratio))
        return min(max(b, 0), self.n - 1)

    def bucket_start(self, b: int) -> float:
        if b == 0:
            return 0.0
        return self.first * (self.ratio**b - 1) / (self.ratio - 1)

    def _decay_factor(self, t: float) -> float:
        if self.ref is None:
            self.ref = t
        exponent = (t - self.ref) / self.half_life
        if exponent > MAX_DECAY_EXPONENT:
            # shiftReferenceTimestamp: rescale stored weights to a new reference.
            new_ref = t
            self.weights *= 2.0 ** (-(new_ref - self.ref) / self.half_life)
            self.ref = new_ref
            exponent = 0.0
        return float(2.0**exponent)

    def add(self, value: float, weight: float, t: float) -> None:
        self.weights[self.bucket(value)] += weight * self._decay_factor(t)

    def subtract(self, value: float, weight: float, t: float) -> None:
        b = self.bucket(value)
        self.weights[b] = max(0.0, self.weights[b] - weight * self._decay_factor(t))

    def percentile(self, p: float) -> float:
        total = float(self.weights.sum())
        if total < EPSILON * (2.0**0):
            return 0.0
        cum = np.cumsum(self.weights)
        b = int(np.searchsorted(cum, p * total, side="left"))
        b = min(b, self.n - 1)
        if b < self.n - 1:
            return self.bucket_start(b + 1)
        return self.bucket_start(b)


class VpaRecommender:
    """VPA recommender state for one container; feed samples, ask for (target, lower, upper)."""

    def __init__(
        self,
        resource: str = "cpu",
        *,
        target_percentile: float = TARGET_PERCENTILE,
        margin: float = SAFETY_MARGIN,
    ) -> None:
        self.resource = resource
        self.target_p = target_percentile
        self.margin = margin
        if resource == "cpu":
            self.hist = ExponentialHistogram(CPU_FIRST_BUCKET, CPU_MAX)
        else:
            self.hist = ExponentialHistogram(MEM_FIRST_BUCKET, MEM_MAX)
        self.first_t: float | None = None
        self.last_t: float | None = None
        self.count = 0
        # Memory: the peak of the current aggregation interval (container.go).
        self.window_start: float | None = None
        self.window_peak = 0.0

    def add_samples(self, ts: np.ndarray, values: np.ndarray, request: float) -> None:
        for t, v in zip(ts.tolist(), values.tolist(), strict=True):
            self._add(t, v, request)

    def _add(self, t: float, v: float, request: float) -> None:
        if self.first_t is None:
            self.first_t = t
        self.last_t = t
        self.count += 1
        if self.resource == "cpu":
            self.hist.add(v, max(request, MIN_SAMPLE_WEIGHT), t)
            return
        # Memory peaks: one sample per 24 h interval, replaced while the interval's peak grows.
        if self.window_start is None or t >= self.window_start + MEMORY_AGGREGATION_INTERVAL_S:
            self.window_start = t
            self.window_peak = 0.0
        if v > self.window_peak:
            if self.window_peak > 0:
                self.hist.subtract(self.window_peak, 1.0, self.window_start)
            self.hist.add(v, 1.0, self.window_start)
            self.window_peak = v

    def record_oom(self, t: float, memory_used: float) -> None:
        """aggregate_container_state.go RecordOOM: a peak sample of the bumped usage."""
        bumped = max(memory_used * OOM_BUMP_RATIO, memory_used + OOM_MIN_BUMP)
        self._add(t, bumped, 0.0)

    def confidence(self) -> float:
        if self.first_t is None or self.last_t is None:
            return 0.0
        lifespan_days = (self.last_t - self.first_t) / 86_400.0
        return min(lifespan_days, self.count / (60 * 24))

    def recommend(self) -> tuple[float, float, float]:
        floor = POD_MIN_CPU if self.resource == "cpu" else POD_MIN_MEMORY
        conf = self.confidence()
        target = max(self.hist.percentile(self.target_p) * (1 + self.margin), floor)
        lower = self.hist.percentile(LOWER_PERCENTILE) * (1 + self.margin)
        upper = self.hist.percentile(UPPER_PERCENTILE) * (1 + self.margin)
        if conf > 0:
            lower *= (1 + 0.001 / conf) ** -2.0
            upper *= 1 + 1.0 / conf
        else:
            lower, upper = 0.0, math.inf
        return target, max(lower, floor), max(upper, floor)
