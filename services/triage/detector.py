"""Keyed spike detection over event-time hopping windows. Pure: no I/O, no wall clock.

``KeyedDetector`` keeps, per key, pane tallies (one pane per hop), a learned ``Baseline`` and
the spike state. Windows are ``window_ms`` long and hop every ``hop_ms``; a window is the sum
of its panes. The detector is driven by event time only:

- ``add`` puts reports in a pane and, with ``early=True`` (per-stream keys), tests the window
  that pane ends at once, so a surge opens a spike while its window is still filling;
- ``close_through(b)`` closes every window ending at or before ``b`` (the watermark moved):
  each closed window teaches the baseline (unless the key is in a spike), feeds the
  hysteresis that ends a spike, and, with ``early=False`` (platform trends), is tested.

Opening needs all of: a minimum effective volume, a minimum number of distinct reporters,
a ratio over the baseline and a z-score (variance at least the mean, so Poisson-like). A spike
ends after ``close_after`` closed windows in a row below the close level (hysteresis).
Idle keys are evicted (their baseline handed out for persistence) so memory follows the
number of active keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from services.triage.baseline import Baseline, alpha_for_half_life
from services.triage.scoring import ScoringConfig, score_spike, severity_for
from services.triage.tally import Tally, window_stats

BaselineRow = tuple[float, float, int, int]  # mean, var, n, closed_through_ms


@dataclass(frozen=True)
class DetectorConfig:
    """Every knob of the detector (Settings maps onto it)."""

    window_s: int = 60
    hop_s: int = 10
    grace_s: int = 30
    half_life_s: float = 3 * 3600.0
    prior_weight: int = 6
    prior_mean: float = 1.0
    prior_per_kviewer: float = 0.02  # expected reports per window per 1,000 viewers
    var_floor: float = 4.0
    z_open: float = 5.0
    ratio_open: float = 3.0
    min_volume: int = 8
    min_reporters: int = 4
    per_reporter_cap: int = 2
    z_close: float = 2.0
    ratio_close: float = 1.5
    close_after: int = 3
    idle_evict_s: int = 600
    trend_min_volume: int = 40
    scoring: ScoringConfig = field(default_factory=ScoringConfig)

    def __post_init__(self) -> None:
        if self.hop_s <= 0 or self.window_s % self.hop_s:
            raise ValueError("window_s must be a positive multiple of hop_s")
        if self.grace_s < 0:
            raise ValueError("grace_s must be >= 0")

    @property
    def window_ms(self) -> int:
        return self.window_s * 1000

    @property
    def hop_ms(self) -> int:
        return self.hop_s * 1000

    @property
    def grace_ms(self) -> int:
        return self.grace_s * 1000

    @property
    def alpha(self) -> float:
        return alpha_for_half_life(self.half_life_s, self.hop_s)


class KeyState:
    """What the detector holds for one key."""

    __slots__ = ("panes", "base", "in_spike", "opened_end", "tier", "quiet", "last_ms", "viewers",
                 "samples", "peak", "born")

    def __init__(self, base: Baseline, born: int | None = None) -> None:
        # A new key's baseline learns from the first window holding its data on, however
        # early the key happened to be created: creation time depends on arrival timing,
        # and the learned baseline must not.
        self.born = born
        self.panes: dict[int, Tally] = {}
        self.base = base
        self.in_spike = False
        self.opened_end = 0
        self.tier = 4
        self.quiet = 0
        self.last_ms = 0
        self.viewers = 0
        self.samples: list[str] = []
        self.peak = 0

    def dump(self) -> list[Any]:
        return [
            [(p, t.dump()) for p, t in self.panes.items()], self.base.dump(), self.in_spike,
            self.opened_end, self.tier, self.quiet, self.last_ms, self.viewers, self.samples, self.peak,
            self.born,
        ]

    @classmethod
    def load(cls, d: list[Any]) -> KeyState:
        ks = cls(Baseline(*d[1]))
        ks.panes = {int(p): Tally.load(t) for p, t in d[0]}
        (ks.in_spike, ks.opened_end, ks.tier, ks.quiet, ks.last_ms, ks.viewers, ks.samples,
         ks.peak) = d[2:10]
        ks.born = d[10] if len(d) > 10 else None  # checkpoints from before "born" existed
        ks.samples = list(ks.samples)
        return ks


@dataclass(frozen=True, slots=True)
class Decision:
    """A spike opened, rose in severity, or ended — raw material for a Signal."""

    kind: str  # "open" | "raise" | "resolve"
    key: tuple[str, ...]
    window_end_ms: int
    opened_end_ms: int
    at_ms: int  # event time that decided it
    raw: int
    distinct: int
    effective: int
    mean: float
    z: float
    score: float
    tier: int
    factors: tuple[Any, ...]
    samples: tuple[str, ...]
    viewers: int


SAMPLES = 10


class KeyedDetector:
    """Spike detection for a set of keys sharing one event-time clock (a partition)."""

    def __init__(
        self,
        cfg: DetectorConfig,
        *,
        early: bool,
        min_volume: int,
        category_of: Callable[[tuple[str, ...]], str],
    ) -> None:
        self.cfg = cfg
        self.early = early
        self.min_volume = min_volume
        self.category_of = category_of
        self.keys: dict[tuple[str, ...], KeyState] = {}
        self.closed_through: int | None = None
        self.evicted: dict[tuple[str, ...], BaselineRow] = {}
        self._alpha = cfg.alpha

    # ---- keys ---------------------------------------------------------------------------

    def prior(self, viewers: int) -> Baseline:
        cfg = self.cfg
        mean = max(cfg.prior_mean, viewers / 1000.0 * cfg.prior_per_kviewer)
        return Baseline(mean, max(cfg.var_floor, 2.0 * mean), cfg.prior_weight)

    def missing(self, key: tuple[str, ...]) -> bool:
        """True if the key's baseline may live in the store (not in memory, not just evicted)."""
        return key not in self.keys and key not in self.evicted

    def state(self, key: tuple[str, ...], viewers: int, stored: BaselineRow | None, pane: int) -> KeyState:
        ks = self.keys.get(key)
        if ks is not None:
            if ks.born is not None and pane < ks.born:
                ks.born = pane
            return ks
        row = self.evicted.pop(key, None) or stored
        if row is not None:
            mean, var, n, closed = row
            base = Baseline(mean, var, n)
            if self.closed_through is not None and closed < self.closed_through:
                base.observe_zeros((self.closed_through - closed) // self.cfg.hop_ms, self._alpha)
            ks = self.keys[key] = KeyState(base)
        else:
            ks = self.keys[key] = KeyState(self.prior(viewers), born=pane)
        return ks

    # ---- reports ------------------------------------------------------------------------

    def add(
        self,
        key: tuple[str, ...],
        ts_ms: int,
        *,
        reporter: int | None = None,
        tally: tuple[int, list[tuple[int, int]], bool] | None = None,
        viewers: int = 0,
        report_id: str | None = None,
        stored: BaselineRow | None = None,
    ) -> Decision | None:
        """Count one report (``reporter``) or merge a partial tally into ``key``'s pane."""
        cfg = self.cfg
        pane = ts_ms - ts_ms % cfg.hop_ms
        ks = self.state(key, viewers, stored, pane)
        t = ks.panes.get(pane)
        if t is None:
            t = ks.panes[pane] = Tally()
        if tally is not None:
            t.merge(*tally)
        else:
            t.add(reporter if reporter is not None else 0)
        if ts_ms > ks.last_ms:
            ks.last_ms = ts_ms
        if viewers > ks.viewers:
            ks.viewers = viewers
        if report_id is not None:
            ks.samples.append(report_id)  # the most recent few: in a spike, the surge itself
            if len(ks.samples) > SAMPLES:
                del ks.samples[0]
        if not self.early:
            return None
        return self._test(key, ks, pane + cfg.hop_ms, ts_ms)

    def _window(self, ks: KeyState, end: int) -> tuple[int, int, int]:
        start = end - self.cfg.window_ms
        return window_stats(
            (t for p, t in ks.panes.items() if start <= p < end), self.cfg.per_reporter_cap
        )

    def _test(self, key: tuple[str, ...], ks: KeyState, end: int, at_ms: int) -> Decision | None:
        """Open (or raise) a spike if the window ending at ``end`` is unusual."""
        cfg = self.cfg
        start = end - cfg.window_ms
        raw = 0
        for p, t in ks.panes.items():
            if start <= p < end:
                raw += t.count
        if raw < self.min_volume:
            return None  # cheap exit for the common case
        base = ks.base
        if not ks.in_spike and raw < cfg.ratio_open * base.mean:
            return None
        raw, distinct, eff = self._window(ks, end)
        if ks.in_spike:
            if eff <= ks.peak:
                return None
            ks.peak = eff
            d = self._decision("raise", key, ks, end, at_ms, raw, distinct, eff)
            if d.tier >= ks.tier:
                return None
            ks.tier = d.tier
            return d
        if eff < self.min_volume or distinct < cfg.min_reporters or eff < cfg.ratio_open * base.mean:
            return None
        if base.z(eff, cfg.var_floor) < cfg.z_open:
            return None
        ks.in_spike = True
        ks.opened_end = end
        ks.quiet = 0
        ks.peak = eff
        d = self._decision("open", key, ks, end, at_ms, raw, distinct, eff)
        ks.tier = d.tier
        return d

    def _decision(
        self, kind: str, key: tuple[str, ...], ks: KeyState, end: int, at_ms: int,
        raw: int, distinct: int, eff: int,
    ) -> Decision:
        cfg = self.cfg
        scored = score_spike(
            self.category_of(key), effective=eff, baseline_mean=ks.base.mean, distinct=distinct,
            viewers=ks.viewers, cfg=cfg.scoring,
        )
        tier = severity_for(scored.score, cfg.scoring.severity_thresholds).rank
        return Decision(
            kind=kind, key=key, window_end_ms=end, opened_end_ms=ks.opened_end or end, at_ms=at_ms,
            raw=raw, distinct=distinct, effective=eff, mean=ks.base.mean,
            z=ks.base.z(eff, cfg.var_floor), score=scored.score, tier=tier, factors=scored.factors,
            samples=tuple(ks.samples), viewers=ks.viewers,
        )

    # ---- time ---------------------------------------------------------------------------

    def close_through(self, watermark_ms: int) -> Iterator[Decision]:
        """Close every window ending at or before the watermark, in order."""
        cfg = self.cfg
        hop, win = cfg.hop_ms, cfg.window_ms
        last = watermark_ms - watermark_ms % hop
        if self.closed_through is None:
            # the clock starts just before the earliest data held (a trend stage may receive
            # minutes of panes before its first watermark), or at the watermark if none
            earliest = min((min(ks.panes) for ks in self.keys.values() if ks.panes), default=None)
            if earliest is None or earliest >= last:
                self.closed_through = last
                return
            self.closed_through = earliest
        if last <= self.closed_through:
            return
        first = self.closed_through + hop
        self.closed_through = last
        evict_before = last - cfg.idle_evict_s * 1000
        for key in list(self.keys):
            ks = self.keys[key]
            b = first
            if ks.born is not None:
                b = max(b, ks.born + hop)  # windows before the key's first data are not its history
            while b <= last:
                if not ks.panes and not ks.in_spike:
                    # nothing left in any window: the rest are quiet windows
                    ks.base.observe_zeros((last - b) // hop + 1, self._alpha)
                    break
                yield from self._close_window(key, ks, b)
                # panes older than the next window's start are no longer needed
                keep_from = b + hop - win
                for p in [p for p in ks.panes if p < keep_from]:
                    del ks.panes[p]
                b += hop
            if not ks.in_spike and not ks.panes and ks.last_ms < evict_before:
                del self.keys[key]
                self.evicted[key] = (*ks.base.dump(), last)

    def _close_window(self, key: tuple[str, ...], ks: KeyState, end: int) -> Iterator[Decision]:
        cfg = self.cfg
        raw, distinct, eff = self._window(ks, end)
        if not self.early and not ks.in_spike and end > ks.opened_end:
            d = self._test(key, ks, end, end)
            if d is not None:
                yield d
                return
        if ks.in_spike:
            if end <= ks.opened_end:
                return
            base = ks.base
            level = max(self.min_volume, cfg.ratio_close * base.mean,
                        base.mean + cfg.z_close * (max(base.var, base.mean, cfg.var_floor) ** 0.5))
            if eff < level:
                ks.quiet += 1
                if ks.quiet >= cfg.close_after:
                    d = self._decision("resolve", key, ks, end, end, raw, distinct, eff)
                    ks.in_spike = False
                    ks.quiet = 0
                    ks.peak = 0
                    ks.tier = 4
                    yield d
            else:
                ks.quiet = 0
        else:
            ks.base.observe(eff, self._alpha)

    # ---- checkpoints --------------------------------------------------------------------

    def take_evicted(self) -> dict[tuple[str, ...], BaselineRow]:
        out, self.evicted = self.evicted, {}
        return out

    def dump(self) -> dict[str, Any]:
        return {
            "closed_through": self.closed_through,
            "keys": [(list(k), ks.dump()) for k, ks in self.keys.items()],
            "evicted": [(list(k), list(v)) for k, v in self.evicted.items()],
        }

    def load(self, d: dict[str, Any]) -> None:
        self.closed_through = d["closed_through"]
        self.keys = {tuple(k): KeyState.load(v) for k, v in d["keys"]}
        self.evicted = {tuple(k): tuple(v) for k, v in d["evicted"]}  # type: ignore[misc]
