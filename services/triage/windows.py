"""Event-time tumbling windows with a watermark and a grace period. Pure, no I/O.

One ``WindowCounter`` per source partition: a stream's reports all land in one partition
(key = stream_id), so its windows and watermark progress with that partition alone.
The watermark is the highest event time seen minus the grace period; a window whose end is
at or before the watermark is closed: reports for it are late and are counted, not added.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field

SAMPLE_SIZE = 10


@dataclass(slots=True)
class Window:
    """Counts for one key in one window."""

    start_ms: int
    end_ms: int
    count: int = 0
    max_score: float = 0.0
    max_viewers: int = 0
    fired: bool = False
    sample: list[str] = field(default_factory=list)


class WindowCounter:
    """Tumbling windows of ``size_ms`` per key, closed ``grace_ms`` after they end."""

    def __init__(self, size_ms: int, grace_ms: int) -> None:
        if size_ms <= 0 or grace_ms < 0:
            raise ValueError("size must be positive and grace non-negative")
        self.size_ms = size_ms
        self.grace_ms = grace_ms
        self.max_event_ms: int | None = None
        self._open: dict[tuple[Hashable, int], Window] = {}
        self._earliest_end: int | None = None  # lets expire() skip the scan when nothing closed

    @property
    def watermark_ms(self) -> int | None:
        return None if self.max_event_ms is None else self.max_event_ms - self.grace_ms

    def window_start(self, event_ms: int) -> int:
        return event_ms - (event_ms % self.size_ms)

    def add(
        self, key: Hashable, event_ms: int, report_id: str, score: float = 0.0, viewers: int = 0
    ) -> Window | None:
        """Count one report; returns its window, or None if the report is late."""
        start = self.window_start(event_ms)
        wm = self.watermark_ms
        if wm is not None and start + self.size_ms <= wm:
            return None
        win = self._open.get((key, start))
        if win is None:
            win = self._open[(key, start)] = Window(start, start + self.size_ms)
            if self._earliest_end is None or win.end_ms < self._earliest_end:
                self._earliest_end = win.end_ms
        win.count += 1
        if score > win.max_score:
            win.max_score = score
        if viewers > win.max_viewers:
            win.max_viewers = viewers
        if len(win.sample) < SAMPLE_SIZE:
            win.sample.append(report_id)
        if self.max_event_ms is None or event_ms > self.max_event_ms:
            self.max_event_ms = event_ms
        return win

    def expire(self) -> Iterator[tuple[Hashable, Window]]:
        """Remove and yield the windows the watermark has closed."""
        wm = self.watermark_ms
        if wm is None or self._earliest_end is None or self._earliest_end > wm:
            return
        closed = [k for k, w in self._open.items() if w.end_ms <= wm]
        for k in closed:
            yield k[0], self._open.pop(k)
        self._earliest_end = min((w.end_ms for w in self._open.values()), default=None)

    def __len__(self) -> int:
        return len(self._open)
