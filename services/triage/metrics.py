"""Prometheus metrics of the triage service."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class TriageMetrics:
    """What triage consumed, what it raised, and what arrived too late to count."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.consumed = Counter(
            "livetriage_triage_reports_consumed", "Clean reports consumed.", registry=registry
        )
        self.invalid = Counter(
            "livetriage_triage_reports_invalid", "Clean-topic records triage could not read.",
            registry=registry,
        )
        self.late = Counter(
            "livetriage_triage_reports_late", "Reports later than the grace period.", registry=registry
        )
        self.signals = Counter(
            "livetriage_triage_signals", "Signals emitted.", ["kind"], registry=registry
        )
        self.windows = Gauge(
            "livetriage_triage_windows_held", "Open windows held in memory.", registry=registry
        )
