"""Prometheus metrics of the triage service."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.kafka import ConsumerLag
from shared.looplag import EventLoopLag


class TriageMetrics:
    """What triage consumed, raised, held in memory, and found too late to count."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.lag = ConsumerLag.of(registry)
        self.loop_lag = EventLoopLag.of(registry)
        self.consumed = Counter(
            "livetriage_triage_records_consumed", "Records consumed.", ["stage"], registry=registry
        )
        self.invalid = Counter(
            "livetriage_triage_reports_invalid", "Clean-topic records triage could not read.",
            registry=registry,
        )
        self.late = Counter(
            "livetriage_triage_reports_late", "Reports later than the grace period (not counted).",
            ["stage"], registry=registry,
        )
        self.replayed = Counter(
            "livetriage_triage_records_replayed", "Re-published records recognised and skipped.",
            ["stage"], registry=registry,
        )
        self.signals = Counter(
            "livetriage_triage_signals", "Signals emitted.", ["kind"], registry=registry
        )
        self.keys = Gauge(
            "livetriage_triage_keys_held", "Keys held in memory.", ["stage"], registry=registry
        )
        self.checkpoint_seconds = Histogram(
            "livetriage_triage_checkpoint_seconds", "Time to persist a checkpoint.", ["stage"],
            registry=registry,
        )
        self.trend_records = Counter(
            "livetriage_triage_trend_records_published", "Trend outbox records published.",
            registry=registry,
        )
        self.dropped = Counter(
            "livetriage_triage_records_dropped",
            "Records triage could never produce (too large, rejected): logged and skipped.",
            ["record", "reason"], registry=registry,
        )
        self.rewinds = Counter(
            "livetriage_triage_rewinds", "Times state was reloaded from the last checkpoint.",
            ["stage"], registry=registry,
        )
