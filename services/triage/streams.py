"""The per-partition triage task for clean reports. Pure: parsed reports in, signals out.

One ``StreamTask`` per partition of ``triage.reports`` (a stream's reports all share one
partition, key = stream_id). It owns the partition's event-time clock: the watermark is the
highest event time seen minus the grace period; a report below it is late (counted, not
added). Per (stream, category) it runs a ``KeyedDetector`` with early firing, raises a
critical-report signal at once when a single report scores high enough, and pre-aggregates
per-(category) and per-(category, region) pane tallies for the platform-wide trend stage.

Replays of the same record (ingest republishing after a crash) are recognised by the source
(partition, offset) ingest stamps on every clean report, so nothing is counted twice.
"""

from __future__ import annotations

from typing import Any

from services.triage.detector import BaselineRow, DetectorConfig, KeyedDetector
from services.triage.scoring import report_score, score_report, user_can_be_critical
from services.triage.signals import critical, from_decision
from services.triage.tally import Tally, reporter_hash
from shared.events import Signal

StreamKey = tuple[str, str]


def _category(key: tuple[str, ...]) -> str:
    return key[1]


class StreamTask:
    """Detection state of one clean-topic partition."""

    def __init__(self, cfg: DetectorConfig, partition: int) -> None:
        self.cfg = cfg
        self.partition = partition
        self.detector = KeyedDetector(cfg, early=True, min_volume=cfg.min_volume, category_of=_category)
        self.max_event_ms: int | None = None
        self.src_hwm: dict[int, int] = {}
        self.trend_out: dict[tuple[tuple[str, ...], int], Tally] = {}
        self.trend_seq = 0
        self.late = 0
        self.replayed = 0
        self._users_critical = user_can_be_critical(cfg.scoring)
        self._grace = cfg.grace_ms  # plain attributes: read for every report
        self._hop = cfg.hop_ms

    @property
    def watermark_ms(self) -> int | None:
        return None if self.max_event_ms is None else self.max_event_ms - self.cfg.grace_ms

    @staticmethod
    def key_of(report: dict[str, Any]) -> StreamKey:
        return (report["stream_id"], report["category"])

    def missing(self, key: StreamKey) -> bool:
        return self.detector.missing(key)

    def process(
        self,
        report: dict[str, Any],
        ts_ms: int,
        src: tuple[int, int] | None = None,
        stored: BaselineRow | None = None,
    ) -> list[Signal]:
        """Apply one clean report (event time ``ts_ms``); return the signals it raises."""
        if src is not None:
            sp, so = src
            if so <= self.src_hwm.get(sp, -1):
                self.replayed += 1
                return []
            self.src_hwm[sp] = so
        cfg = self.cfg
        out: list[Signal] = []
        category = report["category"]
        source = report["source"]
        viewers = report.get("viewer_count") or 0
        if source != "user" or self._users_critical:
            # before the lateness check: a critical report pages however late it arrives
            cs = report.get("classifier_score")
            if report_score(category, source, viewers, cs, cfg.scoring) >= cfg.scoring.critical_score:
                out.append(critical(report, score_report(category, source, viewers, cs, cfg.scoring), ts_ms, cfg))
        mx = self.max_event_ms
        if mx is None or ts_ms > mx:
            if mx is None or ts_ms - self._grace >= self._next_close:
                out.extend(self.advance(ts_ms))
            else:
                self.max_event_ms = ts_ms  # no window end reached: nothing to close
        elif ts_ms < mx - self._grace:
            self.late += 1
            return out

        report_id = report["report_id"]
        reporter_id = report.get("reporter_id")
        reporter = reporter_hash(reporter_id if reporter_id else f"{source}:{report_id}")
        d = self.detector.add((report["stream_id"], category), ts_ms, reporter=reporter,
                              viewers=viewers, report_id=report_id, stored=stored)
        if d is not None:
            out.append(from_decision(d, cfg, trend=False))

        pane = ts_ms - ts_ms % self._hop
        trend_out = self.trend_out
        tk: tuple[tuple[str, ...], int] = ((category,), pane)
        t = trend_out.get(tk)
        if t is None:
            t = trend_out[tk] = Tally()
        t.add(reporter)
        region = report.get("region")
        if region:
            tk = ((category, region), pane)
            t = trend_out.get(tk)
            if t is None:
                t = trend_out[tk] = Tally()
            t.add(reporter)
        return out

    @property
    def _next_close(self) -> int:
        closed = self.detector.closed_through
        return -(2**62) if closed is None else closed + self._hop

    def advance(self, ts_ms: int) -> list[Signal]:
        """Move the event-time clock to ``ts_ms``; close the windows the watermark passed.

        Also the idle flush: the runner may call it with the wall clock when a partition has
        had no reports for a while, so spikes can end on a partition that went silent.
        """
        if self.max_event_ms is not None and ts_ms <= self.max_event_ms:
            return []
        self.max_event_ms = ts_ms
        if ts_ms - self._grace < self._next_close:
            return []  # the watermark has not reached the next window end: nothing closes
        return [
            from_decision(d, self.cfg, trend=False)
            for d in self.detector.close_through(ts_ms - self.cfg.grace_ms)
        ]

    # ---- checkpoint -------------------------------------------------------------------

    def take_trend_outbox(self) -> dict[str, Any]:
        """The trend tallies gathered since the last checkpoint, numbered for dedup."""
        self.trend_seq += 1
        items = [[list(k), p, *t.dump()] for (k, p), t in self.trend_out.items()]
        self.trend_out = {}
        return {"src": self.partition, "seq": self.trend_seq, "wm": self.watermark_ms, "items": items}

    def dump(self) -> dict[str, Any]:
        return {
            "detector": self.detector.dump(),
            "max_event_ms": self.max_event_ms,
            "src_hwm": list(self.src_hwm.items()),
            "trend_out": [[list(k), p, *t.dump()] for (k, p), t in self.trend_out.items()],
            "trend_seq": self.trend_seq,
        }

    def load(self, d: dict[str, Any]) -> None:
        self.detector.load(d["detector"])
        self.max_event_ms = d["max_event_ms"]
        self.src_hwm = {int(p): int(o) for p, o in d["src_hwm"]}
        self.trend_out = {}
        for k, p, count, reps, overflow in d["trend_out"]:
            self.trend_out[(tuple(k), p)] = Tally.load((count, reps, overflow))
        self.trend_seq = d["trend_seq"]
