"""Prometheus metrics of the notifier service."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class NotifierMetrics:
    """Signals applied and incidents opened by the notifier."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.signals = Counter(
            "livetriage_notifier_signals_consumed", "Signals consumed.", ["kind"], registry=registry
        )
        self.duplicates = Counter(
            "livetriage_notifier_signals_duplicate", "Signals already applied (redeliveries).",
            registry=registry,
        )
        self.invalid = Counter(
            "livetriage_notifier_signals_invalid", "Unreadable signals sent to the DLQ.", registry=registry
        )
        self.incidents_created = Counter(
            "livetriage_notifier_incidents_created", "Incidents opened.", ["severity"], registry=registry
        )
        self.notifications = Counter(
            "livetriage_notifier_notifications", "Delivery attempts by channel and resulting status.",
            ["channel", "status"], registry=registry,
        )
        self.batch_seconds = Histogram(
            "livetriage_notifier_batch_seconds", "Time to apply one batch of signals.", registry=registry
        )
