"""The long view of a stream key, for changes too slow for its 1 h baseline. Pure.

A surge that builds over half an hour is learned by a baseline with a half-life of an hour
about as fast as it grows: each of its windows is only a little above the last, none is
unusual against a reference that keeps moving up, and the spike never opens (the platform
world's slow ramps, 20..60 min to 3..8x: 13 of 40 found). A key also keeps

- a slow baseline of its window_s count (half-life hours, learned from the same clipped
  windows as the main one, frozen in a spike the same way), and
- its count in each whole window_s window (minute-aligned) over the last ``ramp_window_s``,

so the detector can ask, once a minute, whether the last half hour holds far more reports
than the slow baseline expects (``KeyedDetector._test_ramp``). Only windows with reports are
kept: an idle key's quiet minutes are the ones missing.

A slow baseline alone calls every morning rise a ramp (NAB's daily series: a dozen incidents
each). So the key also keeps its count per half hour of the last two days, and a key with a
day of history is held to the larger of its slow baseline and the same time the day before
(the half hour then, or the one before it): daily seasonality, where there is any, for the
only test slow enough to see it.
"""

from __future__ import annotations

from typing import Any

from services.triage.baseline import Baseline

SLOT_MS = 1_800_000  # the half hours a day-old key is compared with
DAY_SLOTS = 86_400_000 // SLOT_MS


class Ramp:
    """A key's slow baseline and its recent whole-window counts."""

    __slots__ = ("base", "counts", "since", "slots")

    def __init__(self, base: Baseline | None = None) -> None:
        self.base = base if base is not None else Baseline(0.0, 0.0, 0)
        self.counts: list[tuple[int, int]] = []  # (window end ms, count), oldest first, counts > 0
        self.slots: dict[int, int] = {}  # half hour (since the epoch) -> count, the last two days
        self.since = 0  # end of the first window recorded (0: none yet)

    def record(self, end: int, count: int, keep_after: int) -> None:
        """The whole window ending at ``end`` held ``count``; forget windows ending at or
        before ``keep_after``."""
        if not self.since:
            self.since = end
        counts = self.counts
        if counts and counts[0][0] <= keep_after:
            self.counts = counts = [c for c in counts if c[0] > keep_after]
        if count > 0:
            counts.append((end, count))
            slot = (end - 1) // SLOT_MS
            slots = self.slots
            slots[slot] = slots.get(slot, 0) + count
            if len(slots) > 2 * DAY_SLOTS + 2:
                self.slots = {k: v for k, v in slots.items() if k > slot - 2 * DAY_SLOTS}

    def day_before(self, end: int) -> int | None:
        """The count of the half hour a day before ``end`` (the larger of the two it spans),
        or None if this key's record does not reach back that far."""
        slot = (end - 1) // SLOT_MS - DAY_SLOTS
        if not self.since or (self.since - 1) // SLOT_MS > slot - 1:
            return None
        return max(self.slots.get(slot, 0), self.slots.get(slot - 1, 0))

    def total(self, after: int) -> int:
        """Reports in the recorded windows ending after ``after``."""
        return sum(c for e, c in self.counts if e > after)

    def dump(self) -> list[Any]:
        return [list(self.base.dump()), [list(c) for c in self.counts], list(self.slots.items()), self.since]

    @classmethod
    def load(cls, d: list[Any]) -> Ramp:
        r = cls(Baseline(*d[0]))
        r.counts = [(int(e), int(c)) for e, c in d[1]]
        r.slots = {int(k): int(v) for k, v in d[2]}
        r.since = int(d[3])
        return r
