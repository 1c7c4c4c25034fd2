"""Keyed spike detection over event-time hopping windows. Pure: no I/O, no wall clock.

``KeyedDetector`` keeps, per key, pane tallies (one pane per hop), a learned ``Baseline`` and
the spike state. Windows are ``window_ms`` long and hop every ``hop_ms``; a window is the sum
of its panes. The detector is driven by event time only:

- ``add`` puts reports in a pane and, with ``early=True`` (per-stream keys), tests the windows
  that pane ends at once, so a surge opens a spike while its window is still filling. Besides
  ``window_s`` it scans ``scan_windows_s`` (default 20 s, for busy keys to open within a hop
  or two, and 120 s and 300 s, for quiet keys whose minute holds too few reports to be
  significant);
  a per-key gate, cached per pane, keeps this to one comparison for most reports;
- ``close_through(b)`` closes every window ending at or before ``b`` (the watermark moved):
  each closed window teaches the baseline (unless the key is in a spike), feeds the
  hysteresis that ends a spike, and, with ``early=False`` (platform trends), is tested.

Opening needs all of: a minimum effective volume, a minimum number of distinct reporters,
a ratio over the baseline (scaled to the window's length) and significance. Per-stream
(early) keys use a count tail test: P(count >= observed) <= 10**-open_log10_p, split over the
window lengths (the long ones, for quiet keys, get most of the false-alarm budget), under a
negative binomial with the mean and over-dispersion of the key's reference (``reference``:
its own history blended with its population's empirical-Bayes prior, see population.py;
Poisson without over-dispersion), right for the handful of reports a quiet key sees, where a
normal z-score is far too strict. Trends (large, smooth counts) keep the z-score
(variance at least the mean, so Poisson-like). After a spike ends, windows reaching back into
it are not tested (``clear_from``), so the long window does not re-open on its tail. A spike
ends after ``close_after`` closed windows in a row below the close level (hysteresis).
Idle keys are evicted (their baseline handed out for persistence) so memory follows the
number of active keys.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from services.triage.baseline import Baseline, alpha_for_half_life, log10_sf, tail_threshold
from services.triage.population import Population
from services.triage.ramp import Ramp
from services.triage.recurrence import Recurrence
from services.triage.scoring import (
    ScoringConfig,
    SpikeScore,
    best_spike_score,
    severity_for,
    spike_score,
)
from services.triage.tally import Tally, window_stats

# mean, var, n, closed_through_ms, the recurrence memory's dump (None: none)
BaselineRow = tuple[float, float, int, int, list[Any] | None]


@dataclass(frozen=True)
class DetectorConfig:
    """Every knob of the detector (Settings maps onto it)."""

    window_s: int = 60
    hop_s: int = 10
    grace_s: int = 30
    half_life_s: float = 3600.0
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
    learn_clip_log10_p: float = 2.0  # ... and (stream keys) above their 1% tail count
    idle_evict_s: int = 600
    # a stream key with fewer than this many full windows of its own is young: it is judged
    # against the population's prior (see population.py) blended with what it has seen, at a
    # bound this much stricter, and cannot open at all while the population knows too little
    young_windows: int = 180
    young_extra_log10_p: float = 2.0
    # ... and with an over-dispersion of at least this, falling to 0 as its own windows reach
    # young_windows: in a platform's first minutes the population's spread is measured on the
    # keys that just reported (a zero-truncated sample, too narrow), and a heavy-tailed key
    # looks Poisson for its first few windows
    young_min_dispersion: float = 1.0
    # where no population stands behind a young key (fewer than population.MIN_KEYS of its
    # kind were ever seen), its prior is this many reports a window per 1,000 viewers (at
    # least fallback_mean), with this over-dispersion (a guess, so a wide one)
    fallback_per_kviewer: float = 0.02
    fallback_mean: float = 1.0
    fallback_dispersion: float = 2.0
    # the over-dispersion a key is tested with is shrunk towards its population's, as if the
    # population's were this many independent windows of the key's own (as edgeR and DESeq2
    # shrink negative-binomial dispersions): a few minutes of history say little about a tail
    dispersion_prior_windows: float = 10.0
    # a platform-wide trend key opens only after this much history of its own: no population
    # stands behind it (there is one key per category and region)
    trend_history_s: int = 1800
    trend_min_volume: int = 40
    # platform-wide counts are large and smooth: a lower bar, tested only on closed windows
    trend_z_open: float = 5.0
    # per-stream (early) test: besides window_s, these window lengths are tested too, each
    # against the baseline mean scaled to its length (short: busy keys open within a hop or
    # two; long: quiet keys gather enough reports to be significant)
    scan_windows_s: tuple[int, ...] = (20, 120, 300)
    # ... each with a count tail test (negative binomial from the learned mean and variance,
    # Poisson when not over-dispersed): P(count >= observed) <= p_w, the window's share of a
    # false-alarm rate of 10**-open_log10_p per window_s (z_open then applies to trends
    # only). A w-second window tested every hop makes about 1/w independent tests a second,
    # so it spends p_w / w of that rate; the rate is shared in proportion to
    # w**(budget_exponent - 1). At 2 the long windows get most of it: quiet keys, which only
    # a long window can catch, gain; busy keys lose little (their counts are far past the
    # bar once a surge is real) and open a few seconds later
    open_log10_p: float = 5.4
    budget_exponent: float = 2.0
    # the tail test's over-dispersion (var - mean) / mean**2, learned (and shrunk, above), is at
    # most this; real count series measure 0.2..2 between 5-minute buckets
    max_dispersion: float = 16.0
    # bursts that recur (recurrence.py): once a stream key has had recur_episodes episodes
    # of unusual windows within recur_horizon_s (0: off), it opens only past recur_margin
    # times the recur_episodes-th highest of their peaks, on a minute's evidence or more
    recur_horizon_s: int = 86_400
    recur_episodes: int = 3
    recur_margin: float = 1.25
    # ... an episode being a run of windows of min_volume or more, ratio_open times the baseline and past
    # its 10**-recur_log10_p tail (noise alone makes one about every 10**recur_log10_p windows:
    # at 4, a day of a correct model's noise holds about one, three are a pattern)
    recur_log10_p: float = 4.0
    # slow ramps (ramp.py): once a minute, a stream key with ramp_history_s of history is asked
    # whether its last ramp_window_s (0: off) holds ratio_open times what a baseline with a
    # half-life of ramp_half_life_s expects, past its 10**-ramp_log10_p tail, with
    # min_reporters distinct reporters in its longest scanned window; such a spike ends
    # against that slow baseline, not the 1 h one (which has learned the ramp)
    ramp_window_s: int = 1800
    ramp_half_life_s: float = 21_600.0
    # a stream key's over-dispersion is at least what its slow baseline (ramp_half_life_s)
    # measures, once that has ramp_history_s of history
    slow_dispersion: bool = False
    ramp_history_s: int = 7200
    ramp_log10_p: float = 7.0
    # an open spike's closed windows go to the notifier (its chart, its "last seen") at most
    # once per this many seconds, sooner when the window's count crosses a power of two; each
    # carries every pane since the last one, so the chart misses nothing (9 in 10 signals
    # in a storm were these, one per hop)
    progress_every_s: int = 60
    scoring: ScoringConfig = field(default_factory=ScoringConfig)

    def __post_init__(self) -> None:
        if self.hop_s <= 0 or self.window_s % self.hop_s:
            raise ValueError("window_s must be a positive multiple of hop_s")
        if any(w <= 0 or w % self.hop_s for w in self.scan_windows_s):
            raise ValueError("scan_windows_s must be positive multiples of hop_s")
        if self.open_log10_p <= 0:
            raise ValueError("open_log10_p must be > 0")
        if self.grace_s < 0:
            raise ValueError("grace_s must be >= 0")
        if self.recur_horizon_s < 0 or self.recur_episodes < 1 or self.recur_margin < 1:
            raise ValueError("recur_horizon_s must be >= 0, recur_episodes >= 1, recur_margin >= 1")
        if self.ramp_window_s < 0 or self.ramp_window_s % self.window_s or self.ramp_half_life_s <= 0:
            raise ValueError("ramp_window_s must be a multiple of window_s (0: off), ramp_half_life_s > 0")
        if self.max_dispersion < 0 or self.dispersion_prior_windows < 0:
            raise ValueError("max_dispersion and dispersion_prior_windows must be >= 0")

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

    @property
    def early_windows_s(self) -> tuple[int, ...]:
        """Window lengths the per-stream test scans, shortest first."""
        return tuple(sorted({self.window_s, *self.scan_windows_s}))

    def log10_p_for(self, window_s: int) -> float:
        """The tail bound (-log10 p) a window length is tested at: its share of the budget.
        A w-second window is tested about once per w seconds of independent data, so its
        share of the false-alarm rate is p_w / w; that rate, p / window_s in all, is split
        over the lengths in proportion to w**(budget_exponent - 1)."""
        e = self.budget_exponent - 1.0
        share = window_s**e / sum(w**e for w in self.early_windows_s)
        return self.open_log10_p - math.log10(share * window_s / self.window_s)


class KeyState:
    """What the detector holds for one key."""

    __slots__ = (
        "base",
        "blocked",
        "born",
        "cend",
        "clear_from",
        "cleave",
        "cstats",
        "gcur",
        "gend",
        "gfull",
        "gneed",
        "gpre",
        "gprior",
        "gscales",
        "in_spike",
        "last_ms",
        "long",
        "newest",
        "next_end",
        "next_raw",
        "opened_end",
        "panes",
        "pbucket",
        "peak",
        "pend",
        "quiet",
        "ramp",
        "recur",
        "samples",
        "surge",
        "tier",
        "viewers",
        "wend",
        "wraw",
        "zfrom",
    )

    def __init__(self, base: Baseline, born: int | None = None) -> None:
        # A new key's baseline learns from the first window holding its data on, however
        # early the key happened to be created: creation time depends on arrival timing,
        # and the learned baseline must not.
        self.born = born
        self.panes: dict[int, Tally] = {}
        # a cache, not checkpointed: the newest pane ever added (max(panes) while any is held:
        # panes only leave from the oldest end)
        self.newest = -(1 << 62)
        self.base = base
        # checkpointed, and saved with the evicted baseline: the day-long memory (recurrence.py)
        self.recur = Recurrence()
        # checkpointed (not saved with an evicted baseline: a key idle for minutes starts its
        # long view again): the slow baseline and recent whole windows (ramp.py), and whether
        # the spike was opened by them (it then ends against the slow baseline)
        self.ramp = Ramp()
        self.long = False
        self.in_spike = False
        self.opened_end = 0
        self.tier = 4
        self.quiet = 0
        self.last_ms = 0
        self.viewers = 0
        self.samples: list[str] = []
        self.peak = 0
        # a cache, not checkpointed: (raw, distinct, effective) of the window closed at ``cend``
        self.cend = 0
        self.cstats = (0, 0, 0)
        self.cleave = False  # ... and whether its oldest pane held data
        # a cache, not checkpointed: raw count of the window ending at ``wend``
        self.wend = 0
        self.wraw = 0
        # checkpointed (decisions depend on them): the raw count of the window ending at
        # ``next_end`` worth testing again at (in a spike: worth re-scoring at)
        self.next_raw = 0
        self.next_end = 0
        # checkpointed: after a spike ends, windows reaching back before the quiet stretch that
        # ended it (into the surge) are not tested, so a long window does not re-open on it
        self.clear_from = 0
        # checkpointed: the window end of the spike's last progress decision, and the power of
        # two its count was in (progress goes out when that changes, or once a minute)
        self.pend = 0
        self.pbucket = 0
        # checkpointed: an idle key (no panes, no spike) is not visited as windows close; its
        # quiet windows from ``zfrom`` on are owed (0: none), applied when it is next needed
        self.zfrom = 0
        # checkpointed: a young key's test was skipped for want of a population; it is tested
        # again as windows close (its surge may be over before the population has learned)
        self.blocked = False
        # checkpointed: event time of the first report of the spike's surge (set as it opens)
        self.surge = 0
        # a cache, not checkpointed (early test): for the pane ending at ``gend``, its count
        # ``gcur``, the count of the window_s window before it ``gprior``, and ``gneed``, the
        # least ``gcur`` at which a test could pass (recomputed when the baseline moves)
        self.gend = 0
        self.gcur = 0
        self.gneed = 0
        self.gprior = 0
        self.gscales: tuple[tuple[int, int, int], ...] = ()  # (window ms, count before, threshold)
        self.gfull = False  # gneed is exact (else only a lower bound, from the volume floor)
        self.gpre = 0  # that lower bound

    def dump(self) -> list[Any]:
        return [
            [(p, t.dump(), t.first) for p, t in self.panes.items()], self.base.dump(), self.in_spike,
            self.opened_end, self.tier, self.quiet, self.last_ms, self.viewers, self.samples, self.peak,
            self.born, self.next_raw, self.next_end, self.clear_from, self.pend, self.pbucket,
            self.zfrom, self.blocked, self.surge, self.recur.dump(), self.ramp.dump(), self.long,
        ]

    @classmethod
    def load(cls, d: list[Any]) -> KeyState:
        ks = cls(Baseline(*d[1]))
        ks.panes = {}
        for held in d[0]:
            t = ks.panes[int(held[0])] = Tally.load(held[1])
            t.first = int(held[2]) if len(held) > 2 else int(held[0])  # older: the pane's start
        if ks.panes:
            ks.newest = max(ks.panes)
        (ks.in_spike, ks.opened_end, ks.tier, ks.quiet, ks.last_ms, ks.viewers, ks.samples,
         ks.peak) = d[2:10]
        ks.born = d[10] if len(d) > 10 else None  # checkpoints from before "born" existed
        if len(d) > 12:
            ks.next_raw, ks.next_end = d[11], d[12]
        if len(d) > 13:
            ks.clear_from = d[13]
        if len(d) > 15:
            ks.pend, ks.pbucket = d[14], d[15]
        if len(d) > 16:
            ks.zfrom = d[16]
        if len(d) > 17:
            ks.blocked = bool(d[17])
        if len(d) > 18:
            ks.surge = int(d[18])
        if len(d) > 19:
            ks.recur = Recurrence.load(d[19])
        if len(d) > 21:
            ks.ramp = Ramp.load(d[20])
            ks.long = bool(d[21])
        ks.samples = list(ks.samples)
        return ks


def _evicted_row(ks: KeyState, closed_through: int) -> BaselineRow:
    """What an evicted key leaves for the store: its baseline and its burst memory."""
    return (*ks.base.dump(), closed_through, ks.recur.dump() if ks.recur else None)


@dataclass(frozen=True, slots=True)
class Decision:
    """A spike opened, rose in severity, or ended — raw material for a Signal."""

    kind: str  # "open" | "raise" | "progress" | "resolve"
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
    # for the incident's chart: (pane start ms, reports) and the window count that opens a spike
    rate: tuple[tuple[int, int], ...] = ()
    upper: float = 0.0
    started_ms: int = 0  # event time of the surge's first report


SAMPLES = 10
# how often (event time) idle keys are checked for eviction; they are not visited per window
SWEEP_MS = 60_000


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
        min_history: int = 0,
    ) -> None:
        self.cfg = cfg
        self.early = early
        self.min_volume = min_volume
        self.z_open = cfg.z_open if z_open is None else z_open
        self.category_of = category_of
        # windows of its own a key needs before it may open at all (trends: no population)
        self.min_history = min_history
        self.population = Population(cfg.alpha, cfg.hop_ms)
        self._fell_back = False
        self.start: int | None = None  # the partition's first pane: windows before it held no data
        self.keys: dict[tuple[str, ...], KeyState] = {}
        self.closed_through: int | None = None
        self.evicted: dict[tuple[str, ...], BaselineRow] = {}
        # keys with nothing in any window and no spike: skipped as windows close (a backlog
        # closes hours of windows, and walking every idle key at every hop was most of its
        # time), their quiet windows applied at once when they are next needed
        self.idle: dict[tuple[str, ...], KeyState] = {}
        # per (category, has a viewer count): the exposure and number of the idle keys
        self._idle_exp: dict[tuple[str, bool], list[float]] = {}
        self._swept = 0
        self._alpha = cfg.alpha
        self._recur_on = early and cfg.recur_horizon_s > 0
        self._recur_ms = cfg.recur_horizon_s * 1000
        self._ramp_on = early and cfg.ramp_window_s > 0
        self._ramp_ms = cfg.ramp_window_s * 1000
        self._ramp_alpha = alpha_for_half_life(cfg.ramp_half_life_s, cfg.hop_s)
        self._ramp_n = cfg.ramp_history_s // cfg.hop_s
        self._slow_disp = self._ramp_on and cfg.slow_dispersion
        self._ramp_k = cfg.ramp_window_s / cfg.window_s  # window_s windows in the ramp window
        self._hop = cfg.hop_ms  # plain attributes: this is read for every report
        self._window_ms = cfg.window_ms
        # early test: (window ms, its length in window_s units, tail bound) per window length
        self._scales = tuple(
            (w * 1000, w / cfg.window_s, cfg.log10_p_for(w)) for w in cfg.early_windows_s
        ) if early else ()
        self._keep_ms = max(cfg.window_ms, *(w for w, _, _ in self._scales)) if early else cfg.window_ms
        self._open_lp = cfg.log10_p_for(cfg.window_s)  # the window_s bound, for the chart's band
        # the trend test's z bound as a tail probability (normal), for the spike's evidence
        self._z_lp = -math.log10(0.5 * math.erfc(self.z_open / math.sqrt(2.0)))
        self._window_hops = cfg.window_s // cfg.hop_s
        # the learning clip's z cap is never below this above the mean (the variance floor)
        self._clip_at_floor = cfg.learn_clip_z * cfg.var_floor ** 0.5
        # the EWMA's memory in windows: past it, n says nothing more about the baseline's weight
        self._n_cap = 1.0 / self._alpha

    # ---- keys ---------------------------------------------------------------------------

    def reference(self, key: tuple[str, ...], ks: KeyState) -> Baseline | None:
        """The baseline a key is judged against. Trends: their own. Stream keys: their own
        blended with the population's prior (population.py) by credibility, the prior counting
        as 1 / (phi mu) + 1 windows (a busy stream's own minutes soon outweigh it, a quiet one
        leans on it for an hour), and its over-dispersion
        shrunk towards the population's. None for a young key while the population knows too
        little to say what it should expect: such a key does not open."""
        base = ks.base
        if not self.early:
            return base
        cfg = self.cfg
        population = self.population
        category = self.category_of(key)
        pop = population.prior(category, ks.viewers)
        if pop is None:
            if base.n >= cfg.young_windows:
                return base
            if not population.is_small(ks.viewers):
                return None  # a population is there: wait the few seconds it takes to learn
            self._fell_back = True  # only while the partition has seen few keys: not cached
            pop = (max(cfg.fallback_mean, ks.viewers / 1000.0 * cfg.fallback_per_kviewer),
                   cfg.fallback_dispersion)
        mu0, phi0 = pop
        wh = self._window_hops
        n = min(float(base.n), self._n_cap)
        # Buhlmann credibility: the prior is worth (process variance) / (variance of the keys'
        # means) = (mu + phi_t mu**2) / (phi0 mu**2) windows, the key's own wobble phi_t taken
        # as the population's (it is in phi0): 1 / (phi0 mu) + 1 windows, window_s / hop hops each
        k0 = min(self._n_cap, wh * (1.0 / max(phi0 * mu0, 1e-9) + 1.0))
        mean = (k0 * mu0 + n * base.mean) / (k0 + n)
        # the key's own over-dispersion (not the blend's variance: a prior mean off by a
        # little would read as a wide spread on a quiet key), shrunk towards the population's
        own = base.mean
        phi_own = max(0.0, base.var - own) / (own * own) if own > 0 else phi0
        if self._slow_disp:
            # heavy-tailed noise: an hour's windows mostly miss the rare big wobble, so the
            # hour's estimate is usually low; the slow baseline has seen six times as many
            slow = ks.ramp.base
            sm = slow.mean
            if slow.n >= self._ramp_n and sm > 0 and slow.var > sm:
                phi_slow = (slow.var - sm) / (sm * sm)
                if phi_slow > phi_own:
                    phi_own = phi_slow
        if base.n < cfg.young_windows:
            # young: the spread of the blend itself, own windows and prior pooled (a key whose
            # first windows disagree with its prior is not a typical one: judged wider)
            t = k0 + n
            d = own - mu0
            var = (k0 * (mu0 + phi0 * mu0 * mu0) + n * base.var + k0 * n / t * d * d) / t
            phi_own = max(phi_own, max(0.0, var - mean) / (mean * mean) if mean > 0 else phi0)
        ne = n / wh * (mean / (1.0 + mean)) ** 2
        kp = cfg.dispersion_prior_windows
        # towards how keys like it wobble in time, once that is known; before, towards how
        # keys differ (wider: the right spread for a key whose own mean is not known yet)
        phi_to = phi0
        if base.n >= cfg.young_windows:
            # (how keys differ says nothing about how one wobbles: with no wobble known, its own)
            w = population.wobble_of(own)
            phi_to = w if w is not None else phi_own
        phi = (kp * phi_to + ne * phi_own) / (kp + ne) if kp + ne > 0 else phi_to
        if base.n < cfg.young_windows:
            phi = max(phi, cfg.young_min_dispersion * (1.0 - base.n / cfg.young_windows))
        return Baseline(mean, mean + phi * mean * mean, base.n)

    def _idle_in(self, key: tuple[str, ...], ks: KeyState) -> None:
        if self.early:
            acc = self._idle_exp.setdefault((self.category_of(key), ks.viewers > 0), [0.0, 0])
            acc[0] += ks.viewers or 1
            acc[1] += 1

    def _idle_out(self, key: tuple[str, ...], ks: KeyState) -> None:
        if self.early:
            acc = self._idle_exp[(self.category_of(key), ks.viewers > 0)]
            acc[0] -= ks.viewers or 1
            acc[1] -= 1

    def missing(self, key: tuple[str, ...]) -> bool:
        """True if the key's baseline may live in the store (not in memory, not just evicted)."""
        return key not in self.keys and key not in self.evicted

    def _quiet(self, ks: KeyState, zeros: int, first: int) -> None:
        """``zeros`` quiet windows from the one ending at ``first``, in closed form: the
        baseline, the burst memory and the slow baseline learn them at once."""
        ks.base.observe_zeros(zeros, self._alpha)
        ks.recur.observe(0.0, first)
        if self._ramp_on:
            ks.ramp.base.observe_zeros(zeros, self._ramp_alpha)

    def _settle(self, ks: KeyState, through: int) -> None:
        """Apply an idle key's owed quiet windows, through the window ending at ``through``."""
        if ks.zfrom and ks.zfrom <= through:
            self._quiet(ks, (through - ks.zfrom) // self._hop + 1, ks.zfrom)
        ks.zfrom = through + self._hop

    def _wake(self, key: tuple[str, ...], ks: KeyState) -> None:
        """An idle key gets data again: settle it and have windows visit it again."""
        if self.closed_through is not None:
            self._settle(ks, self.closed_through)
            keep_from = self.closed_through + self._hop - self._keep_ms  # as visits would have
            if ks.panes:
                for p in [p for p in ks.panes if p < keep_from]:
                    del ks.panes[p]
        ks.zfrom = 0
        if self.idle.pop(key, None) is not None:
            self._idle_out(key, ks)
        ks.gfull = False  # the baseline moved: the gate's bound is stale
        ks.gneed = ks.gpre

    def state(self, key: tuple[str, ...], viewers: int, stored: BaselineRow | None, pane: int) -> KeyState:
        ks = self.keys.get(key)
        if ks is not None:
            if ks.zfrom:
                self._wake(key, ks)
            if ks.born is not None and pane < ks.born:
                ks.born = pane
            return ks
        row = self.evicted.pop(key, None) or stored
        if row is not None:
            mean, var, n, closed = row[:4]
            base = Baseline(mean, var, n)
            # (a row of four is from before the burst memory: it has none)
            recur = Recurrence.load(row[4]) if len(row) > 4 and row[4] is not None else Recurrence()
            if self.closed_through is not None and closed < self.closed_through:
                base.observe_zeros((self.closed_through - closed) // self.cfg.hop_ms, self._alpha)
                recur.observe(0.0, closed + self.cfg.hop_ms)
            ks = self.keys[key] = KeyState(base)
            ks.recur = recur
        else:
            ks = self.keys[key] = KeyState(Baseline(0.0, 0.0, 0), born=pane)
            if self.early:
                self.population.new_key(viewers)
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
        elif ks.zfrom:
            self._wake(key, ks)
        t = ks.panes.get(pane)
        if t is None:
            t = ks.panes[pane] = Tally()
            if pane > ks.newest:
                ks.newest = pane
        if ts_ms < t.first:
            t.first = ts_ms
        if tally is not None:
            t.merge(*tally)
            added = tally[0]
        else:
            t.add(reporter if reporter is not None else 0)
            added = 1
        end = pane + hop
        if self.early:
            if ks.gend == end:
                ks.gcur += added
            else:
                ks.gend = 0  # recomputed by _gate below
        elif ks.wend == end:
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
        if ks.gend != end:
            self._pre_gate(ks, end)
        if ks.gcur < ks.gneed:
            return None  # the common case: no window ending here can pass
        if not ks.gfull:
            self._gate(key, ks, end)
            if ks.gcur < ks.gneed:
                return None
        return self._test_early(key, ks, end, ts_ms)

    # ---- the early (multi-scale) test ------------------------------------------------------

    def _pre_gate(self, ks: KeyState, end: int) -> None:
        """A cheap lower bound of the gate, from the pane counts alone: every window needs
        min_volume reports, and holds no more than all the key's panes before this one. Stays
        a lower bound while windows close (they only drop old panes), so only a new pane (or
        a test) resets it; the exact gate is computed once it is reached."""
        last = end - self._hop
        cur = before = 0
        for p, t in ks.panes.items():
            if p < last:
                before += t.count
            elif p == last:
                cur = t.count
        ks.gend = end
        ks.gcur = cur
        ks.gneed = ks.gpre = self.min_volume - before
        ks.gfull = False

    def _gate(self, key: tuple[str, ...], ks: KeyState, end: int) -> None:
        """Cache, for the pane ending at ``end``, what its count must reach before any test
        of a window ending there can pass: per window length, the count of its earlier panes
        and its threshold (the most of: min volume, ratio over the scaled baseline mean, the
        tail-test count from the key's reference)."""
        cfg = self.cfg
        hop = self._hop
        last = end - hop
        n = self._keep_ms // hop
        before = [0] * n  # before[i]: reports in the pane i hops before the current one
        cur = 0
        for p, t in ks.panes.items():
            if p == last:
                cur = t.count
            elif p < last:
                i = (last - p) // hop
                if i < n:
                    before[i] = t.count
        acc = 0
        prior_at = [0] * (n + 1)  # prior_at[k]: reports in the k - 1 panes before the current
        for i in range(1, n):
            acc += before[i]
            prior_at[i + 1] = acc
        ks.gend = end
        ks.gcur = cur
        ks.gfull = True
        ks.gprior = prior = prior_at[self._window_ms // hop]
        if ks.in_spike:
            ks.gscales = ()
            ks.gneed = max(self.min_volume, ks.next_raw) - prior
            return
        self._fell_back = False
        ref = self.reference(key, ks)
        if self._fell_back:
            ks.gfull = False  # the gate is a bound: recomputed when reached (more keys may come)
        if ref is None:  # young, and nothing to judge it against yet
            ks.gscales = ()
            ks.gneed = 1 << 62
            ks.blocked = True
            return
        mean = ref.mean
        phi = self._dispersion(ref)
        extra = cfg.young_extra_log10_p if ks.base.n < cfg.young_windows else 0.0
        floor = self._open_floor(ks, mean, end)
        recurring = floor > cfg.ratio_open * mean
        # a recurring burst's peak is a multiple of the baseline on a busy key (a longer window
        # scales it), a count on a quiet one (a longer window holds the same burst)
        counts = recurring and mean < 1.0
        scales = []
        need = 1 << 62
        for wms, frac, lp in self._scales:
            if end - wms < ks.clear_from:
                continue
            if recurring and frac < 1.0:
                continue  # bursts recur on this key: it opens on a minute's evidence, not less
            m = mean * frac
            # over-dispersion of a shorter window is taken as the window_s one's (the rate's
            # wobble does not average out within it); a longer one is a sum of window_s
            # windows whose wobbles are taken as independent, so its variance adds up
            thr = max(self.min_volume,
                      math.ceil(max(cfg.ratio_open * m, floor * (min(frac, 1.0) if counts else frac)) - 1e-9),
                      tail_threshold(m, phi if frac <= 1.0 else phi / frac, lp + extra))
            before_w = prior_at[wms // hop]
            scales.append((wms, before_w, thr))
            if thr - before_w < need:
                need = thr - before_w
        ks.gscales = tuple(scales)
        if ks.next_end == end:
            need = max(need, ks.next_raw - prior)  # a busy window that failed: wait for growth
        ks.gneed = need

    def _test_early(self, key: tuple[str, ...], ks: KeyState, end: int, at_ms: int) -> Decision | None:
        """Open (or raise) a spike if a window ending at ``end``, of any scanned length, is
        unusual. Called only when the gate says a test could pass."""
        raw60 = ks.gcur + ks.gprior
        if ks.in_spike:
            d = self._raise(key, ks, end, at_ms, raw60)
            ks.gend = 0  # next_raw moved
            return d
        cfg = self.cfg
        cur = ks.gcur
        for wms, before_w, thr in ks.gscales:
            if cur + before_w < thr:
                continue
            _, distinct, eff = self._window(ks, end, wms)
            if eff >= thr and distinct >= cfg.min_reporters:
                break
        else:
            # busy windows that are not a spike: look again once they have grown by a tenth
            ks.next_end = end
            ks.next_raw = raw60 + max(1, raw60 // 10)
            ks.gend = 0
            return None
        raw, distinct, eff = self._window(ks, end)  # the decision describes the window_s window
        return self._open(key, ks, end, at_ms, raw, distinct, eff)

    def _open(self, key: tuple[str, ...], ks: KeyState, end: int, at_ms: int,
              raw: int, distinct: int, eff: int, *, long: bool = False) -> Decision:
        ks.in_spike = True
        ks.long = long
        ks.opened_end = ks.pend = end
        ks.quiet = 0
        ks.peak = eff
        ks.next_raw = raw + max(1, raw // 4)
        ks.gend = 0
        d = self._decision("open", key, ks, end, at_ms, raw, distinct, eff)
        ks.tier = d.tier
        return d

    def _ramp_sum(self, ks: KeyState, end: int) -> tuple[int, float, float]:
        """(count, expected, over-dispersion) of the last ramp_window_s: expected from the slow
        baseline's mean for that long, and for a key with a day of history at least the same
        half hour the day before; the over-dispersion of a sum of that many window_s windows,
        taken as independent, as the long scans take theirs."""
        slow = ks.ramp.base
        m = slow.mean * self._ramp_k
        before = ks.ramp.day_before(end)
        if before is not None:
            m = max(m, float(before))
        return ks.ramp.total(end - self._ramp_ms), m, self._dispersion(slow) / self._ramp_k

    def _test_ramp(self, key: tuple[str, ...], ks: KeyState, end: int) -> Decision | None:
        """Open a spike if the last ramp_window_s holds far more than the slow baseline expects
        (ramp.py). Called as a minute-aligned window closes on a key not in a spike."""
        cfg = self.cfg
        slow = ks.ramp.base
        if slow.n < self._ramp_n or end - self._ramp_ms < ks.clear_from:
            return None
        if self.start is None or end - self.start < self._ramp_ms:
            return None
        total, m, phi = self._ramp_sum(ks, end)
        if total < max(self.min_volume, cfg.ratio_open * m):
            return None
        if self._recur_on and ks.recur and self._open_floor(ks, ks.base.mean, end) > cfg.ratio_open * ks.base.mean:
            return None  # bursts recur on this key: its half hours hold them, they are no ramp
        if total < tail_threshold(m, phi, cfg.ramp_log10_p):
            return None
        _, distinct, now = self._window(ks, end, self._keep_ms)
        if distinct < cfg.min_reporters:
            return None  # a few accounts filing for half an hour are a brigade, not a ramp
        if now < cfg.ratio_open * slow.mean * self._keep_ms / self._window_ms:
            return None  # the level is not up now: the half hour holds a surge that is over
        raw, distinct, eff = self._window(ks, end)
        return self._open(key, ks, end, end, raw, distinct, eff, long=True)

    def _window(self, ks: KeyState, end: int, length: int | None = None) -> tuple[int, int, int]:
        """(raw, distinct, effective) of the window of ``length`` ms (window_ms) ending at ``end``."""
        get = ks.panes.get
        hop = self._hop
        return window_stats(
            (t for t in map(get, range(end - (length or self._window_ms), end, hop)) if t is not None),
            self.cfg.per_reporter_cap,
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
        if base.n < self.min_history:
            return None  # too little history of its own to say what is unusual
        if raw < cfg.ratio_open * base.mean or (ks.wend == ks.next_end and raw < ks.next_raw):
            return None
        raw, distinct, eff = self._window(ks, end)
        if (
            eff < self.min_volume
            or distinct < cfg.min_reporters
            or eff < cfg.ratio_open * base.mean
            or base.z(eff, cfg.var_floor) < self.z_open
        ):
            # a busy window that is not a spike: look again once it has grown by a tenth
            ks.next_end = end
            ks.next_raw = raw + max(1, raw // 10)
            return None
        return self._open(key, ks, end, at_ms, raw, distinct, eff)

    def _raise(self, key: tuple[str, ...], ks: KeyState, end: int, at_ms: int, raw: int) -> Decision | None:
        """In a spike: re-score when the window has grown by a quarter, and signal only a
        higher severity. Re-scoring every report would cost more than all else together."""
        if raw < ks.next_raw:
            return None
        ks.next_raw = raw + max(1, raw // 4)
        raw, distinct, eff = self._window(ks, end)
        if eff <= ks.peak:
            return None
        ks.peak = eff
        return self._rescore(key, ks, end, at_ms, raw, distinct, eff)

    def _rescore(self, key: tuple[str, ...], ks: KeyState, end: int, at_ms: int,
                 raw: int, distinct: int, eff: int, panes: int | None = None) -> Decision | None:
        """A "raise" if the spike now scores a higher severity, else None. Also called as each
        window of a spike closes: a sustained change gains evidence with every window while
        its count stays level, and that must be able to raise it (and so page it)."""
        cfg = self.cfg
        best = best_spike_score(self.category_of(key), ks.viewers, cfg.scoring)
        if severity_for(best, cfg.scoring.severity_thresholds).rank >= ks.tier:
            return None  # no window on this key can reach a higher severity
        ref = self.reference(key, ks) or ks.base
        sp = self._score(key, ks, end, ref, distinct, eff)
        if severity_for(sp.score, cfg.scoring.severity_thresholds).rank >= ks.tier:
            return None
        d = self._decision("raise", key, ks, end, at_ms, raw, distinct, eff, panes=panes, sp=sp)
        ks.tier = d.tier
        return d

    def _decades(self, ks: KeyState, end: int, ref: Baseline) -> float:
        """How many decades below its bound the tail probability of the spike's strongest
        window lies (0 if none is past it): the evidence severity is calibrated on."""
        mean = ref.mean
        best = 0.0
        if self._scales:
            phi = self._dispersion(ref)
            extra = self.cfg.young_extra_log10_p if ks.base.n < self.cfg.young_windows else 0.0
            for wms, frac, lp in self._scales:
                if end - wms < ks.clear_from:
                    continue
                m = mean * frac
                ph = phi if frac <= 1.0 else phi / frac
                eff = self._window(ks, end, wms)[2]
                best = max(best, -log10_sf(eff, m, m + ph * m * m) - lp - extra)
            if ks.long:  # a slow ramp's evidence is its half hour against the slow baseline
                total, m, ph = self._ramp_sum(ks, end)
                best = max(best, -log10_sf(total, m, m + ph * m * m) - self.cfg.ramp_log10_p)
        else:  # trends: the z test's bound, with the learned variance
            eff = self._window(ks, end)[2]
            var = max(ref.var, mean, self.cfg.var_floor)
            best = max(best, -log10_sf(eff, mean, var) - self._z_lp)
        return best

    def _score(self, key: tuple[str, ...], ks: KeyState, end: int, ref: Baseline,
               distinct: int, eff: int) -> SpikeScore:
        return spike_score(
            self.category_of(key), effective=eff, baseline_mean=ref.mean, distinct=distinct,
            viewers=ks.viewers, decades=self._decades(ks, end, ref), cfg=self.cfg.scoring,
        )

    def _dispersion(self, base: Baseline) -> float:
        """Over-dispersion of the window_s count, (var - mean) / mean**2, capped; 0 if none."""
        mean = base.mean
        if mean > 0 and base.var > mean:
            return min(self.cfg.max_dispersion, (base.var - mean) / (mean * mean))
        return 0.0

    def _open_level(self, base: Baseline, ks: KeyState | None = None, end: int = 0) -> float:
        """The window_s count that opens a spike on a key with this reference (the chart's band)."""
        cfg = self.cfg
        mean = base.mean
        floor = self._open_floor(ks, mean, end) if ks is not None else cfg.ratio_open * mean
        level = max(float(self.min_volume), floor)
        if self.early and self._scales:
            return max(level, float(tail_threshold(mean, self._dispersion(base), self._open_lp)))
        sd: float = max(base.var, mean, cfg.var_floor) ** 0.5  # float ** float is Any to mypy
        return max(level, mean + self.z_open * sd)

    def _rate(self, ks: KeyState, end: int, panes: int) -> tuple[tuple[int, int], ...]:
        """Reports per pane for the ``panes`` panes ending at ``end`` (zeros included)."""
        hop = self._hop
        held = ks.panes
        out = []
        for p in range(end - panes * hop, end, hop):
            t = held.get(p)
            out.append((p, t.count if t is not None else 0))
        return tuple(out)

    def _surge_start(self, ks: KeyState, end: int, at_ms: int, mean: float) -> int:
        """Event time of the surge's first report: the earliest report of the run of panes,
        back from the one that decided the spike, that each held clearly more than a pane's
        share of the reference (mean + 2 sd of a Poisson pane, and at least one report)."""
        hop = self._hop
        share = mean * hop / self._window_ms
        above = share + 2 * share ** 0.5
        held = ks.panes
        pane = min(at_ms - at_ms % hop, end - hop)
        t = held.get(pane)
        first = min(t.first, at_ms) if t is not None else at_ms
        lowest = end - self._keep_ms
        pane -= hop
        while pane >= lowest:
            t = held.get(pane)
            if t is None or t.count <= above:
                break
            first = min(first, t.first)
            pane -= hop
        return first

    def _panes_since_progress(self, ks: KeyState, end: int) -> int:
        """Panes closed since the spike's last progress (or its opening), at most those held."""
        if not ks.pend or ks.pend >= end:
            return 1
        return min((end - ks.pend) // self._hop, self._keep_ms // self._hop)

    def _decision(
        self, kind: str, key: tuple[str, ...], ks: KeyState, end: int, at_ms: int,
        raw: int, distinct: int, eff: int, panes: int | None = None, sp: SpikeScore | None = None,
    ) -> Decision:
        cfg = self.cfg
        ref = self.reference(key, ks) or ks.base
        if kind == "open":  # every later decision of the spike carries the same start
            ks.surge = self._surge_start(ks, end, at_ms, ref.mean)
        if sp is None:
            sp = self._score(key, ks, end, ref, distinct, eff)
        tier = severity_for(sp.score, cfg.scoring.severity_thresholds).rank
        return Decision(
            kind=kind, key=key, window_end_ms=end, opened_end_ms=ks.opened_end or end, at_ms=at_ms,
            raw=raw, distinct=distinct, effective=eff, mean=ref.mean,
            z=ref.z(eff, cfg.var_floor), score=sp.score, tier=tier, components=sp,
            samples=tuple(ks.samples[-SAMPLES:]), viewers=ks.viewers,
            # an opening shows what led up to it (all panes held); later ones add their pane
            rate=self._rate(ks, end, panes or (self._keep_ms // self._hop if kind == "open" else 1)),
            upper=round(self._open_level(ref, ks, end), 3), started_ms=ks.surge,
        )

    # ---- time ---------------------------------------------------------------------------

    def close_through(self, watermark_ms: int) -> Iterator[Decision]:
        """Close every window ending at or before the watermark, in order."""
        cfg = self.cfg
        hop = cfg.hop_ms
        last = watermark_ms - watermark_ms % hop
        if self.closed_through is None:
            # the clock starts just before the earliest data held (a trend stage may receive
            # minutes of panes before its first watermark), or at the watermark if none
            earliest = min((min(ks.panes) for ks in self.keys.values() if ks.panes), default=None)
            if earliest is None or earliest >= last:
                self.closed_through = self.start = last
                return
            self.closed_through = self.start = earliest
        if last <= self.closed_through:
            return
        first = self.closed_through + hop
        self.closed_through = last
        evict_before = last - cfg.idle_evict_s * 1000
        keep = self._keep_ms
        window = self._window_ms
        n_keep = (keep + cfg.grace_ms) // hop + 2  # panes a key holds: its longest window, grace
        idle = self.idle
        if idle and last // SWEEP_MS != self._swept // SWEEP_MS:  # on event time, not on calls
            self._swept = last
            for key, ks in list(idle.items()):
                if ks.last_ms < evict_before:  # its panes are past any window too
                    self._settle(ks, last)
                    del idle[key], self.keys[key]
                    self._idle_out(key, ks)
                    self.evicted[key] = _evicted_row(ks, last)
        if self._idle_exp:
            # the idle keys' quiet windows teach the population too (in one sum: they are not
            # visited), or it would learn the rate of keys that just reported, too high
            hops = (last - first) // hop + 1
            for (category, has_v), (exposure, count) in self._idle_exp.items():
                if count:
                    self.population.observe_idle(category, has_v, exposure * hops, count * hops, last)
        for key in [k for k in self.keys if k not in idle]:
            ks = self.keys[key]
            if ks.gfull:  # the baseline (or the spike state) may change: back to the bound
                ks.gfull = False
                ks.gneed = ks.gpre
            b = first
            if ks.born is not None and ks.born + hop > b:
                b = ks.born + hop  # windows before the key's first data are not its history
            # no report arrives while windows close: past the newest pane's window, every
            # window to ``last`` is empty (a key with one report closes ~30 windows that way)
            quiet_from = ks.newest + window if ks.panes else first
            while b <= last:
                if not ks.in_spike and (not ks.panes or b > quiet_from):
                    # nothing in any window from here on: the rest are quiet windows, and the
                    # key is idle (not visited) until a report wakes it
                    zeros = (last - b) // hop + 1
                    self._quiet(ks, zeros, b)
                    if self.early:  # (from the next call on, counted with the idle keys)
                        self.population.observe_idle(self.category_of(key), ks.viewers > 0,
                                                     (ks.viewers or 1) * zeros, zeros, last)
                    keep_from = last + hop - keep
                    for p in [p for p in ks.panes if p < keep_from]:
                        del ks.panes[p]
                    if ks.panes or ks.last_ms >= evict_before:
                        ks.zfrom = last + hop  # settled through ``last``
                        idle[key] = ks
                        self._idle_in(key, ks)
                    break
                if ks.blocked and not ks.in_spike:
                    # a young key's test was skipped for want of a population: judged on this
                    # window before it is learned (the surge may be over by the time the
                    # population knows enough, and must not become the key's baseline)
                    ks.blocked = False
                    self._gate(key, ks, b)
                    if ks.gcur >= ks.gneed:
                        d = self._test_early(key, ks, b, b)
                        if d is not None:
                            yield d
                    ks.gend = 0  # the next report recomputes its pane's gate
                d = self._close_window(key, ks, b)
                if d is not None:
                    yield d
                # panes older than the next window's start are no longer needed
                keep_from = b + hop - keep
                panes = ks.panes
                panes.pop(keep_from - hop, None)  # the one pane that just fell out, as a rule
                if len(panes) > n_keep:  # unless reports came in out of order: sweep
                    for p in [p for p in panes if p < keep_from]:
                        del panes[p]
                b += hop
            if not ks.in_spike and not ks.panes and ks.last_ms < evict_before:
                del self.keys[key]
                self.evicted[key] = _evicted_row(ks, last)

    def _learn_recurrence(self, ks: KeyState, eff: int, end: int) -> None:
        """Show the episode memory one window: how many times the 1 h baseline it is if
        unusual (min_volume or more, ratio_open times the baseline, past its
        10**-recur_log10_p tail: a quiet key's stray reports, or a brigade's, are no episode),
        else 0. Only a key with history of its own has a baseline to measure by; a spike's
        windows count (against the frozen baseline)."""
        base = ks.base
        cfg = self.cfg
        if base.n < cfg.young_windows:
            return
        ratio = 0.0
        if (eff >= max(self.min_volume, cfg.ratio_open * base.mean)
                and eff >= tail_threshold(base.mean, self._dispersion(base), cfg.recur_log10_p)):
            ratio = eff / max(base.mean, 1.0)
        ks.recur.observe(ratio, end)

    def _open_floor(self, ks: KeyState, mean: float, end: int) -> float:
        """The least window_s count that can open: ratio_open times the mean, and past the
        bursts that recur on the key (recurrence.py)."""
        cfg = self.cfg
        floor = cfg.ratio_open * mean
        if self._recur_on and ks.recur:
            usual = ks.recur.usual(end, self._recur_ms, cfg.recur_episodes)
            floor = max(floor, cfg.recur_margin * usual * max(mean, 1.0))
        return floor

    def _closed_stats(self, ks: KeyState, end: int) -> tuple[int, int, int]:
        """``_window(ks, end)`` for windows closing in order: unchanged from the window one hop
        earlier unless a pane with data entered it or left it (a quiet key's one pane stays in
        six windows). Closed panes never change (a report for one is late), so this is exact.
        Whether the window's oldest pane held data is noted now: it leaves with the next hop,
        and by then it may have been dropped from ``panes``."""
        hop = self._hop
        panes = ks.panes
        if ks.cend == end - hop and not ks.cleave and (end - hop) not in panes:
            stats = ks.cstats
        else:
            ks.cstats = stats = self._window(ks, end)
        ks.cend = end
        ks.cleave = (end - self._window_ms) in panes
        return stats

    def _close_window(self, key: tuple[str, ...], ks: KeyState, end: int) -> Decision | None:
        """Close the window ending at ``end`` on one key: learn, or test and end its spike.
        At most one decision."""
        cfg = self.cfg
        raw, distinct, eff = self._closed_stats(ks, end)
        # (a window below min_volume is no episode: with none going on, the memory has nothing
        # to learn from it, and most closed windows are such)
        if (self._recur_on and (eff >= self.min_volume or ks.recur.peak)
                and self.start is not None and end - self.start >= self._window_ms):
            self._learn_recurrence(ks, eff, end)
        if self._ramp_on and end % self._window_ms == 0:
            ks.ramp.record(end, eff, end - self._ramp_ms)
            if not ks.in_spike:
                d = self._test_ramp(key, ks, end)
                if d is not None:
                    return d
        if not self.early and not ks.in_spike and end > ks.opened_end:
            d = self._test(key, ks, end, end)
            if d is not None:
                return d
        if ks.in_spike:
            if end < ks.opened_end:
                return None
            if end == ks.opened_end:  # the pane that was filling when it opened, now complete
                ks.pbucket = raw.bit_length()
                return self._decision("progress", key, ks, end, end, raw, distinct, eff, panes=1)
            if ks.long:
                # a slow ramp ends when its level falls back: its longest scanned window against
                # the slow baseline (a minute of a sustained 5x on a quiet key is often low)
                k = self._keep_ms / self._window_ms
                below = self._window(ks, end, self._keep_ms)[2] < max(
                    self.min_volume, cfg.ratio_close * ks.ramp.base.mean * k)
            else:
                base = self.reference(key, ks) or ks.base
                below = eff < max(self.min_volume, cfg.ratio_close * base.mean,
                                  base.mean + cfg.z_close * (max(base.var, base.mean, cfg.var_floor) ** 0.5))
            if below:
                ks.quiet += 1
                if ks.quiet >= cfg.close_after:
                    d = self._decision("resolve", key, ks, end, end, raw, distinct, eff,
                                       panes=self._panes_since_progress(ks, end))
                    ks.in_spike = False
                    ks.long = False
                    ks.quiet = 0
                    ks.peak = 0
                    ks.tier = 4
                    ks.next_raw = ks.next_end = 0
                    ks.clear_from = end - cfg.window_ms - (cfg.close_after - 1) * cfg.hop_ms
                    return d
            else:
                ks.quiet = 0
                # (carrying the panes since the last progress, as a progress does: the chart
                # never holds fewer reports than the incident says)
                d = self._rescore(key, ks, end, end, raw, distinct, eff,
                                  panes=self._panes_since_progress(ks, end))
                if d is not None:
                    ks.pend, ks.pbucket = end, raw.bit_length()
                    return d
            bucket = raw.bit_length()
            if bucket != ks.pbucket or end - ks.pend >= cfg.progress_every_s * 1000:
                d = self._decision("progress", key, ks, end, end, raw, distinct, eff,
                                   panes=self._panes_since_progress(ks, end))
                ks.pend, ks.pbucket = end, bucket
                return d
        else:
            # learn from the window clipped at mean + learn_clip_z sd of the key's reference: a
            # surge building below the open bar must not inflate the variance and so raise its
            # own bar (a key learning from nothing, with no reference yet, is not clipped)
            base = ks.base
            x: float = eff
            # (a key with history of its own is clipped at its own bar: the blend moves it little)
            ref: Baseline | None
            if base.n >= cfg.young_windows:
                ref = base
            else:
                ref = self.reference(key, ks) if self.early else None
            cover = 1.0
            if self.early and self.start is not None:
                # (a trend's clock starts when its upstreams' outboxes happen to arrive: its
                # windows are all taken whole, or the result would depend on that order)
                cover = (end - self.start) / self._window_ms
            # (no clip can apply to a count within mean + learn_clip_z sd at the variance floor
            # that cannot pass the tail either, as most closed windows hold: skipped)
            if ref is not None and cover >= 1.0 and (
                    x > ref.mean + self._clip_at_floor or (self.early and x > math.floor(ref.mean) + 1)):
                cap = ref.mean + cfg.learn_clip_z * max(ref.var, ref.mean, cfg.var_floor) ** 0.5
                # (the tail count lies above the mean: a count of at most floor(mean) + 1
                # cannot pass it, and most closed windows hold one report)
                if self.early and x > math.floor(ref.mean) + 1:
                    # and at the count its tail test calls unusual at 10**-learn_clip_log10_p:
                    # on a quiet key the z cap (its variance floored at var_floor) lets a
                    # building surge in, whose spread then raises the key's own bar
                    cap = min(cap, tail_threshold(ref.mean, self._dispersion(ref), cfg.learn_clip_log10_p))
                if x > cap:
                    x = cap
            if self.early:
                # every window teaches the population (a part-covered one as part exposure),
                # unclipped: a clip at the population's own bar would hide the very spread it
                # must learn; only whole windows are the key's own history
                self.population.observe(self.category_of(key), eff, ks.viewers, min(cover, 1.0), end,
                                        base.mean if base.n >= cfg.young_windows else None)
            if cover >= 1.0 and not (self.early and ref is None):
                # (a young key with nothing to judge it by does not learn either: what it
                # sees before its population speaks may be the surge it should have paged)
                base.observe(x, self._alpha)
                if self._ramp_on:
                    ks.ramp.base.observe(x, self._ramp_alpha)
        return None

    # ---- checkpoints --------------------------------------------------------------------

    def take_evicted(self) -> dict[tuple[str, ...], BaselineRow]:
        out, self.evicted = self.evicted, {}
        return out

    def dump(self) -> dict[str, Any]:
        # idle keys are dumped as they are, owing their quiet windows: settling them here would
        # apply those windows in other pieces than a run without the checkpoint (the closed
        # form rounds differently), and a restore must change nothing
        return {
            "closed_through": self.closed_through,
            "start": self.start,
            "population": self.population.dump(),
            "swept": self._swept,
            "keys": [(list(k), ks.dump()) for k, ks in self.keys.items()],
            "evicted": [(list(k), list(v)) for k, v in self.evicted.items()],
        }

    def load(self, d: dict[str, Any]) -> None:
        self.closed_through = d["closed_through"]
        self.start = d.get("start", self.closed_through)
        self.population.load(d.get("population", {}))
        self.keys = {tuple(k): KeyState.load(v) for k, v in d["keys"]}
        self.evicted = {tuple(k): (*v[:4], v[4] if len(v) > 4 else None)
                        for k, v in d["evicted"]}
        self._swept = d.get("swept", 0)
        self.idle = {}
        self._idle_exp = {}
        for k, ks in self.keys.items():
            if ks.zfrom:
                self.idle[k] = ks
            elif not ks.panes and not ks.in_spike and self.closed_through is not None:
                ks.zfrom = self.closed_through + self._hop  # a checkpoint from before idle keys
                self.idle[k] = ks
            else:
                continue
            self._idle_in(k, ks)
