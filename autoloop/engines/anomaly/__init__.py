"""Anomaly detection on the metric series a loop watches.

Contract: pure numpy (+ scikit-learn for the optional multivariate check). Entry point
`detect(series, *, test_start=None, detector=None) -> DetectionReport`, where `series` maps
service -> metric name -> (timestamps in seconds, values). Everything before `test_start` is the
reference; anomalies are searched from `test_start` on. Bad data (NaN, gaps, counter resets, a
single sample, a constant series) never raises: it yields fewer, low-confidence anomalies or none.

Method, per series, tuned for few false alarms:
1. Baseline: a median profile by time of day when the reference holds two or more seasonal
   periods, else a robust fit (Huber, then Tukey biweight) of level + linear trend + the
   service's relative load, each term kept only when significant; daily seasonality seen through
   a one-hour window is a slope rather than an alarm, and a load spike inside the reference does
   not drag the fit.
2. Robust z-score: residual / (1.4826 * MAD of reference residuals; 1.2533 * mean absolute
   deviation when more than half the reference sits on one value), never capped; the scale is
   at least the metric's resolution (its smallest step in the reference) and 0.1 % of its level,
   so a near-constant series gives finite scores (and is marked low-confidence).
3. Alarm (causal: never using a later sample) when three consecutive samples exceed
   `z_threshold` on the same side, or two exceed 1.5 times it (a step or burst), or a one-sided
   CUSUM of z (trailing median of three, winsorised at the threshold, so one wild sample cannot
   fill it) passes `cusum_limit` (a slow ramp or small step); and (by default) the change
   persists: the tested samples beyond `cusum_drift` on its side reach the count that the
   reference's own exceedance rate makes rarer than the pass's false-alarm probability, split
   over the series tested (`persisting`, a beta-binomial tail). A garbage-collection burst of
   two or three scrapes is not a change. The start is the CUSUM change time: the last time the
   cumulative sum was at zero.
   Practical significance: a sample within 10 % of its expected value (the Kubernetes HPA's
   default tolerance, `--horizontal-pod-autoscaler-tolerance` 0.1) counts as zero for every
   rule (`significance`, `min_relative_change`), however large its z: on a near-noiseless
   series a 0.7 % move scores 7 sigma, but a change within that tolerance is never an anomaly
   on its own. z itself is unchanged.
4. Load explanation: a non-load metric that moves with the service's request rate, by no more
   than `load_elasticity` times the rate's relative change (`memory_load_elasticity` for memory,
   which grows with load far less than proportionally), within a minute of the load's move, is
   demand, not a fault; such samples do not raise alarms. A jump of the metric while load stays
   put is never demand, even inside a load spike. Alarms on the request rate itself are kept
   but marked as load.
5. Direction: errors and memory harm only by rising (`samples.harmful_direction`); their fall (a
   quiet hour, a heap collection) is reported as benign, never unexplained. Latency, CPU, load
   and other metrics count both ways (a fall can be a fail-fast error path, a hang or lost
   traffic).
6. Recurrence: with two or more seasonal periods of reference, a tested sample that every earlier
   period matched or beat at the same time of day (within one seasonal bin) is a daily job
   again, masked like demand (`recurring`).
7. Optional multivariate check (IsolationForest over a service's z-vectors) for joint shifts
   that no single metric shows.

Metric names are free strings; their kind (latency, errors, cpu, memory, load, other) is inferred
from the name by `metric_kind` and only steers load explanation, harmless directions and
root-cause typing.

Rooms, each owning one step (the names below are re-exported here, the package's only facade):
`samples` (input types, metric kinds, harmful directions, cleaning), `robust` (MAD, robust
regression, running median), `calibrating` (optional reference-calibrated thresholds),
`persisting` (how many tested samples a change needs), `significance` (which samples are within
the tolerance of their expected value), `recurring` (what every earlier day did at
that time), `levels` (level shifts inside a reference), `baselines` (seasonal profile or robust
level + trend + load), `scoring` (robust z per series), `demand` (what load explains), `alarms`
(causal alarms, change times, shapes), `reports` (`Anomaly`, `DetectionReport`) and `detecting`
(`AnomalyDetector`, `detect`).
"""

from __future__ import annotations

from autoloop.engines.anomaly import calibrating, levels, persisting, recurring, significance
from autoloop.engines.anomaly.alarms import (
    END_QUIET_SAMPLES,
    STRONG_FACTOR,
    Alarm,
    classify_shape,
    cusum_start,
    find_alarms,
    find_single,
)
from autoloop.engines.anomaly.baselines import SEASONAL_BINS, TERM_T_STAT
from autoloop.engines.anomaly.demand import LOAD_LAG_SAMPLES, load_explained
from autoloop.engines.anomaly.detecting import AnomalyDetector, detect
from autoloop.engines.anomaly.levels import (
    LEVEL_SHIFT_SIGMAS,
    LEVEL_SHIFT_SLOPE_SHARE,
    LEVEL_SHIFT_T_STAT,
    LOAD_SHIFT_SIGMAS,
    MAX_LEVEL_SHIFTS,
)
from autoloop.engines.anomaly.reports import MAX_REPORTED_ANOMALIES, Anomaly, DetectionReport, json_safe
from autoloop.engines.anomaly.robust import MAD_TO_SIGMA, median3
from autoloop.engines.anomaly.samples import (
    MIN_REFERENCE_SAMPLES,
    FloatArray,
    MetricKind,
    SeriesInput,
    ServiceSeries,
    Shape,
    clean_series,
    harmful_direction,
    is_counter,
    metric_kind,
    time_span,
)
from autoloop.engines.anomaly.scoring import (
    ABSOLUTE_SCALE_FLOOR,
    RELATIVE_SCALE_FLOOR,
    SECONDS_PER_DAY,
    SeriesScore,
    resolution,
    score_all,
    score_many,
    score_series,
)
from autoloop.engines.anomaly.significance import MIN_RELATIVE_CHANGE

_level_shift_starts = levels.level_shift_starts
"""Kept at its old path: tests/unit/test_anomaly.py calls `anomaly._level_shift_starts`."""

__all__ = [
    "ABSOLUTE_SCALE_FLOOR",
    "END_QUIET_SAMPLES",
    "LEVEL_SHIFT_SIGMAS",
    "LEVEL_SHIFT_SLOPE_SHARE",
    "LEVEL_SHIFT_T_STAT",
    "LOAD_LAG_SAMPLES",
    "LOAD_SHIFT_SIGMAS",
    "MAD_TO_SIGMA",
    "MAX_LEVEL_SHIFTS",
    "MAX_REPORTED_ANOMALIES",
    "MIN_REFERENCE_SAMPLES",
    "MIN_RELATIVE_CHANGE",
    "RELATIVE_SCALE_FLOOR",
    "SEASONAL_BINS",
    "SECONDS_PER_DAY",
    "STRONG_FACTOR",
    "TERM_T_STAT",
    "Alarm",
    "Anomaly",
    "AnomalyDetector",
    "DetectionReport",
    "FloatArray",
    "MetricKind",
    "SeriesInput",
    "SeriesScore",
    "ServiceSeries",
    "Shape",
    "calibrating",
    "classify_shape",
    "clean_series",
    "cusum_start",
    "detect",
    "find_alarms",
    "find_single",
    "harmful_direction",
    "is_counter",
    "json_safe",
    "load_explained",
    "median3",
    "metric_kind",
    "persisting",
    "recurring",
    "resolution",
    "score_all",
    "score_many",
    "score_series",
    "significance",
    "time_span",
]
