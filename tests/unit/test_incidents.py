"""Merging signals into incidents, and pagination cursors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.notifier.incidents import reopen, MAX_SAMPLE, merge, open_incident
from services.notifier.store import BadCursor, decode_cursor, encode_cursor
from shared.events import Category, Severity, Signal

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def sig(n: int, severity: str = "SEV3", kind: str = "spike", samples: int = 5) -> Signal:
    return Signal(
        signal_id=f"sig{n}", kind=kind, dedup_key="spike:s1:violence", stream_id="s1",  # type: ignore[arg-type]
        category=Category.violence, severity=Severity(severity), score=0.5,
        observed_at=T0 + timedelta(minutes=n), window_start=T0 + timedelta(minutes=n),
        report_count=10, reason=f"reason {n}", sample_report_ids=[f"r{n}-{i}" for i in range(samples)],
    )


def test_open_then_merge() -> None:
    ch = open_incident(sig(0))
    assert ch.state.severity is Severity.SEV3 and ch.state.report_count == 10
    assert [e for e, _ in ch.events] == ["triggered"]
    ch2 = merge(ch.state, sig(1))
    # a later window of the same spike overlaps the first: its reports are not new
    assert ch2.state.signal_count == 2 and ch2.state.report_count == 10
    assert ch2.state.last_signal_at == T0 + timedelta(minutes=1)
    assert ch2.state.started_at == T0
    assert [e for e, _ in ch2.events] == ["signal_merged"]


def test_report_count_adds_bursts_and_critical_reports_but_not_overlapping_windows() -> None:
    st = open_incident(sig(0)).state
    bigger = sig(1).model_copy(update={"report_count": 25})
    assert merge(st, bigger).state.report_count == 25
    assert merge(st, sig(2)).state.report_count == 25  # a smaller window: still the largest
    assert reopen(st, sig(3)).state.report_count == 35  # a flap's new burst adds its reports
    crit = sig(4, kind="critical_report").model_copy(update={"report_count": 1, "dedup_key": "critical:s1:violence"})
    c = open_incident(crit).state
    assert merge(c, crit.model_copy(update={"signal_id": "c2"})).state.report_count == 2


def test_severity_only_rises_and_is_recorded() -> None:
    st = open_incident(sig(0, "SEV3")).state
    up = merge(st, sig(1, "SEV1"))
    assert up.state.severity is Severity.SEV1
    assert ("severity_raised", {"from": "SEV3", "to": "SEV1"}) in up.events
    down = merge(up.state, sig(2, "SEV4"))
    assert down.state.severity is Severity.SEV1
    assert all(e != "severity_raised" for e, _ in down.events)


def test_sample_is_bounded_and_unique() -> None:
    st = open_incident(sig(0, samples=15)).state
    st = merge(st, sig(0, samples=15)).state  # same ids again
    st = merge(st, sig(1, samples=15)).state
    assert len(st.sample_report_ids) == MAX_SAMPLE
    assert len(set(st.sample_report_ids)) == MAX_SAMPLE


def test_resolve_signal_closes() -> None:
    st = open_incident(sig(0)).state
    ch = merge(st, sig(1, kind="resolve"))
    assert ch.state.status == "resolved" and ch.state.resolved_at == T0 + timedelta(minutes=1)


def test_cursor_round_trip_and_garbage() -> None:
    iid = uuid.uuid4()
    row = {"detected_at": T0, "id": iid, "severity": "SEV2"}
    assert decode_cursor(encode_cursor(row)) == (T0, iid, None)
    assert decode_cursor(encode_cursor(row, "detected_at"), "detected_at") == (T0, iid, None)
    assert decode_cursor(encode_cursor(row, "severity"), "severity") == (T0, iid, "SEV2")
    for bad in ("", "!!!", "bm9wZQ", encode_cursor(row)[:-4], "e30"):
        with pytest.raises(BadCursor):
            decode_cursor(bad)


def test_cursor_of_another_sort_is_refused() -> None:
    row = {"detected_at": T0, "id": uuid.uuid4(), "severity": "SEV1"}
    with pytest.raises(BadCursor, match="sort=severity"):
        decode_cursor(encode_cursor(row, "severity"))
    with pytest.raises(BadCursor, match="sort=-detected_at"):
        decode_cursor(encode_cursor(row), "detected_at")
