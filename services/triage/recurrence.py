"""What a stream key does every day: how often its windows stand out, remembered for a day. Pure.

A key's 1 h baseline is frozen while it is in a spike, so a surge is never learned as normal;
but a key whose bursts recur (real count data: a burst every few hours, several times its
median) then calls each one new, and pages for each. ``Recurrence`` keeps, for a grid of
multiples of the baseline, the share of the key's windows that were unusual (past their 1%
tail under the 1 h baseline) *and* at least that multiple (of the baseline, or of one report
for a key whose baseline is under one: a silent key's recurring bursts are counts), as a
day-long EWMA that learns
from every window, a spike's included. The multiple the key reaches in more than a few
percent of its day is not news: the detector opens only at half as much again (``usual``).
A single real surge of ten minutes is 1% of a day, below the share, so it does not make the
next one usual; bursts that recur all day are.
"""

from __future__ import annotations

RATIOS = (2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0, 96.0, 128.0, 192.0, 256.0)


class Recurrence:
    __slots__ = ("n", "share")

    def __init__(self, n: int = 0, share: list[float] | None = None) -> None:
        self.n = n
        self.share = share if share is not None else [0.0] * len(RATIOS)

    def observe(self, ratio: float, alpha: float) -> None:
        """One window, ``ratio`` times the baseline if unusual (0 if not)."""
        a = max(alpha, 1.0 / (self.n + 1))
        share = self.share
        for i, r in enumerate(RATIOS):
            share[i] += a * ((1.0 if ratio >= r else 0.0) - share[i])
        self.n += 1

    def observe_quiet(self, m: int, alpha: float) -> None:
        """``m`` ordinary windows in a row, in closed form (running average, then EWMA)."""
        if m <= 0:
            return
        k = min(m, max(0, int(1.0 / alpha) - self.n))  # while the weight is 1 / (n + 1)
        f = self.n / (self.n + k) if k else 1.0
        m -= k
        self.n += k
        if m > 0:
            f *= (1.0 - alpha) ** m
            self.n += m
        self.share = [s * f for s in self.share]

    def usual(self, min_n: float, share: float, margin: float = 1.5) -> float:
        """``margin`` times the highest grid multiple the key reaches (while unusual) in at
        least ``share`` of its windows: the bar its next opening must pass; 0 if none, or
        until it has ``min_n`` windows (nothing is usual yet)."""
        if self.n < min_n:
            return 0.0
        top = 0.0
        for r, s in zip(RATIOS, self.share, strict=True):
            if s < share:
                break
            top = r
        return top * margin

    def dump(self) -> list[object]:
        return [self.n, list(self.share)]

    @classmethod
    def load(cls, d: list[object]) -> Recurrence:
        n, share = d
        return cls(int(n), [float(s) for s in share])  # type: ignore[arg-type, union-attr]
