"""The platform-wide trend task: per (category) and (category, region), across all streams.

Stream tasks pre-aggregate pane tallies and publish them, keyed by trend key, to a
repartition topic (``triage.trends``), as Kafka Streams does: every trend key lands in one
partition, whichever triage instance counted its reports. A ``TrendTask`` per repartition
partition merges them. Each upstream partition numbers its outboxes (``seq``), so a
re-published outbox is applied once; its watermark comes along, and this task's clock is
the minimum over all upstream partitions (``expected``): it does not move until every one of
them has reported a watermark, so no upstream partition's early data is judged late because
it started a little after the others. Windows are tested when they close, with complete
counts, so the result does not depend on arrival order or on how many instances ran.
An upstream partition that never sees a report would hold the clock forever; the runner
``release``s the wait after a wall-clock idle period (the one use of the wall clock).
"""

from __future__ import annotations

from typing import Any

from services.triage.detector import BaselineRow, DetectorConfig, KeyedDetector
from services.triage.signals import from_decision
from shared.events import Signal


def _category(key: tuple[str, ...]) -> str:
    return key[0]


class TrendTask:
    """Detection state of one repartition-topic partition."""

    def __init__(self, cfg: DetectorConfig, partition: int) -> None:
        self.cfg = cfg
        self.partition = partition
        self.detector = KeyedDetector(
            cfg, early=False, min_volume=cfg.trend_min_volume, category_of=_category,
            z_open=cfg.trend_z_open,
        )
        self.sources: dict[int, tuple[int, int | None]] = {}  # src partition -> (seq, watermark)
        self.expected: int | None = None  # upstream partitions; None = whoever has reported
        self.released = False
        self.late = 0
        self.replayed = 0

    def keys_of(self, outbox: dict[str, Any]) -> list[tuple[str, ...]]:
        return [tuple(item[0]) for item in outbox["items"]]

    def missing(self, key: tuple[str, ...]) -> bool:
        return self.detector.missing(key)

    def watermark_ms(self) -> int | None:
        marks = [wm for _, wm in self.sources.values() if wm is not None]
        if not marks:
            return None
        if self.expected is not None and len(marks) < self.expected and not self.released:
            return None  # somebody has not spoken yet
        return min(marks)

    def waiting(self) -> bool:
        """True while data is held back because an upstream partition has not reported."""
        return self.watermark_ms() is None and bool(self.detector.keys)

    def release(self) -> list[Signal]:
        """Stop waiting for silent upstream partitions (called after an idle period)."""
        self.released = True
        mark = self.watermark_ms()
        if mark is None:
            return []
        return [from_decision(d, self.cfg, trend=True) for d in self.detector.close_through(mark)]

    def process(self, outbox: dict[str, Any], stored: dict[tuple[str, ...], BaselineRow]) -> list[Signal]:
        src, seq = int(outbox["src"]), int(outbox["seq"])
        prev = self.sources.get(src)
        if prev is not None and seq <= prev[0]:
            self.replayed += 1
            return []
        closed = self.detector.closed_through
        horizon = None if closed is None else closed - self.cfg.window_ms + self.cfg.hop_ms
        for k, pane, count, reps, overflow in outbox["items"]:
            if horizon is not None and pane < horizon:
                self.late += count
                continue
            key = tuple(k)
            self.detector.add(key, pane, tally=(count, reps, overflow), stored=stored.get(key))
        wm = outbox["wm"]
        if prev is not None and prev[1] is not None and (wm is None or wm < prev[1]):
            wm = prev[1]
        self.sources[src] = (seq, wm)
        mark = self.watermark_ms()
        if mark is None:
            return []
        return [from_decision(d, self.cfg, trend=True) for d in self.detector.close_through(mark)]

    def dump(self) -> dict[str, Any]:
        return {
            "detector": self.detector.dump(),
            "sources": [[p, s, wm] for p, (s, wm) in self.sources.items()],
            "released": self.released,
        }

    def load(self, d: dict[str, Any]) -> None:
        self.detector.load(d["detector"])
        self.sources = {int(p): (int(s), wm) for p, s, wm in d["sources"]}
        self.released = bool(d.get("released", False))
