"""How a signal changes an incident. Pure: current state and a signal in, changes out.

An incident is keyed by the signal's ``dedup_key``; at most one is open per key. A later
signal for the same key merges into it: severity only rises, counts and samples grow, and
each notable change becomes a timeline entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.events import Severity, Signal

MAX_SAMPLE = 20


@dataclass(slots=True)
class IncidentState:
    """The mutable fields of an open incident that signals change."""

    severity: Severity
    score: float
    reason: str
    started_at: datetime
    last_signal_at: datetime
    report_count: int
    signal_count: int
    factors: list[dict[str, Any]]
    sample_report_ids: list[str]
    status: str = "triggered"
    resolved_at: datetime | None = None


@dataclass(slots=True)
class Change:
    """What applying a signal did: the new state and the timeline entries to record."""

    state: IncidentState
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def kind_of(signal: Signal) -> str:
    """The incident kind a signal opens: spike, critical_report or trend."""
    return signal.kind if signal.kind in ("spike", "critical_report", "trend") else "spike"


def start_of(signal: Signal) -> datetime:
    """When what the signal describes began, on event time: the surge's first report where
    triage knows it (a window's start can be up to a window earlier than the surge)."""
    return signal.started_at or signal.window_start or signal.observed_at


def open_incident(signal: Signal) -> Change:
    """A new incident from its first signal."""
    state = IncidentState(
        severity=signal.severity,
        score=signal.score,
        reason=signal.reason,
        started_at=start_of(signal),
        last_signal_at=signal.observed_at,
        report_count=signal.report_count,
        signal_count=1,
        factors=[f.model_dump() for f in signal.factors],
        sample_report_ids=list(signal.sample_report_ids[:MAX_SAMPLE]),
    )
    return Change(state, [("triggered", {"signal_id": signal.signal_id, "severity": signal.severity.value,
                                         "reason": signal.reason})])


def merge(state: IncidentState, signal: Signal, *, new_burst: bool = False) -> Change:
    """Apply a later signal for the same key to an open incident. A spike's later signals
    describe windows overlapping its first (a rise counts the same reports again), so the
    incident's report count is the largest window's; each critical report, and each burst
    of a flap (``new_burst``), adds its own."""
    events: list[tuple[str, dict[str, Any]]] = []
    if signal.kind == "resolve":
        state.status = "resolved"
        state.resolved_at = signal.observed_at
        events.append(("resolved", {"signal_id": signal.signal_id, "how": "auto", "reason": signal.reason}))
        return Change(state, events)

    events.append(("signal_merged", {"signal_id": signal.signal_id, "report_count": signal.report_count}))
    if signal.severity.rank < state.severity.rank:
        events.append(("severity_raised", {"from": state.severity.value, "to": signal.severity.value}))
        state.severity = signal.severity
        state.reason = signal.reason
        state.factors = [f.model_dump() for f in signal.factors]
    state.score = max(state.score, signal.score)
    state.signal_count += 1
    if new_burst or signal.kind == "critical_report":
        state.report_count += signal.report_count
    else:
        state.report_count = max(state.report_count, signal.report_count)
    if signal.observed_at > state.last_signal_at:
        state.last_signal_at = signal.observed_at
    start = start_of(signal)
    if start < state.started_at:
        state.started_at = start
    room = MAX_SAMPLE - len(state.sample_report_ids)
    if room > 0:
        seen = set(state.sample_report_ids)
        state.sample_report_ids.extend([r for r in signal.sample_report_ids if r not in seen][:room])
    return Change(state, events)


def reopen(state: IncidentState, signal: Signal) -> Change:
    """A key that opened again within the flap cool-down: its resolved incident continues
    with this burst (the timeline counts the bursts)."""
    state.status = "triggered"
    state.resolved_at = None
    change = merge(state, signal, new_burst=True)
    change.events.insert(0, ("reopened", {"signal_id": signal.signal_id, "reason": signal.reason,
                                          "report_count": signal.report_count}))
    return change
