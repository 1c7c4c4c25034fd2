"""What a partition's keys teach about a key they have not seen: an empirical-Bayes prior. Pure.

A key without history (a stream that just went live, or every key of a platform whose triage
just started) cannot be judged against its own baseline, and a constant prior is wrong for
nearly every key: a stream with 200,000 viewers files hundreds of reports a minute as a matter
of course, one with 50 viewers next to none. Reports come roughly in proportion to viewers,
so per category this learns, over every key's closed windows, the rate per viewer

    r = sum(x) / sum(e)            x: a window's count, e: its exposure (viewers x coverage)

and, by stratum of expected count, how far keys stray from that prediction, the
over-dispersion of the counts around it

    phi = (sum((x - r e)**2) - sum(r e)) / sum((r e)**2)

(a gamma-Poisson mixture's 1 / shape; method of moments). A key with ``v`` viewers then
expects ``r v`` reports a window with dispersion ``phi``: a gamma prior on its rate, which the
detector blends with what the key has seen (``KeyedDetector.reference``). Keys reported
without a viewer count are pooled apart (their exposure is the coverage alone: the prior is
the mean key's count). Keys with history of their own also teach how a key wobbles in time
around its own mean, the dispersion their own history is shrunk towards.

Exposure is weighted by coverage, the part of the window the partition held data for, so the
first windows after a start (which hold a few seconds of data) teach the rate, not a sixth of
it. Idle keys' quiet windows, applied in closed form rather than visited, are added in one sum
(``observe_idle``). Sums decay with the keys' half-life on event time, so the prior follows
the daily cycle.
"""

from __future__ import annotations

import math
from typing import Any

# a pool answers once it has seen this many key-windows (decayed) holding this many reports
MIN_WINDOWS = 20.0
MIN_REPORTS = 10.0
# fewer keys than this of a kind, ever, and there is no population to learn from: the detector
# falls back to its configured default prior (a test rig, a region with a handful of streams)
MIN_KEYS = 20
ALL = "*"  # the pool of every category
WOBBLE_INFO = 200.0
OUTLIER = 5.0


class Pool:
    """Decayed sums of count and exposure over ``n`` key-windows, as of window end ``at``."""

    __slots__ = ("_rate", "at", "n", "se", "sx")

    def __init__(self) -> None:
        self.sx = self.se = self.n = 0.0
        self.at = 0
        self._rate: float | None | bool = False  # False: not computed since a change

    def add(self, x: float, e: float, w: float, windows: float = 1.0) -> None:
        self._rate = False
        self.sx += w * x
        self.se += w * e
        self.n += w * windows

    def scale(self, q: float) -> None:
        self._rate = False
        self.sx *= q
        self.se *= q
        self.n *= q

    def rate(self) -> float | None:
        """Reports per unit of exposure, or None while too little is known."""
        if self._rate is False:
            known = self.n >= MIN_WINDOWS and self.sx >= MIN_REPORTS and self.se > 0
            self._rate = self.sx / self.se if known else None
        return self._rate

    def dump(self) -> list[float]:
        return [self.sx, self.se, self.n, self.at]

    @classmethod
    def load(cls, d: list[float]) -> Pool:
        p = cls()
        p.sx, p.se, p.n = (float(v) for v in d[:3])
        p.at = int(d[3])
        return p


def _bucket(m: float) -> int:
    """The dispersion stratum of an expected count: one per doubling, 1/64 .. 4096."""
    if m <= 0:
        return -6
    b = math.frexp(m)[1] - 1
    return 12 if b > 12 else (-6 if b < -6 else b)


