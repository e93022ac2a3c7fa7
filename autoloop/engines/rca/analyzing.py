"""The analyzer: its parameters, and the entry points `analyze` and `unexplained_anomaly`.

Owns: `RootCauseAnalyzer` (parameters in `__init__`; work in `findings`, then `rank`), the
ranking defaults that the bench cross-validates (`CONFIDENT`, `RELATIVE_FLOOR`, `LEAK_GROWTH`)
and the safety validator's question `unexplained_anomaly`.
Must never: hold maths of its own; each step lives in its room (`gathering`, `graphs`,
`explaining`, `ranking`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from autoloop.engines import anomaly
from autoloop.engines.rca import evidence, gathering, ranking, results

CONFIDENT: Final[float] = 0.55
"""Default `confident_at`: the top cause's score is 1.22 times the runner-up's or more
(cross-validated, see docs/benchmarks/rca.md)."""
RELATIVE_FLOOR: Final[float] = 0.3
"""Default `relative_floor`: a change of 30 % of the level is worth at most one sigma as evidence,
however quiet the reference was (cross-validated, see docs/benchmarks/rca.md)."""
LEAK_GROWTH: Final[float] = 2.5
"""Default `leak_growth`: memory grown to 2.5 times its level is a leak even when cpu moved more
(cross-validated, see docs/benchmarks/rca.md)."""


class RootCauseAnalyzer:
    """Ranks root causes; parameters in `__init__`, work in `findings` then `rank` (package doc).

    lookback_s: how far before a suspected onset the change may lie (s); the reference ends there
        (at most `REFERENCE_SHARE` of the data before the onset).
    max_edge_gain: the most a caller's latency/error change can exceed its callee's (calls per
        request x retries); 5 = three sequential calls with retries.
    onset_slack_s: onset estimation error tolerated when ordering changes (s, one scrape).
    step_tolerance_s: how long after a callee's step the caller's step may follow (s).
    timing_scale_s: decay of the timing score away from the suspected onset (s).
    relative_floor: a change of this share of the level is worth at most one sigma as evidence.
    leak_growth: memory grown to this multiple of its level is a leak even if cpu moved more.
    confident_at: the top cause's confidence at which the result is `confident`.
    sensitivity: multiplies the detector's thresholds for evidence (1 = the detector's own).
    """

    def __init__(
        self,
        *,
        lookback_s: float = 300.0,
        max_edge_gain: float = 5.0,
        onset_slack_s: float = 15.0,
        step_tolerance_s: float = 45.0,
        timing_scale_s: float = 120.0,
        relative_floor: float = RELATIVE_FLOOR,
        leak_growth: float = LEAK_GROWTH,
        confident_at: float = CONFIDENT,
        detector: anomaly.AnomalyDetector | None = None,
        max_causes: int = 10,
        sensitivity: float = 1.0,
    ) -> None:
        self.lookback_s = lookback_s
        self.max_edge_gain = max_edge_gain
        self.onset_slack_s = onset_slack_s
        self.step_tolerance_s = step_tolerance_s
        self.timing_scale_s = timing_scale_s
        self.relative_floor = relative_floor
        self.leak_growth = leak_growth
        self.confident_at = confident_at
        self.detector = detector
        self.max_causes = max_causes
        self.sensitivity = sensitivity

    def analyze(
        self,
        series: anomaly.ServiceSeries,
        graph: Mapping[str, Sequence[str]],
        *,
        onset: float | None = None,
        window: tuple[float, float] | None = None,
        changes: Mapping[str, Sequence[float]] | None = None,
    ) -> results.RCAResult:
        """Rank root causes of the anomaly at `onset` (s) or inside `window` (start, end in s)."""
        return self.rank(self.findings(series, onset=onset, window=window), graph, changes=changes)

    def findings(
        self,
        series: anomaly.ServiceSeries,
        *,
        onset: float | None = None,
        window: tuple[float, float] | None = None,
    ) -> evidence.Findings:
        """The changes of every service inside the window (the costly half of `analyze`)."""
        return gathering.findings(self, series, onset=onset, window=window)

    def rank(
        self,
        findings: evidence.Findings,
        graph: Mapping[str, Sequence[str]],
        *,
        changes: Mapping[str, Sequence[float]] | None = None,
    ) -> results.RCAResult:
        """Explain changes away over the graph and rank what is left (the cheap half of `analyze`)."""
        return ranking.rank(self, findings, graph, changes=changes)


def analyze(
    series: anomaly.ServiceSeries,
    graph: Mapping[str, Sequence[str]],
    *,
    onset: float | None = None,
    window: tuple[float, float] | None = None,
    changes: Mapping[str, Sequence[float]] | None = None,
    analyzer: RootCauseAnalyzer | None = None,
) -> results.RCAResult:
    """Rank root causes (see the package doc); `analyzer` sets the parameters."""
    return (analyzer or RootCauseAnalyzer()).analyze(
        series, graph, onset=onset, window=window, changes=changes
    )


def unexplained_anomaly(report: anomaly.DetectionReport, result: results.RCAResult | None) -> bool:
    """The safety validator's `anomaly_active`: an unexplained anomaly is ongoing and the latest
    analysis (if any) found no confident cause. A confident cause means the loops can act on its
    recommended action instead of freezing."""
    return report.unexplained_active and not (result is not None and result.confident)
