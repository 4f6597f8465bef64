"""What one node's swarm side has done: rounds it ran and joined, why it abstained, how long
its rounds took and how far their settlements lagged (``/metrics``, ``/api/v1/status``).

Counters only grow (Prometheus counters); the histograms are cumulative Prometheus
histograms with fixed buckets.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections import Counter
from collections.abc import Sequence
from typing import Any

#: round latency buckets at the origin, in seconds (a failing round ends in under 1 s; a
#: full language-model round with judging takes tens of seconds)
ROUND_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
#: settlement lag buckets, in blocks from the round's height to the settling block
SETTLEMENT_LAG_BUCKETS = (1, 2, 3, 5, 8, 13, 21, 34, 55, 89)


class Histogram:
    """A cumulative histogram: per-bucket counts of observations <= its upper bound, plus
    ``+Inf``, their sum and count (Prometheus' ``_bucket``, ``_sum``, ``_count``)."""

    def __init__(self, buckets: Sequence[float]) -> None:
        if list(buckets) != sorted(set(buckets)):
            raise ValueError("histogram buckets must be strictly increasing")
        self.buckets = tuple(float(b) for b in buckets)
        self.counts = [0] * (len(self.buckets) + 1)  # the last one: above every bound
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, observations <= le) for every bucket, ``+Inf`` last."""
        out: list[tuple[str, int]] = []
        running = 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else f"{bound:g}", running))
        return out


@dataclasses.dataclass
class SwarmStats:
    """One node's swarm counters (`node.swarm.service.SwarmService.stats`)."""

    originated: Counter[str] = dataclasses.field(default_factory=Counter)  # by outcome
    answered: int = 0  # answer commitments we sent
    judged: int = 0  # judgment commitments we sent
    # (kind name, reason) -> abstentions we sent
    abstained: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)
    settled: int = 0  # rounds we hold that settled on chain
    last_settlement_lag: int | None = None  # blocks, the latest settled round
    round_seconds: dict[str, Histogram] = dataclasses.field(default_factory=dict)
    settlement_lag: Histogram = dataclasses.field(
        default_factory=lambda: Histogram(SETTLEMENT_LAG_BUCKETS))

    def round_done(self, outcome: str, seconds: float) -> None:
        """A round we originated completed: ``answered`` or its failure code."""
        self.originated[outcome] += 1
        kind = "answered" if outcome == "answered" else "failed"
        self.round_seconds.setdefault(kind, Histogram(ROUND_SECONDS_BUCKETS)).observe(seconds)

    def round_settled(self, lag_blocks: int) -> None:
        """A round we hold settled ``lag_blocks`` after its height."""
        self.settled += 1
        self.last_settlement_lag = lag_blocks
        self.settlement_lag.observe(lag_blocks)

    def view(self) -> dict[str, Any]:
        """JSON for ``/api/v1/status`` (``swarm.rounds`` and ``swarm.settlement``)."""
        answered = self.originated.get("answered", 0)
        return {
            "rounds": {"originated": sum(self.originated.values()), "answered": answered,
                       "failed": dict(sorted((k, v) for k, v in self.originated.items()
                                             if k != "answered")),
                       "answers_sent": self.answered, "judgments_sent": self.judged,
                       "abstained": sum(self.abstained.values()),
                       "abstained_by_reason": dict(sorted(Counter(
                           reason for (_, reason) in self.abstained.elements()).items()))},
            "settlement": {"settled": self.settled,
                           "last_lag_blocks": self.last_settlement_lag,
                           "mean_lag_blocks": None if not self.settlement_lag.count else
                           round(self.settlement_lag.sum / self.settlement_lag.count, 2)},
        }