class Dispersion:
    """Decayed sums for the over-dispersion of counts around their prediction, in one stratum
    of expected count: sum((x - m)**2 - m) / sum(m**2)."""

    __slots__ = ("at", "excess", "mm", "n")

    def __init__(self) -> None:
        self.excess = self.mm = self.n = 0.0
        self.at = 0

    def scale(self, q: float) -> None:
        self.excess *= q
        self.mm *= q
        self.n *= q

    def dump(self) -> list[float]:
        return [self.excess, self.mm, self.n, self.at]

    @classmethod
    def load(cls, d: list[float]) -> Dispersion:
        acc = cls()
        acc.excess, acc.mm, acc.n = (float(v) for v in d[:3])
        acc.at = int(d[3])
        return acc

    def estimate(self, min_info: float = 0.0) -> float | None:
        """The over-dispersion, or None while fewer than MIN_WINDOWS windows or less than
        ``min_info`` of sum(m**2) (what a window of mean m says about it) were seen."""
        if self.n < MIN_WINDOWS or self.mm <= min_info or self.mm <= 0:
            return None
        return max(0.0, self.excess / self.mm)


class Population:
    """Per (category, has a viewer count): the rate pools of one partition's keys; per (has a
    viewer count, stratum of expected count): the over-dispersion around that rate. Strata,
    because heterogeneity is not the same at every scale (as DESeq2 fits a dispersion-mean
    trend): a busy key's count is dominated by how its audience differs, a quiet one's by
    chance, and one number fitted by moments would be the busiest keys' alone."""

    def __init__(self, alpha: float, hop_ms: int) -> None:
        self.pools: dict[tuple[str, bool], Pool] = {}
        self.disp: dict[tuple[bool, int], Dispersion] = {}
        # over-dispersion of keys with history of their own around their own mean (how a
        # key's count wobbles in time, not how keys differ), by stratum of that mean
        self.wobble: dict[int, Dispersion] = {}
        self.keys: dict[bool, int] = {}  # keys ever created (of any category), per has-viewers
        self._keep = 1.0 - alpha
        self._hop = hop_ms
        self._decay: dict[int, float] = {}  # hops -> (1 - alpha)**hops

    def _q(self, hops: int) -> float:
        q = self._decay.get(hops)
        if q is None:
            q = self._decay[hops] = self._keep ** hops
        return q

    def new_key(self, viewers: int) -> None:
        has_v = viewers > 0
        self.keys[has_v] = self.keys.get(has_v, 0) + 1

    def is_small(self, viewers: int) -> bool:
        """Too few keys were ever seen (of any category) for a population to speak of."""
        return self.keys.get(viewers > 0, 0) < MIN_KEYS

    def observe(self, category: str, x: float, viewers: int, coverage: float, end_ms: int,
                own_mean: float | None = None) -> None:
        """One closed window of a key not in a spike: ``x`` reports, ``coverage`` (0..1] of
        the window held data, and the key's own learned mean if it has history enough."""
        if own_mean is not None and own_mean >= 1.0:
            # (only keys busy enough to be visited at every window: a quiet key is seen only
            # while it has recent data, a sample that would read as a wide wobble)
            self._add_disp(self.wobble, _bucket(own_mean), x, own_mean, end_ms)
        has_v = viewers > 0
        e = (viewers or 1) * coverage
        pool = self.pools.get((category, has_v))
        rate = pool.rate() if pool is not None else None
        if rate is not None:
            # winsorised at OUTLIER x its prediction: a key in a surge that has not opened yet
            # (the very thing the prior is for) must not teach the population that surges
            # are normal; one stream mass-reported was half a category's reports in the demo
            x = min(x, OUTLIER * (rate * e) + OUTLIER)
        # every category's pool, and the pool of all of them (for a category too rare yet)
        everyone = self.pools.get((ALL, has_v))
        if everyone is None:
            everyone = self.pools[(ALL, has_v)] = Pool()
            everyone.at = end_ms
        # (inline: the keys closing one window share its end, so the weight is mostly 1)
        everyone.add(x, e, 1.0 if everyone.at == end_ms else self._weight(everyone, end_ms))
        pk = (category, has_v)
        if pool is None:
            pool = self.pools[pk] = Pool()
            pool.at = end_ms
        w = 1.0 if pool.at == end_ms else self._weight(pool, end_ms)
        if rate is not None:  # the prediction before this window: its error is honest
            m = rate * e
            self._add_disp(self.disp, (has_v, _bucket(m / coverage)), x, m, end_ms)
        pool.add(x, e, w)

    def observe_idle(self, category: str, has_v: bool, exposure: float, windows: float, end_ms: int) -> None:
        """Quiet windows of idle keys: ``windows`` key-windows of no reports, ``exposure`` in all."""
        for pk in ((ALL, has_v), (category, has_v)):
            pool = self.pools.get(pk)
            if pool is None:
                pool = self.pools[pk] = Pool()
                pool.at = end_ms
            pool.add(0.0, exposure, self._weight(pool, end_ms), windows)

    def _add_disp(self, table: dict[Any, Dispersion], dk: Any, x: float, m: float, end_ms: int) -> None:
        d = table.get(dk)
        if d is None:
            d = table[dk] = Dispersion()
            d.at = end_ms
        wd = 1.0 if d.at == end_ms else self._weight(d, end_ms)
        dx = x - m
        d.excess += wd * (dx * dx - m)
        d.mm += wd * m * m
        d.n += wd

    def wobble_of(self, mean: float) -> float | None:
        """How much a key with this own mean wobbles in time (over-dispersion), or None."""
        # a quiet key's windows say little about a dispersion (its count is mostly Poisson
        # noise, amplified by 1 / m**2): a stratum answers once its sum of m**2 is WOBBLE_INFO,
        # else the next busier one that does
        b = max(0, _bucket(mean))  # quiet keys: as the quietest strata measured (mean >= 1)
        for off in range(13 - b):  # up to the busiest stratum
            d = self.wobble.get(b + off)
            phi = d.estimate(WOBBLE_INFO) if d is not None else None
            if phi is not None:
                return phi
        return None

    def _weight(self, acc: Pool | Dispersion, end_ms: int) -> float:
        """Decay ``acc`` to ``end_ms`` if that is later; the weight of an observation there."""
        if end_ms > acc.at:
            acc.scale(self._q((end_ms - acc.at) // self._hop))
            acc.at = end_ms
            return 1.0
        return self._q((acc.at - end_ms) // self._hop)

    def prior(self, category: str, viewers: int) -> tuple[float, float] | None:
        """(expected count of a window, over-dispersion) for a key of this category and
        viewer count, or None while the population has not seen enough."""
        has_v = viewers > 0
        pool = self.pools.get((category, has_v))
        r = pool.rate() if pool is not None else None
        if r is None:
            # a category too rare to have taught anything yet: the rate of all categories
            # together, which no one category's exceeds (a prior that errs towards quiet)
            pool = self.pools.get((ALL, has_v))
            r = pool.rate() if pool is not None else None
            if r is None:
                return None
        mu = r * (viewers or 1)
        # the stratum's dispersion; while it knows too little, the nearest one that knows enough
        b = _bucket(mu)
        for off in (0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6):
            d = self.disp.get((has_v, b + off))
            phi = d.estimate() if d is not None else None
            if phi is not None:
                return mu, phi
        return None

    def dump(self) -> dict[str, Any]:
        return {
            "keys": [[v, n] for v, n in self.keys.items()],
            "pools": [[c, v, p.dump()] for (c, v), p in self.pools.items()],
            "disp": [[v, b, d.dump()] for (v, b), d in self.disp.items()],
            "wobble": [[b, d.dump()] for b, d in self.wobble.items()],
        }

    def load(self, d: dict[str, Any]) -> None:
        self.pools = {(c, bool(v)): Pool.load(p) for c, v, p in d.get("pools", [])}
        self.keys = {bool(v): int(n) for v, n in d.get("keys", [])}
        self.disp = {(bool(v), int(b)): Dispersion.load(x) for v, b, x in d.get("disp", [])}
        self.wobble = {int(b): Dispersion.load(x) for b, x in d.get("wobble", [])}
