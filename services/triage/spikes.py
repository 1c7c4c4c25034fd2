"""Triage decisions: critical single reports and per-(stream, category) window spikes.

Pure: clean report dicts in, ``Signal`` objects out. Signal ids are derived from the data
(report id, key and window start), so replaying the same reports yields the same ids and the
notifier can apply each decision exactly once. Issue #4 replaces the fixed threshold with a
learned baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.triage.scoring import CATEGORY_WEIGHT, reach, score_report, severity_for
from services.triage.windows import Window, WindowCounter
from shared.events import Category, Factor, Signal


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Knobs of the first-cut detector."""

    window_size_s: int = 60
    grace_s: int = 30
    spike_threshold: int = 20
    critical_score: float = 0.9


def event_ms(reported_at: str) -> int:
    return int(datetime.fromisoformat(reported_at).timestamp() * 1000)


def _ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class Detector:
    """Holds the open windows of each partition and turns reports into signals."""

    def __init__(self, config: DetectorConfig) -> None:
        self.config = config
        self._partitions: dict[int, WindowCounter] = {}
        self.late_reports = 0

    def windows_held(self) -> int:
        return sum(len(w) for w in self._partitions.values())

    def forget_partition(self, partition: int) -> None:
        self._partitions.pop(partition, None)

    def process(self, partition: int, report: dict[str, Any]) -> list[Signal]:
        """Apply one clean report; return the signals it raises (often none)."""
        cfg = self.config
        signals: list[Signal] = []
        category = report["category"]
        viewers = int(report.get("viewer_count") or 0)
        scored = score_report(category, report["source"], viewers, report.get("classifier_score"))
        ts_ms = event_ms(report["reported_at"])

        if scored.score >= cfg.critical_score:
            signals.append(
                Signal(
                    signal_id=f"critical:{report['report_id']}",
                    kind="critical_report",
                    dedup_key=f"critical:{report['stream_id']}:{category}",
                    stream_id=report["stream_id"],
                    category=Category(category),
                    region=report.get("region"),
                    severity=severity_for(scored.score),
                    score=round(scored.score, 4),
                    observed_at=_ts(ts_ms),
                    report_count=1,
                    reason=(
                        f"critical {category} report from a {report['source']} "
                        f"on a stream with {viewers} viewers (score {scored.score:.2f})"
                    ),
                    factors=list(scored.factors),
                    sample_report_ids=[report["report_id"]],
                )
            )

        counter = self._partitions.get(partition)
        if counter is None:
            counter = self._partitions[partition] = WindowCounter(
                cfg.window_size_s * 1000, cfg.grace_s * 1000
            )
        key = (report["stream_id"], category)
        win = counter.add(key, ts_ms, report["report_id"], scored.score, viewers)
        if win is None:
            self.late_reports += 1
        elif not win.fired and win.count >= cfg.spike_threshold:
            win.fired = True
            signals.append(self._spike(report, win, ts_ms))
        # closed windows are dropped as the watermark passes them
        for _ in counter.expire():
            pass
        return signals

    def _spike(self, report: dict[str, Any], win: Window, ts_ms: int) -> Signal:
        cfg = self.config
        category = report["category"]
        w = CATEGORY_WEIGHT.get(category, CATEGORY_WEIGHT["other"])
        volume = min(1.0, win.count / (3 * cfg.spike_threshold))
        r = reach(win.max_viewers)
        score = w * (0.6 + 0.4 * volume) * (0.5 + 0.5 * r)
        stream = report["stream_id"]
        return Signal(
            signal_id=f"spike:{stream}:{category}:{win.start_ms}",
            kind="spike",
            dedup_key=f"spike:{stream}:{category}",
            stream_id=stream,
            category=Category(category),
            region=report.get("region"),
            severity=severity_for(score),
            score=round(score, 4),
            observed_at=_ts(ts_ms),
            window_start=_ts(win.start_ms),
            window_end=_ts(win.end_ms),
            report_count=win.count,
            reason=(
                f"{win.count} {category} reports on stream {stream} within "
                f"{cfg.window_size_s}s (threshold {cfg.spike_threshold})"
            ),
            factors=[
                Factor(name="category_weight", value=category, contribution=w),
                Factor(name="window_count", value=float(win.count), contribution=0.6 + 0.4 * volume),
                Factor(name="reach", value=float(win.max_viewers), contribution=0.5 + 0.5 * r),
            ],
            sample_report_ids=list(win.sample),
        )
