"""Practical significance: a change smaller than a tenth of the level is no anomaly on its own.

Owns: `MIN_RELATIVE_CHANGE` and `negligible` (which samples deviate from their expected value by
no more than that share of it).
Must never: change a score (z stays what `scoring` made it, never capped), fit baselines or raise
alarms; `detecting` masks the samples it returns as it masks what load explains.

Why: z measures how unusual a deviation is against the reference's own noise, not whether it
matters. A near-noiseless series (latency steady to 0.1 %, the scale resting on
`scoring.RELATIVE_SCALE_FLOOR`) reads a 0.7 % change as 5-7 sigma, and an unexplained anomaly
freezes the loop's changes. So a sample counts toward an alarm only when it is both statistically
unusual (its z) and practically large: its deviation from the expected value exceeds
`MIN_RELATIVE_CHANGE` of that value. The test is on the effect, not on the scale: z is unchanged
(a 0.7 % move still scores 7 sigma), and no combination of small samples (a run, the
CUSUM, persistence) can raise an alarm, because masked samples count as zero for every rule.

The constant is Kubernetes' own notion of an operationally meaningless change: the Horizontal Pod
Autoscaler does not act while the ratio of a metric to its target is within 0.1 of 1.0
(kube-controller-manager `--horizontal-pod-autoscaler-tolerance`, default 0.1; Kubernetes
documentation, "Horizontal Pod Autoscaling", algorithm details). A move the platform's own
autoscaler ignores should not pause the operator's changes either. It was not chosen on a
benchmark.

Where the expected value is zero or near it (an error rate at zero, an idle disk), a tenth of it
is nothing, so every deviation counts: the rule only acts on metrics whose level is large against
their noise, which is where z overstates what a change means.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from autoloop.engines.anomaly import samples

MIN_RELATIVE_CHANGE: Final[float] = 0.1
"""A sample deviating from its expected value by at most this share of it never counts toward an
alarm: the Kubernetes HPA's default tolerance (`--horizontal-pod-autoscaler-tolerance` 0.1)."""


def negligible(
    x: samples.FloatArray, expected: samples.FloatArray, *, min_relative: float | None = MIN_RELATIVE_CHANGE
) -> npt.NDArray[np.bool_]:
    """Per sample, True when |x - expected| <= `min_relative` * |expected| (the HPA's "within
    tolerance", inclusive as there); all False when `min_relative` is None or not positive."""
    if min_relative is None or min_relative <= 0:
        return np.zeros(np.shape(x), dtype=bool)
    return np.asarray(np.abs(x - expected) <= min_relative * np.abs(expected), dtype=bool)
