"""Root-cause ranking over a service dependency graph.

Contract: pure numpy; no I/O. Entry point
`analyze(series, graph, *, onset=None, window=None, changes=None, analyzer=None) -> RCAResult`:
`series` maps service -> metric name -> (timestamps in s, values); `graph` maps caller -> callees;
`onset` is a suspected start (s) or `window` an analysis window (start, end); with neither, the
anomaly detector finds the onset. `changes` (service -> rollout times, s) is optional evidence for
bad rollouts. The result ranks candidate causes (service, metric, fault type), each with a score,
a confidence, evidence, an explanation and an action. Bad data never raises and never gives a
confident cause; a reference too short to compare with is said in `RCAResult.warnings`.
`RootCauseAnalyzer.findings` (the evidence, the costly part) and `.rank` (cheap) are the two
halves of `analyze`, so parameters of the ranking can be cross-validated on fixed evidence.

Method (the "explain-away" view of fault propagation):
1. Evidence: every series is scored against the reference before the window with the detector's
   robust baseline (robust z; no cap). Per metric, the strongest alarms in the window are kept,
   with change time and shape from a least-squares step-or-ramp fit; a change that load explains
   at its start and at its peak, while load itself moved, is demand.
2. Explain away: a caller's latency or error change is explained by a callee whose same metric
   changed no later and by enough (callee change x `max_edge_gain` >= caller change). A load
   change passes down from a caller whose load moved alike, or comes from a caller that changed on
   its own, unless the service has its own harmful change then (clients of a sick service back off
   or retry: that traffic change is the sick service's). Edges missing from the graph are learned
   from matching latency/error changes, but never between two callees of one caller (siblings
   move together under a common cause, not because one calls the other).
3. Rank: each service's score is the product of how much of its evidence is its own, its
   strength (largest log(1 + |z|) of its own changes, a change for the better counting
   `IMPROVEMENT_WEIGHT`; |z| is at most |relative change| / `relative_floor`, so a reference with
   no variation cannot make a small change huge), its timing (closeness to the suspected onset)
   and 1 + its coverage share (how many anomalous services its changes explain, through chains).
   Equal scores are ties and share a rank.
4. Confidence of a cause: its score against the best other one, s / (s + s_other), halved when
   none of its own changes rests on a reference with variation; the result is `confident` when
   the top cause is alone at the top and its confidence reaches `confident_at` (> 0.5).
5. Fault type from the metric family that carries the root's own evidence (see `ranking`),
   the action from the fault type.

Rooms, each owning one step (the names below are re-exported here, the package's only facade):
`evidence` (`Evidence`, `Findings`, the per-service view), `onsets` (dating a change),
`gathering` (step 1), `graphs` (declared and learned edges), `explaining` (step 2), `ranking`
(steps 3 to 5), `results` (`Cause`, `RCAResult`) and `analyzing` (`RootCauseAnalyzer`,
`analyze`, `unexplained_anomaly`).
"""

from __future__ import annotations

from autoloop.engines.rca.analyzing import (
    CONFIDENT,
    LEAK_GROWTH,
    RELATIVE_FLOOR,
    RootCauseAnalyzer,
    analyze,
    unexplained_anomaly,
)
from autoloop.engines.rca.evidence import (
    EXTERNAL_DEMAND,
    HARMFUL_UP,
    IMPROVEMENT_WEIGHT,
    PROPAGATING_KINDS,
    Evidence,
    Findings,
    Links,
    Node,
)
from autoloop.engines.rca.gathering import (
    DEMAND_FRACTION,
    DEMAND_SAMPLES,
    MAX_ALARMS_PER_METRIC,
    REFERENCE_SHARE,
)
from autoloop.engines.rca.onsets import RAMP_MIN_Z, RAMP_T_STAT, refine_onset
from autoloop.engines.rca.ranking import ACTIONS, ROLLOUT_WINDOW_S, SLOW_LEAK_PER_HOUR, VICTIM_WEIGHT
from autoloop.engines.rca.results import MAX_EVIDENCE, MAX_TEXT, Action, Cause, FaultType, RCAResult

__all__ = [
    "ACTIONS",
    "CONFIDENT",
    "DEMAND_FRACTION",
    "DEMAND_SAMPLES",
    "EXTERNAL_DEMAND",
    "HARMFUL_UP",
    "IMPROVEMENT_WEIGHT",
    "LEAK_GROWTH",
    "MAX_ALARMS_PER_METRIC",
    "MAX_EVIDENCE",
    "MAX_TEXT",
    "PROPAGATING_KINDS",
    "RAMP_MIN_Z",
    "RAMP_T_STAT",
    "REFERENCE_SHARE",
    "RELATIVE_FLOOR",
    "ROLLOUT_WINDOW_S",
    "SLOW_LEAK_PER_HOUR",
    "VICTIM_WEIGHT",
    "Action",
    "Cause",
    "Evidence",
    "FaultType",
    "Findings",
    "Links",
    "Node",
    "RCAResult",
    "RootCauseAnalyzer",
    "analyze",
    "refine_onset",
    "unexplained_anomaly",
]
