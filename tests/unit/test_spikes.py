"""Triage decisions: deterministic signals for critical reports and window spikes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.triage.spikes import Detector, DetectorConfig

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


def rep(i: int, *, stream: str = "s1", category: str = "violence", source: str = "user",
        viewers: int = 1000, at: datetime | None = None) -> dict[str, object]:
    return {
        "report_id": f"r{i}", "stream_id": stream, "category": category, "source": source,
        "viewer_count": viewers, "reported_at": (at or T0 + timedelta(seconds=i)).isoformat(),
    }


def run(reports: list[dict[str, object]], **cfg: object) -> list:  # type: ignore[type-arg]
    d = Detector(DetectorConfig(**cfg))  # type: ignore[arg-type]
    out = []
    for r in reports:
        out.extend(d.process(0, r))
    return out


def test_spike_fires_once_per_window_at_threshold() -> None:
    sigs = run([rep(i) for i in range(30)], spike_threshold=10, window_size_s=60)
    spikes = [s for s in sigs if s.kind == "spike"]
    assert len(spikes) == 1
    s = spikes[0]
    assert s.report_count == 10 and s.dedup_key == "spike:s1:violence"
    assert s.window_start == datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert s.signal_id == f"spike:s1:violence:{int(s.window_start.timestamp() * 1000)}"
    assert s.sample_report_ids[:3] == ["r0", "r1", "r2"]
    assert {f.name for f in s.factors} == {"category_weight", "window_count", "reach"}
    assert "10 violence reports" in s.reason


def test_below_threshold_is_quiet() -> None:
    assert run([rep(i) for i in range(9)], spike_threshold=10) == []


def test_keys_do_not_mix() -> None:
    reports = [rep(i, stream=f"s{i % 3}") for i in range(27)]
    assert [s for s in run(reports, spike_threshold=10) if s.kind == "spike"] == []


def test_critical_report_signals_at_once() -> None:
    sigs = run([rep(1, category="child_safety", source="moderator", viewers=900_000)])
    assert [s.kind for s in sigs] == ["critical_report"]
    assert sigs[0].signal_id == "critical:r1" and sigs[0].severity.value == "SEV1"


def test_replay_gives_identical_signals() -> None:
    reports = [rep(i, stream=f"s{i % 2}", at=T0 + timedelta(seconds=i * 3)) for i in range(200)]
    assert run(reports, spike_threshold=10) == run(reports, spike_threshold=10)


def test_late_reports_are_counted_not_lost() -> None:
    d = Detector(DetectorConfig(window_size_s=10, grace_s=5, spike_threshold=100))
    d.process(0, rep(1, at=T0))
    d.process(0, rep(2, at=T0 + timedelta(seconds=60)))
    d.process(0, rep(3, at=T0))  # far behind the watermark
    assert d.late_reports == 1
    assert d.windows_held() == 1  # the closed window was expired
