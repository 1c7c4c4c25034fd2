"""Bursts that recur on a key: the peaks of its recent episodes of unusual windows. Pure.

A key's 1 h baseline is frozen while it is in a spike, so a surge is never learned as normal;
but a key whose bursts recur (real count data: a burst every few hours, several times its
median) then calls each one new, and pages for each. ``Recurrence`` remembers the key's
recent **episodes**: runs of windows that were unusual under the 1 h baseline (the detector
decides which: see ``KeyedDetector._learn_recurrence``), each with its peak multiple of that baseline (of one report, for a key whose baseline
is under one: a silent key's bursts are counts). An episode is counted whether or not it
opened a spike, so a pattern the detector stopped paging for stays known.

One burst is news, and so is a second; a third within the horizon (a day) makes a pattern:
``usual`` is then the third-highest recent peak, and the key opens only past it (times a
margin), so a burst bigger than all but two of the day's still pages and the fourth of the
same size does not. A real surge is one episode however long it lasts.
"""

from __future__ import annotations

from typing import Any

MAX_EPISODES = 12


class Recurrence:
    __slots__ = ("episodes", "peak")

    def __init__(self, peak: float = 0.0, episodes: list[tuple[int, float]] | None = None) -> None:
        self.peak = peak  # the open episode's peak multiple (0: none open)
        self.episodes = episodes if episodes is not None else []  # (end ms, peak), oldest first

    def observe(self, ratio: float, end_ms: int) -> None:
        """One window ending at ``end_ms``: ``ratio`` times the baseline if unusual, else 0."""
        if ratio > 0.0:
            self.peak = max(self.peak, ratio)
        elif self.peak:
            self.episodes.append((end_ms, self.peak))
            if len(self.episodes) > MAX_EPISODES:
                del self.episodes[0]
            self.peak = 0.0

    def usual(self, now_ms: int, horizon_ms: int, episodes: int) -> float:
        """The ``episodes``-th highest peak among episodes that ended within ``horizon_ms``;
        0 if there were fewer. (An episode still going on is not one of them: a burst must
        not raise its own bar.)"""
        peaks = [p for t, p in self.episodes if t > now_ms - horizon_ms]
        if len(peaks) < episodes:
            return 0.0
        peaks.sort(reverse=True)
        return peaks[episodes - 1]

    def dump(self) -> list[Any]:
        return [self.peak, [list(e) for e in self.episodes]]

    @classmethod
    def load(cls, d: list[Any]) -> Recurrence:
        peak, eps = d
        return cls(float(peak), [(int(t), float(p)) for t, p in eps])

    def __bool__(self) -> bool:
        return bool(self.peak or self.episodes)
