"""Persistence: how many tested samples must exceed before a change is more than a chance excursion.

Owns: `FALSE_ALARM_PROBABILITY` (per detector pass), `exceedance_tail`
(the beta-binomial predictive tail) and `required_count` (the smallest count of exceeding tested
samples that the reference's own exceedance rate makes rarer than a false-alarm probability).
A sample *exceeds* when its z on a side reaches the CUSUM allowance (`cusum_drift`, z 2.5 by
default): the level from which a sample adds to the cumulative sum, so that small steps (which
the CUSUM finds) count as well as large ones, and a level the reference reaches often enough for
its rate to rest on samples rather than on the prior.
Must never: raise alarms or read metric names; `alarms` applies the count, `detecting` splits the
false-alarm probability over the series of a pass.

Why: a robust z of 10 on two or three scrapes is what benign transients do (a garbage-collection
burst, one scrape of errors): large, but short. A sustained change keeps
exceeding. Under "nothing changed", each tested sample exceeds on a side with the rate `p` at
which the reference exceeded there; with `k` of `n` reference samples exceeding and a Jeffreys
prior Beta(1/2, 1/2), `p` is Beta(k + 1/2, n - k + 1/2) and the count among `m` tested samples is
beta-binomial (the posterior predictive). The required count is the smallest whose predictive
tail is at most the false-alarm probability; counting only grows, so checking it at every sample
(causal) or once at the end of the tested part raises the same passes, and the probability
bounds the rate at which a pass raises by chance. The bound treats samples as independent given
`p`; exceedances that come in clusters (a burst is three at once) make it approximate, which is
why a reference that shows bursts asks for more than one burst's worth. No count is hand-set: a
noisy reference (many exceedances) asks for more persistence, a calm one for less.
"""

from __future__ import annotations

import math
from typing import Final

FALSE_ALARM_PROBABILITY: Final[float] = 0.05
"""The chance that one pass of the detector (every series it tests) raises an anomaly on a
fault-free input: the seed's false-positive target of 5 %. `detecting` divides it over the
series of the pass (Bonferroni), so each series gets its share."""


def exceedance_tail(count: int, *, tested: int, exceeded: int, reference: int) -> float:
    """P(at least `count` of `tested` samples exceed) under the beta-binomial predictive of a
    reference where `exceeded` of `reference` samples exceeded (Jeffreys prior)."""
    if count <= 0:
        return 1.0
    if count > tested:
        return 0.0
    a, b = exceeded + 0.5, reference - exceeded + 0.5
    log_beta_ab = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    total = 0.0
    for k in range(count, tested + 1):
        log_choose = math.lgamma(tested + 1) - math.lgamma(k + 1) - math.lgamma(tested - k + 1)
        log_beta = math.lgamma(k + a) + math.lgamma(tested - k + b) - math.lgamma(tested + a + b)
        total += math.exp(log_choose + log_beta - log_beta_ab)
    return min(total, 1.0)


def required_count(*, tested: int, exceeded: int, reference: int, alpha: float) -> int:
    """The smallest count of exceeding samples among `tested` whose predictive tail is at most
    `alpha`; `tested + 1` (never) when even all of them would not be that rare."""
    for count in range(1, tested + 1):
        if exceedance_tail(count, tested=tested, exceeded=exceeded, reference=reference) <= alpha:
            return count
    return tested + 1
