"""Prometheus metrics of the ingest service."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from shared.kafka import ConsumerLag
from shared.looplag import EventLoopLag


class IngestMetrics:
    """Counters for what ingest consumed, published, dropped and dead-lettered."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.lag = ConsumerLag.of(registry)
        self.loop_lag = EventLoopLag.of(registry)
        self.consumed = Counter(
            "livetriage_ingest_reports_consumed", "Raw reports consumed.", registry=registry
        )
        self.published = Counter(
            "livetriage_ingest_reports_published", "Valid, new reports published.", registry=registry
        )
        self.duplicates = Counter(
            "livetriage_ingest_duplicates", "Reports dropped as duplicates by report_id.", registry=registry
        )
        self.dlq = Counter(
            "livetriage_ingest_dlq", "Reports sent to the dead-letter topic.", ["reason"], registry=registry
        )
        self.batch_seconds = Histogram(
            "livetriage_ingest_batch_seconds", "Time to handle one batch.", registry=registry
        )
