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
from services.triage.scoring import ScoringConfig, SpikeScore, best_spike_score, severity_for, spike_score
from services.triage.tally import Tally, window_stats

BaselineRow = tuple[float, float, int, int]  # mean, var, n, closed_through_ms


@dataclass(frozen=True)
class DetectorConfig:
    """Every knob of the detector (Settings maps onto it)."""

    window_s: int = 60
    hop_s: int = 10
    grace_s: int = 30
    half_life_s: float = 3600.0
    prior_weight: int = 6
    prior_mean: float = 1.0
    prior_per_kviewer: float = 0.02  # expected reports per window per 1,000 viewers
    var_floor: float = 2.0
    z_open: float = 7.5
    ratio_open: float = 2.5
    min_volume: int = 6
    min_reporters: int = 5
    per_reporter_cap: int = 1
    z_close: float = 2.0
    ratio_close: float = 1.5
    close_after: int = 6
    learn_clip_z: float = 4.5  # windows above mean + 4.5 sd teach the baseline only that much
    idle_evict_s: int = 600
    warmup_windows: int = 6  # a new key needs this many windows of history ...
    new_key_min_volume: int = 40  # ... or this many effective reports to open a spike
    trend_min_volume: int = 40
    # platform-wide counts are large and smooth: a lower bar, tested only on closed windows
    trend_z_open: float = 5.0
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
                 "samples", "peak", "born", "wend", "wraw", "next_raw", "next_end")

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
        # a cache, not checkpointed: raw count of the window ending at ``wend``
        self.wend = 0
        self.wraw = 0
        # checkpointed (decisions depend on them): the raw count of the window ending at
        # ``next_end`` worth testing again at (in a spike: worth re-scoring at)
        self.next_raw = 0
        self.next_end = 0

    def dump(self) -> list[Any]:
        return [
            [(p, t.dump()) for p, t in self.panes.items()], self.base.dump(), self.in_spike,
            self.opened_end, self.tier, self.quiet, self.last_ms, self.viewers, self.samples, self.peak,
            self.born, self.next_raw, self.next_end,
        ]

    @classmethod
    def load(cls, d: list[Any]) -> KeyState:
        ks = cls(Baseline(*d[1]))
        ks.panes = {int(p): Tally.load(t) for p, t in d[0]}
        (ks.in_spike, ks.opened_end, ks.tier, ks.quiet, ks.last_ms, ks.viewers, ks.samples,
         ks.peak) = d[2:10]
        ks.born = d[10] if len(d) > 10 else None  # checkpoints from before "born" existed
        if len(d) > 12:
            ks.next_raw, ks.next_end = d[11], d[12]
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
    components: SpikeScore
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
        z_open: float | None = None,
    ) -> None:
        self.cfg = cfg
        self.early = early
        self.min_volume = min_volume
        self.z_open = cfg.z_open if z_open is None else z_open
        self.category_of = category_of
        self.keys: dict[tuple[str, ...], KeyState] = {}
        self.closed_through: int | None = None
        self.evicted: dict[tuple[str, ...], BaselineRow] = {}
        self._alpha = cfg.alpha
        self._hop = cfg.hop_ms  # plain attributes: this is read for every report
        self._window_ms = cfg.window_ms

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
        hop = self._hop
        pane = ts_ms - ts_ms % hop
        ks = self.keys.get(key)
        if ks is None or (ks.born is not None and pane < ks.born):
            ks = self.state(key, viewers, stored, pane)
        t = ks.panes.get(pane)
        if t is None:
            t = ks.panes[pane] = Tally()
        if tally is not None:
            t.merge(*tally)
            added = tally[0]
        else:
            t.add(reporter if reporter is not None else 0)
            added = 1
        end = pane + hop
        if ks.wend == end:
            ks.wraw += added
        else:
            ks.wend = 0  # recomputed by _test when needed
        if ts_ms > ks.last_ms:
            ks.last_ms = ts_ms
        if viewers > ks.viewers:
            ks.viewers = viewers
        if report_id is not None:
            samples = ks.samples  # the most recent few: in a spike, the surge itself
            samples.append(report_id)
            if len(samples) >= 2 * SAMPLES:
                del samples[:SAMPLES]  # amortised: readers take the last SAMPLES
        if not self.early:
            return None
        return self._test(key, ks, end, ts_ms)

    def _window(self, ks: KeyState, end: int) -> tuple[int, int, int]:
        start = end - self.cfg.window_ms
        return window_stats(
            (t for p, t in ks.panes.items() if start <= p < end), self.cfg.per_reporter_cap
        )

    def _raw(self, ks: KeyState, end: int) -> int:
        if ks.wend != end:
            start = end - self._window_ms
            ks.wraw = sum(t.count for p, t in ks.panes.items() if start <= p < end)
            ks.wend = end
        return ks.wraw

    def _test(self, key: tuple[str, ...], ks: KeyState, end: int, at_ms: int) -> Decision | None:
        """Open (or raise) a spike if the window ending at ``end`` is unusual."""
        cfg = self.cfg
        raw = self._raw(ks, end)
        if raw < self.min_volume:
            return None  # cheap exits first: this runs for every report
        base = ks.base
        if ks.in_spike:
            return self._raise(key, ks, end, at_ms, raw)
        if raw < cfg.ratio_open * base.mean or (ks.wend == ks.next_end and raw < ks.next_raw):
            return None
        new_key = ks.born is not None and base.n < cfg.prior_weight + cfg.warmup_windows
        if new_key and raw < cfg.new_key_min_volume:
            return None
        raw, distinct, eff = self._window(ks, end)
        if (
            eff < self.min_volume
            or distinct < cfg.min_reporters
            or eff < cfg.ratio_open * base.mean
            or (new_key and eff < cfg.new_key_min_volume)
            or base.z(eff, cfg.var_floor) < self.z_open
        ):
            # a busy window that is not a spike: look again once it has grown by a tenth
            ks.next_end = end
            ks.next_raw = raw + max(1, raw // 10)
            return None
        ks.in_spike = True
        ks.opened_end = end
        ks.quiet = 0
        ks.peak = eff
        ks.next_raw = raw + max(1, raw // 4)
        d = self._decision("open", key, ks, end, at_ms, raw, distinct, eff)
        ks.tier = d.tier
        return d

    def _raise(self, key: tuple[str, ...], ks: KeyState, end: int, at_ms: int, raw: int) -> Decision | None:
        """In a spike: re-score when the window has grown by a quarter, and signal only a
        higher severity. Re-scoring every report would cost more than all else together."""
        if raw < ks.next_raw:
            return None
        ks.next_raw = raw + max(1, raw // 4)
        cfg = self.cfg
        best = best_spike_score(self.category_of(key), ks.viewers, cfg.scoring)
        if severity_for(best, cfg.scoring.severity_thresholds).rank >= ks.tier:
            return None  # no window on this key can reach a higher severity
        raw, distinct, eff = self._window(ks, end)
        if eff <= ks.peak:
            return None
        ks.peak = eff
        d = self._decision("raise", key, ks, end, at_ms, raw, distinct, eff)
        if d.tier >= ks.tier:
            return None
        ks.tier = d.tier
        return d

    def _decision(
        self, kind: str, key: tuple[str, ...], ks: KeyState, end: int, at_ms: int,
        raw: int, distinct: int, eff: int,
    ) -> Decision:
        cfg = self.cfg
        sp = spike_score(
            self.category_of(key), effective=eff, baseline_mean=ks.base.mean, distinct=distinct,
            viewers=ks.viewers, cfg=cfg.scoring,
        )
        tier = severity_for(sp.score, cfg.scoring.severity_thresholds).rank
        return Decision(
            kind=kind, key=key, window_end_ms=end, opened_end_ms=ks.opened_end or end, at_ms=at_ms,
            raw=raw, distinct=distinct, effective=eff, mean=ks.base.mean,
            z=ks.base.z(eff, cfg.var_floor), score=sp.score, tier=tier, components=sp,
            samples=tuple(ks.samples[-SAMPLES:]), viewers=ks.viewers,
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
                    ks.next_raw = ks.next_end = 0
                    yield d
            else:
                ks.quiet = 0
        else:
            # learn from the window clipped at mean + learn_clip_z sd: a surge building
            # below the open bar must not inflate the variance and so raise its own bar
            base = ks.base
            cap = base.mean + cfg.learn_clip_z * max(base.var, base.mean, cfg.var_floor) ** 0.5
            base.observe(eff if eff <= cap else cap, self._alpha)

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
