"""Per-pane report tallies that resist brigading, with bounded memory. Pure.

A ``Tally`` counts reports and tracks the ``CAP`` distinct reporters with the smallest
(stable, 32-bit) hashes, with their exact report counts — a bottom-k sample. Past ``CAP``
distinct reporters it is ``overflow``: a crowd, not a handful of accounts. Which reporters are
tracked does not depend on arrival order (the k smallest hashes of a union are the k smallest
of the parts' k smallest), so the same reports give the same tally in any order, merged in
any grouping, on any instance.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

CAP = 16  # distinct reporters tracked per pane; beyond this a pane is "a crowd"
NO_TIME = 1 << 62


def reporter_hash(reporter: str) -> int:
    """Stable across processes (unlike hash()), so state can be checkpointed and restored."""
    return zlib.crc32(reporter.encode())


class Tally:
    """Reports in one pane of one key, and who filed them (bounded)."""

    __slots__ = ("_largest", "count", "first", "overflow", "reporters")

    def __init__(self) -> None:
        self.count = 0
        # event time of the pane's earliest report (a minimum: the same in any arrival order);
        # a merged partial tally carries no times, so its pane's start stands for it
        self.first = NO_TIME
        self.reporters: dict[int, int] = {}
        self.overflow = False
        self._largest = -1  # largest tracked hash, once full: most newcomers stop at one compare

    def add(self, reporter: int) -> None:
        self.count += 1
        reps = self.reporters
        have = reps.get(reporter)
        if have is not None:
            reps[reporter] = have + 1
        elif len(reps) < CAP or reporter < self._largest:
            self._track(reporter, 1)
        else:
            self.overflow = True  # a crowd; this reporter is not among the CAP smallest

    def _track(self, reporter: int, n: int) -> None:
        reps = self.reporters
        have = reps.get(reporter)
        if have is not None:
            reps[reporter] = have + n
        elif len(reps) < CAP:
            reps[reporter] = n
            if len(reps) == CAP:
                self._largest = max(reps)
        else:
            self.overflow = True
            if reporter < self._largest:
                del reps[self._largest]
                reps[reporter] = n
                self._largest = max(reps)

    def merge(self, count: int, reporters: Iterable[tuple[int, int]], overflow: bool) -> None:
        self.count += count
        for r, n in reporters:
            self._track(int(r), int(n))
        self.overflow = self.overflow or overflow

    def dump(self) -> tuple[int, list[tuple[int, int]], bool]:
        return self.count, list(self.reporters.items()), self.overflow

    @classmethod
    def load(cls, data: tuple[int, list[tuple[int, int]], bool]) -> Tally:
        t = cls()
        t.count, reps, t.overflow = data
        t.reporters = {int(r): int(n) for r, n in reps}
        if len(t.reporters) >= CAP:
            t._largest = max(t.reporters)
        return t


def window_stats(tallies: Iterable[Tally], per_reporter_cap: int) -> tuple[int, int, int]:
    """(raw count, distinct reporters, effective count) over the panes of one window.

    Effective count lets each reporter count at most ``per_reporter_cap`` times, so one
    account filing a hundred reports counts as ``per_reporter_cap``. For a crowd (overflow)
    distinct is reported as ``CAP + 1`` and only the excess of the tracked heavy reporters
    is taken off.
    """
    raw = 0
    merged: dict[int, int] = {}
    overflow = False
    for t in tallies:
        raw += t.count
        overflow = overflow or t.overflow
        for r, n in t.reporters.items():
            merged[r] = merged.get(r, 0) + n
    excess = sum(n - per_reporter_cap for n in merged.values() if n > per_reporter_cap)
    if overflow or len(merged) > CAP:
        return raw, CAP + 1, raw - excess
    return raw, len(merged), raw - excess
