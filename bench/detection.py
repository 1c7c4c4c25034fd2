"""Detection-quality benchmark: does the per-stream spike detector page on real surges, fast,
and stay quiet on noise and on brigades?

Everything runs in event time (no wall clock, no Kafka), reproducibly from ``--seed``:

1. traffic: ``--streams`` streams, each with 1-4 report categories; a key is (stream,
   category). Each key has a base rate (log-normal across keys, ~0.2 .. ~30 reports/min,
   median ~2.5/min), a daily cycle (sinusoid, peak/trough 3-4x, peaking at 21:00 local time
   of the stream's region) and noise: Poisson for ~60% of keys, over-dispersed
   (gamma-Poisson: the rate is multiplied by a Gamma(k, 1/k) factor, k in 4..12, redrawn every
   minute) for the rest. Reporters come from a population of 50M (so nearly every report has
   its own reporter) plus a few per-stream "regulars". Simulated at 1 s resolution.
2. labelled spikes (positives): a random key's rate is multiplied by 2x..50x (log-uniform)
   of its current rate for 1..10 min, as a step or a ramp (linear over the first half);
   the extra reports come from fresh, distinct reporters.
3. labelled brigades (negatives): 1..3 accounts (and, reported separately, 5..10 accounts)
   file 50..500 reports against one key over 2..6 min.
4. reports are delivered in arrival order (event time + a few seconds of jitter; 0.1% are
   10..45 s late, so some fall beyond the grace period) to one ``StreamTask`` per partition
   (``--partitions``, stream_id hashed like Kafka's key partitioner). Baselines evicted by
   the detector are kept in a dict standing in for the baseline store and handed back
   (``stored=``) when the key returns.
5. scoring, after ``--warmup-hours`` (default 24 h, excluded so baselines have converged):
   an opening spike signal (kind "spike", signal_id without ":sev") whose window overlaps a
   labelled spike of its key is a detection (delay = observed_at - spike start); one that
   overlaps a brigade of its key is a "brigade page"; anything else is a false alarm on
   plain noise. An "oracle" bound is printed next to recall and delay: what a detector that
   knows every key's true noise rate could do with 60 s counts at the same false-alarm budget.

Trend outboxes are drained as the runner does; ``--trends`` also feeds them to a
``TrendTask`` and counts its signals (informational, not scored). ``--set field=value``
overrides a ``DetectorConfig`` default for one run (for tuning). Exit status 0 only if every
target passes.

    python -m bench.detection [--seed 1] [--days 2] [--streams 300] [--set z_open=6] [--json]

Needs numpy (``pip install numpy``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import zlib
from bisect import bisect_right
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

try:
    import numpy as np
except ImportError:  # pragma: no cover - the message is the point
    sys.exit("bench.detection needs numpy: pip install numpy")

from services.triage.detector import DetectorConfig
from services.triage.streams import StreamTask
from services.triage.trends import TrendTask
from shared.events import Signal

DAY_S = 86_400
T0_MS = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp() * 1000)  # a Monday, 00:00 UTC

# category mix of the keys (as in livetriage.simulate)
CATEGORY_MIX = {
    "spam": 30, "harassment": 18, "hate": 12, "nudity": 10, "other": 9, "violence": 7,
    "dangerous_acts": 5, "self_harm": 3, "animal_harm": 3, "violent_extremism": 2, "child_safety": 1,
}
# region -> UTC offset (hours); activity peaks at 21:00 local time
REGIONS = {"US": -5.0, "BR": -3.0, "IN": 5.5, "DE": 1.0, "GB": 0.0, "FR": 1.0, "JP": 9.0,
           "MX": -6.0, "ID": 7.0, "TR": 3.0, "KR": 9.0, "NG": 1.0}
PEAK_LOCAL_H = 21.0
POPULATION = 50_000_000  # reporters
REGULARS = 40  # per stream: viewers who report that stream again and again
REGULAR_SHARE = 0.05
KPERVIEWER = 0.02  # reports per minute per 1,000 viewers (to give streams a viewer count)
# --world platform: the most popular of the streams has about this many viewers (Zipf), and a
# stream files about this many reports a minute per 1,000 viewers (before its propensity)
PLATFORM_TOP_VIEWERS = 300_000
PLATFORM_REPORTS_PER_KVIEWER = 2.0
# --world platform: short heavy-tailed bursts (a clip goes round: a real crowd, 5..30 s, a
# Pareto(1.5) multiple of the rate, 2x..200x), this many per key-day; unlabelled noise except
# that pages on bursts are counted apart, extreme ones (>= 50x) being fair to page on
BURSTS_PER_KEY_DAY = 2.0
EXTREME_BURST = 50.0

MULT_BUCKETS = [(2.0, 3.0, "2-3x"), (3.0, 5.0, "3-5x"), (5.0, 10.0, "5-10x"), (10.0, 50.01, "10-50x")]
DUR_BUCKETS = [(60, 120, "1-2m"), (120, 300, "2-5m"), (300, 601, "5-10m")]
RATE_BUCKETS = [(0.0, 1.0, "<1/min"), (1.0, 3.0, "1-3/min"), (3.0, 10.0, "3-10/min"),
                (10.0, 1e9, ">=10/min")]

TARGET_RECALL = 0.95
TARGET_FA_PER_KEY_DAY = 0.01
TARGET_MEDIAN_DELAY_S = 10.0


@dataclass
class Key:
    idx: int
    stream: int
    stream_id: str
    category: str
    region: str
    base: float  # reports/min, daily mean
    amp: float  # cycle amplitude: peak/trough = (1 + amp) / (1 - amp)
    peak_h: float  # UTC hour of the daily peak
    k: float  # gamma shape of the over-dispersion; 0 = Poisson
    viewers: int  # daily-mean viewer count of the stream

    def cycle(self, t_s: Any) -> Any:
        return 1.0 + self.amp * np.cos(2 * np.pi * (t_s / 3600.0 - self.peak_h) / 24.0)


@dataclass
class Label:
    kind: str  # "spike" | "brigade"
    key: int
    start_ms: int
    end_ms: int
    mult: float = 0.0  # spikes
    shape: str = ""  # spikes: "step" | "ramp"
    reporters: int = 0  # brigades
    reports: int = 0  # reports injected (beyond the background)
    # spikes: event times of the first injected reports (delivery order aside), for the
    # arrival floor: no detector needing k distinct reporters can open before the k-th
    first_ms: tuple[int, ...] = ()
    # filled in by scoring
    detected_ms: int | None = None
    signal_id: str | None = None
    resolved_ms: int | None = None
    resolved_emit_ms: int | None = None
    pages: int = 0

    @property
    def duration_s(self) -> float:
        return (self.end_ms - self.start_ms) / 1000.0


@dataclass
class Traffic:
    keys: list[Key]
    labels: list[Label]
    ev_ms: Any  # int64 event time, in arrival order
    key: Any  # int32
    reporter: Any  # int64 (-1: no reporter id)
    source: Any  # int8: 0 user, 1 classifier, 2 moderator
    cscore: Any  # float32
    background: int = 0
    spike_reports: int = 0
    brigade_reports: int = 0
    jitter_late: int = 0


# ---- traffic -----------------------------------------------------------------------------


def make_keys(rng: np.random.Generator, streams: int) -> list[Key]:
    cats = list(CATEGORY_MIX)
    cat_p = np.array(list(CATEGORY_MIX.values()), dtype=float)
    cat_p /= cat_p.sum()
    regions = list(REGIONS)
    keys: list[Key] = []
    for s in range(streams):
        region = regions[int(rng.integers(len(regions)))]
        n_cat = int(rng.choice([1, 2, 3, 4], p=[0.3, 0.35, 0.25, 0.1]))
        chosen = rng.choice(len(cats), size=n_cat, replace=False, p=cat_p)
        peak_h = (PEAK_LOCAL_H - REGIONS[region] + rng.normal(0, 1.0)) % 24
        stream_keys = []
        for c in chosen:
            # 1st..99th percentile ~ 0.2 .. 30 reports/min
            base = float(np.clip(rng.lognormal(math.log(2.45), 1.07), 0.12, 45.0))
            ratio = rng.uniform(3.0, 4.0)  # peak / trough
            amp = (ratio - 1) / (ratio + 1)
            k = float(rng.uniform(4.0, 12.0)) if rng.random() < 0.4 else 0.0
            stream_keys.append(Key(len(keys) + len(stream_keys), s, f"stream-{s:05d}", cats[int(c)],
                                   region, base, amp, peak_h, k, 0))
        viewers = sum(k.base for k in stream_keys) / KPERVIEWER * 1000 * rng.lognormal(0, 0.5)
        for key in stream_keys:
            key.viewers = max(50, int(viewers))
        keys += stream_keys
    return keys


def make_platform_keys(rng: np.random.Generator, streams: int) -> list[Key]:
    """A platform as it is, not as the detector would like it: Zipf popularity (viewers of the
    r-th stream ~ 1/r), reports in proportion to viewers (times a per-stream propensity,
    log-normal: some audiences report more), 1-4 categories per stream, and over-dispersion
    up to 2 (the gamma factor's shape k = 1/phi, phi uniform in 0.05..2) on most keys."""
    cats = list(CATEGORY_MIX)
    cat_p = np.array(list(CATEGORY_MIX.values()), dtype=float)
    cat_p /= cat_p.sum()
    regions = list(REGIONS)
    keys: list[Key] = []
    ranks = rng.permutation(streams) + 1
    for s in range(streams):
        region = regions[int(rng.integers(len(regions)))]
        viewers = max(20, int(PLATFORM_TOP_VIEWERS / ranks[s] * rng.lognormal(0, 0.3)))
        per_min = viewers / 1000 * PLATFORM_REPORTS_PER_KVIEWER * rng.lognormal(0, 0.6)
        n_cat = int(rng.choice([1, 2, 3, 4], p=[0.3, 0.35, 0.25, 0.1]))
        chosen = rng.choice(len(cats), size=n_cat, replace=False, p=cat_p)
        share = rng.dirichlet(cat_p[chosen] * 4)
        peak_h = (PEAK_LOCAL_H - REGIONS[region] + rng.normal(0, 1.0)) % 24
        for c, sh in zip(chosen, share, strict=True):
            ratio = rng.uniform(2.0, 4.0)
            amp = (ratio - 1) / (ratio + 1)
            k = 1.0 / float(rng.uniform(0.05, 2.0)) if rng.random() < 0.7 else 0.0
            keys.append(Key(len(keys), s, f"stream-{s:05d}", cats[int(c)], region,
                            max(0.01, per_min * float(sh)), amp, peak_h, k, viewers))
    return keys


def place_labels(rng: np.random.Generator, keys: list[Key], n: int, lo_s: int, hi_s: int,
                 busy: dict[int, list[tuple[int, int]]], make: Any) -> list[Label]:
    """``n`` labelled events at random keys and times, >= 30 min apart on any one key."""
    out: list[Label] = []
    gap = 1800
    while len(out) < n:
        ki = int(rng.integers(len(keys)))
        start = int(rng.integers(lo_s, hi_s))
        lab = make(ki, start)
        s, e = lab.start_ms // 1000, lab.end_ms // 1000
        if any(s < b + gap and a < e + gap for a, b in busy.get(ki, [])):
            continue
        busy.setdefault(ki, []).append((s, e))
        out.append(lab)
    return out


def generate(seed: int, streams: int, days: float, warmup_s: int, spikes_per_key_day: float,
             brigades_per_key_day: float, world: str = "bench") -> Traffic:
    rng = np.random.default_rng(seed)
    platform = world == "platform"
    keys = make_platform_keys(rng, streams) if platform else make_keys(rng, streams)
    horizon = int(days * DAY_S)
    sec = np.arange(horizon, dtype=np.float64)
    # the weekly cycle (platform world): weekends are busier
    week = 1.0 + 0.25 * (((sec // DAY_S) % 7) >= 5) if platform else 1.0

    evs: list[Any] = []
    kis: list[Any] = []
    reps: list[Any] = []
    srcs: list[Any] = []
    n_bg = 0
    for key in keys:
        lam = key.base / 60.0 * key.cycle(sec) * week
        if key.k:
            off = int(rng.integers(60))
            g = rng.gamma(key.k, 1.0 / key.k, size=horizon // 60 + 2)
            lam = lam * g[(np.arange(horizon) + off) // 60]
        counts = rng.poisson(lam)
        n = int(counts.sum())
        n_bg += n
        t = np.repeat(np.arange(horizon, dtype=np.int64), counts) * 1000 + rng.integers(0, 1000, n)
        regular = rng.random(n) < REGULAR_SHARE
        rep = np.where(regular,
                       POPULATION + key.stream * REGULARS + rng.integers(0, REGULARS, n),
                       rng.integers(0, POPULATION, n))
        src = rng.choice(np.array([0, 1, 2], dtype=np.int8), size=n, p=[0.97, 0.025, 0.005])
        rep = np.where(src == 0, rep, -1)
        evs.append(t)
        kis.append(np.full(n, key.idx, dtype=np.int32))
        reps.append(rep)
        srcs.append(src)

    scored_key_days = len(keys) * (horizon - warmup_s) / DAY_S
    margin = min(600, horizon // 10)
    lo, hi = warmup_s + margin, max(warmup_s + margin + 1, horizon - 2 * margin)
    busy: dict[int, list[tuple[int, int]]] = {}

    def spike(ki: int, start: int) -> Label:
        if platform and rng.random() < 0.2:  # a slow ramp, 20..60 min to 3..8x
            dur = int(rng.integers(1200, 3601))
            mult = float(rng.uniform(3.0, 8.0))
            return Label("spike", ki, start * 1000, (start + dur) * 1000, mult=mult, shape="slow")
        dur = int(rng.integers(60, 601))
        mult = float(math.exp(rng.uniform(math.log(2.0), math.log(50.0))))
        shape = "ramp" if rng.random() < 0.5 else "step"
        return Label("spike", ki, start * 1000, (start + dur) * 1000, mult=mult, shape=shape)

    def brigade(small: bool) -> Any:
        def make(ki: int, start: int) -> Label:
            dur = int(rng.integers(120, 361))
            nrep = int(rng.integers(1, 4)) if small else int(rng.integers(5, 11))
            return Label("brigade", ki, start * 1000, (start + dur) * 1000, reporters=nrep,
                         reports=int(rng.integers(50, 501)))
        return make

    def burst(ki: int, start: int) -> Label:
        dur = int(rng.integers(5, 31))
        mult = float(min(200.0, 2.0 * (1.0 - rng.random()) ** (-1.0 / 1.5)))
        return Label("burst", ki, start * 1000, (start + dur) * 1000, mult=mult, shape="step")

    labels = place_labels(rng, keys, round(spikes_per_key_day * scored_key_days), lo, hi, busy, spike)
    if platform:
        labels += place_labels(rng, keys, round(BURSTS_PER_KEY_DAY * scored_key_days), lo, hi,
                               busy, burst)
    labels += place_labels(rng, keys, round(brigades_per_key_day * scored_key_days), lo, hi, busy,
                           brigade(True))
    labels += place_labels(rng, keys, round(brigades_per_key_day / 3 * scored_key_days), lo, hi,
                           busy, brigade(False))

    n_spike = n_brig = 0
    for lab in labels:
        key = keys[lab.key]
        s0, s1 = lab.start_ms // 1000, lab.end_ms // 1000
        if lab.kind in ("spike", "burst"):
            tt = np.arange(s0, s1, dtype=np.float64)
            frac = (tt - s0 + 0.5) / (s1 - s0)
            m = np.full_like(tt, lab.mult)
            if lab.shape == "ramp":
                m = 1.0 + (lab.mult - 1.0) * np.minimum(1.0, frac * 2.0)
            elif lab.shape == "slow":  # a slow ramp: the whole duration to reach its peak
                m = 1.0 + (lab.mult - 1.0) * frac
            extra = (m - 1.0) * key.base / 60.0 * key.cycle(tt)
            counts = rng.poisson(extra)
            n = int(counts.sum())
            t = np.repeat(tt.astype(np.int64), counts) * 1000 + rng.integers(0, 1000, n)
            rep = rng.integers(0, POPULATION, n)  # a crowd: fresh, distinct reporters
            if lab.kind == "spike":
                n_spike += n
        else:
            n = lab.reports
            t = np.sort(rng.integers(lab.start_ms, lab.end_ms, n))
            accounts = rng.integers(0, POPULATION, lab.reporters)
            rep = accounts[rng.integers(0, lab.reporters, n)]
            n_brig += n
        if lab.kind == "burst":
            n_bg += n
        lab.reports = n
        if lab.kind == "spike":
            lab.first_ms = tuple(int(x) for x in np.sort(t)[:8])
        evs.append(t)
        kis.append(np.full(n, lab.key, dtype=np.int32))
        reps.append(rep)
        srcs.append(np.zeros(n, dtype=np.int8))

    ev = np.concatenate(evs)
    ki = np.concatenate(kis)
    rp = np.concatenate(reps)
    sr = np.concatenate(srcs)
    # delivery: a few seconds of jitter; 0.1% are 10..45 s late
    jitter = np.minimum(rng.exponential(1500.0, ev.size), 8000.0).astype(np.int64)
    late = rng.random(ev.size) < 0.001
    jitter[late] = rng.integers(10_000, 45_000, int(late.sum()))
    order = np.argsort(ev + jitter, kind="stable")
    cscore = rng.beta(2.0, 5.0, ev.size).astype(np.float32)
    labels.sort(key=lambda lab: lab.start_ms)
    return Traffic(keys, labels, ev[order], ki[order], rp[order], sr[order], cscore, n_bg, n_spike,
                   n_brig, int(late.sum()))


# ---- detection ---------------------------------------------------------------------------


@dataclass
class Emitted:
    signal: Signal
    clock_ms: int  # the partition's event-time clock when it was emitted


def run_detector(tr: Traffic, cfg: DetectorConfig, partitions: int, chunk: int = 10_000, *,
                 trends: bool = False, warmup_ms: int = 0) -> tuple[list[Emitted], dict[str, Any]]:
    tasks = [StreamTask(cfg, p) for p in range(partitions)]
    trend: TrendTask | None = None
    trend_sigs: list[Signal] = []
    trend_s = 0.0
    if trends:
        trend = TrendTask(cfg, 0)
        trend.expected = partitions
    keys = tr.keys
    part_of = [zlib.crc32(k.stream_id.encode()) % partitions for k in keys]
    # viewer count per key and hour (follows the daily cycle)
    hours = int(tr.ev_ms.max() // 3_600_000) + 2 if tr.ev_ms.size else 1
    hh = np.arange(hours, dtype=np.float64) * 3600 + 1800
    viewers = [[int(v) for v in k.viewers * k.cycle(hh)] for k in keys]
    source_names = ("user", "classifier", "moderator")
    store: dict[tuple[str, ...], Any] = {}
    out: list[Emitted] = []
    detect_s = 0.0
    stored_hits = 0
    n = tr.ev_ms.size
    from tqdm import tqdm

    for c0 in tqdm(range(0, n, chunk), desc="detector", unit="chunk", disable=not sys.stderr.isatty()):
        c1 = min(n, c0 + chunk)
        ev = (tr.ev_ms[c0:c1] + T0_MS).tolist()
        ki = tr.key[c0:c1].tolist()
        rp = tr.reporter[c0:c1].tolist()
        sr = tr.source[c0:c1].tolist()
        cs = tr.cscore[c0:c1].tolist()
        batch = []
        for j in range(c1 - c0):
            k = keys[ki[j]]
            ts = ev[j]
            src = sr[j]
            rep: dict[str, Any] = {
                "report_id": f"r{c0 + j}",
                "stream_id": k.stream_id,
                "category": k.category,
                "source": source_names[src],
                "reporter_id": f"u{rp[j]}" if rp[j] >= 0 else None,
                "region": k.region,
                "viewer_count": viewers[k.idx][(ts - T0_MS) // 3_600_000],
            }
            if src == 1:
                rep["classifier_score"] = round(cs[j], 3)
            batch.append((tasks[part_of[k.idx]], rep, ts, (k.stream_id, k.category)))
        t0 = time.perf_counter()
        for task, rep, ts, key in batch:
            stored = None
            if task.missing(key):
                stored = store.get(key)
                if stored is not None:
                    stored_hits += 1
            sigs = task.process(rep, ts, stored=stored)
            if sigs:
                clock = task.max_event_ms
                out.extend(Emitted(s, clock) for s in sigs)
        for task in tasks:
            store.update(task.detector.take_evicted())
            outbox = task.take_trend_outbox()  # the runner drains it at every checkpoint
            if trend is not None:
                t1 = time.perf_counter()
                trend_sigs.extend(trend.process(outbox, {}))
                trend_s += time.perf_counter() - t1
                detect_s -= time.perf_counter() - t1
        detect_s += time.perf_counter() - t0
    # flush: let every open window close and every spike resolve
    t0 = time.perf_counter()
    end = T0_MS + int(tr.ev_ms.max()) + cfg.grace_ms + cfg.window_ms + (cfg.close_after + 2) * cfg.hop_ms
    for task in tasks:
        out.extend(Emitted(s, end) for s in task.advance(end))
        outbox = task.take_trend_outbox()
        if trend is not None:
            trend_sigs.extend(trend.process(outbox, {}))
    detect_s += time.perf_counter() - t0
    stats = {
        "detector_s": detect_s,
        "reports_per_s": n / detect_s if detect_s else 0.0,
        "late_dropped": sum(t.late for t in tasks),
        "baselines_restored_from_store": stored_hits,
        "keys_in_memory_at_end": sum(len(t.detector.keys) for t in tasks),
    }
    if trend is not None:
        warm_end = T0_MS + warmup_ms
        kinds: dict[str, int] = {}
        for sig in trend_sigs:
            if ms(sig.observed_at) > warm_end:
                kind = sig.kind if ":sev" not in sig.signal_id else "trend raise"
                kinds[kind] = kinds.get(kind, 0) + 1
        stats["trend_signals_after_warmup"] = kinds
        stats["trend_opens_first_10_min"] = sum(
            1 for sig in trend_sigs
            if sig.kind == "trend" and ":sev" not in sig.signal_id
            and warm_end < ms(sig.observed_at) <= warm_end + 600_000)
        stats["trend_s"] = trend_s
    return out, stats


# ---- scoring -----------------------------------------------------------------------------


def ms(dt: datetime) -> int:
    return int(round(dt.timestamp() * 1000))


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    return float(np.percentile(np.array(xs), q))


def bucket(x: float, buckets: list[tuple[float, float, str]]) -> str:
    for lo, hi, name in buckets:
        if lo <= x < hi:
            return name
    return buckets[-1][2]


@dataclass
class Results:
    seed: int
    days: float
    warmup_hours: float
    streams: int
    keys: int
    partitions: int
    config: dict[str, Any]
    reports: int = 0
    background_reports: int = 0
    spike_reports: int = 0
    brigade_reports: int = 0
    generate_s: float = 0.0
    detector_s: float = 0.0
    reports_per_s: float = 0.0
    late_dropped: int = 0
    baselines_restored_from_store: int = 0
    keys_in_memory_at_end: int = 0
    trend_signals_after_warmup: dict[str, int] | None = None  # --trends: informational, unscored
    trend_s: float = 0.0
    scored_key_days: float = 0.0
    spikes: int = 0
    brigades_small: int = 0
    brigades_large: int = 0
    signals: dict[str, int] = field(default_factory=dict)
    openings_scored: int = 0
    true_positive_openings: int = 0
    repeat_openings: int = 0
    precision: float | None = None
    noise_false_alarms: int = 0
    noise_fa_per_key_day: float = 0.0
    noise_fa_per_key_day_upper95: float = 0.0
    noise_fa_by_rate: dict[str, int] = field(default_factory=dict)
    noise_fa_by_noise: dict[str, int] = field(default_factory=dict)
    # a fresh platform's first minutes: false openings (stream keys; trends with --trends)
    false_stream_incidents_first_10_min: int = 0
    trend_opens_first_10_min: int = 0
    bursts: int = 0
    burst_pages: int = 0  # on bursts under EXTREME_BURST: false alarms too
    burst_pages_extreme: int = 0
    # the worst severity each scored opening reached (its raises included), by what it was
    severity_by_outcome: dict[str, dict[str, int]] = field(default_factory=dict)
    # a route paging from SEVn: recall of target spikes and false alarms per key-day then
    pages_by_band: dict[str, dict[str, float | None]] = field(default_factory=dict)
    brigade_pages_small: int = 0
    brigade_pages_large: int = 0
    brigades_paged_small: int = 0
    brigades_paged_large: int = 0
    recall: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # mult -> dur -> [hit, n]
    recall_by_rate: dict[str, list[int]] = field(default_factory=dict)  # target set, by base rate
    recall_by_shape: dict[str, list[int]] = field(default_factory=dict)  # target set
    target_recall: float | None = None
    target_spikes: int = 0
    delay_median_s: float | None = None
    delay_p95_s: float | None = None
    oracle_recall: float | None = None
    oracle_delay_median_s: float | None = None
    oracle_any_recall: float | None = None  # best window length per spike, >= min_reporters
    oracle_any_delay_median_s: float | None = None
    # median time from onset to the k-th injected report of the target spikes (k = 4: the
    # fewest reporters a detector can need and still never page a brigade of 3; k =
    # min_reporters), over all target spikes / over those detected
    arrival_floor_s: dict[str, list[float | None]] = field(default_factory=dict)
    delay_by_shape: dict[str, list[float | None]] = field(default_factory=dict)
    target_spikes_short_of: dict[str, int] = field(default_factory=dict)  # k -> spikes with < k reports
    # detection - arrival of the spike's min_reporters-th report, detected target spikes: the
    # detector's own share of the delay once the surge has brought the reporters it needs
    delay_after_floor_median_s: float | None = None
    delay_after_floor_p95_s: float | None = None
    step_delay_after_floor_median_s: float | None = None  # ... on step spikes only (the target)
    delay_by_rate: dict[str, list[float | None]] = field(default_factory=dict)
    delay_by_mult: dict[str, list[float | None]] = field(default_factory=dict)
    resolved: int = 0
    resolved_before_end: int = 0
    resolve_after_end_median_s: float | None = None
    resolve_after_end_p95_s: float | None = None
    resolve_emitted_after_end_median_s: float | None = None
    unresolved: int = 0
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)


def score(tr: Traffic, emitted: list[Emitted], warmup_ms: int, res: Results) -> None:
    key_of = {(k.stream_id, k.category): k.idx for k in tr.keys}
    by_key: dict[int, list[Label]] = {}
    for lab in tr.labels:
        by_key.setdefault(lab.key, []).append(lab)
    starts = {ki: [lab.start_ms for lab in labs] for ki, labs in by_key.items()}
    by_opening: dict[str, Label] = {}
    kinds: dict[str, int] = {}
    fa_rate: dict[str, int] = {}
    fa_noise: dict[str, int] = {}
    resolves: dict[str, Emitted] = {}
    worst: dict[str, int] = {}  # opening signal id -> best rank over it and its raises
    for e in emitted:
        if e.signal.kind == "spike":
            base = e.signal.signal_id.split(":sev")[0]
            worst[base] = min(worst.get(base, 5), e.signal.severity.rank)
    outcome: dict[str, str] = {}  # scored opening -> true / false / extreme burst / brigade
    opened_on: dict[str, Label] = {}
    for e in emitted:
        s = e.signal
        kinds[s.kind] = kinds.get(s.kind, 0) + 1
        if s.kind == "resolve":
            resolves[s.signal_id] = e
        if s.kind != "spike" or ":sev" in s.signal_id:
            continue
        assert s.window_start is not None and s.window_end is not None
        ws, we = ms(s.window_start) - T0_MS, ms(s.window_end) - T0_MS
        if we <= warmup_ms:
            continue  # warm-up: not scored
        res.openings_scored += 1
        ki = key_of[(s.stream_id or "", s.category.value)]
        hit: Label | None = None
        labs = by_key.get(ki, [])
        # labels of this key that overlap [ws, we)
        i = bisect_right(starts.get(ki, []), we)
        for lab in labs[:i]:
            if lab.start_ms < we and ws < lab.end_ms:
                hit = lab
                break
        first10 = ms(s.observed_at) - T0_MS <= warmup_ms + 600_000
        is_false = hit is None or (hit.kind == "burst" and hit.mult < EXTREME_BURST)
        if is_false:
            res.false_stream_incidents_first_10_min += first10
        outcome[s.signal_id] = ("false" if is_false or hit is None else "extreme burst" if hit.kind == "burst"
                                else "brigade" if hit.kind == "brigade" else "true")
        if hit is not None:
            opened_on[s.signal_id] = hit
        if hit is None:
            res.noise_false_alarms += 1
            k = tr.keys[ki]
            b = bucket(k.base, RATE_BUCKETS)
            fa_rate[b] = fa_rate.get(b, 0) + 1
            nb = "gamma-Poisson" if k.k else "Poisson"
            fa_noise[nb] = fa_noise.get(nb, 0) + 1
            continue
        hit.pages += 1
        if hit.kind == "burst":
            if hit.mult >= EXTREME_BURST:
                res.burst_pages_extreme += 1
            else:
                res.burst_pages += 1
            continue
        if hit.kind == "brigade":
            if hit.reporters <= 3:
                res.brigade_pages_small += 1
            else:
                res.brigade_pages_large += 1
            continue
        res.true_positive_openings += 1
        if hit.detected_ms is None:
            hit.detected_ms = ms(s.observed_at) - T0_MS
            hit.signal_id = s.signal_id
            by_opening[s.signal_id] = hit
        else:
            res.repeat_openings += 1
    res.signals = kinds
    res.noise_fa_by_rate = fa_rate
    res.noise_fa_by_noise = fa_noise
    for sid, lab in by_opening.items():
        r = resolves.get("resolve:" + sid)
        if r is not None:
            lab.resolved_ms = ms(r.signal.observed_at) - T0_MS
            lab.resolved_emit_ms = r.clock_ms - T0_MS

    spikes = [lab for lab in tr.labels if lab.kind == "spike"]
    brig = [lab for lab in tr.labels if lab.kind == "brigade"]
    res.spikes = len(spikes)
    res.brigades_small = sum(1 for b in brig if b.reporters <= 3)
    res.brigades_large = len(brig) - res.brigades_small
    res.brigades_paged_small = sum(1 for b in brig if b.reporters <= 3 and b.pages)
    res.brigades_paged_large = sum(1 for b in brig if b.reporters > 3 and b.pages)
    tp = res.true_positive_openings
    res.precision = tp / res.openings_scored if res.openings_scored else None
    labelled_s = sum(lab.duration_s + 600 for lab in tr.labels)  # not "plain noise"
    noise_key_days = res.scored_key_days - labelled_s / DAY_S
    res.bursts = sum(1 for lab in tr.labels if lab.kind == "burst")
    # a page on a burst that is not extreme is a false alarm like any other
    fas = res.noise_false_alarms + res.burst_pages
    res.noise_fa_per_key_day = fas / noise_key_days
    res.noise_fa_per_key_day_upper95 = poisson_upper95(fas) / noise_key_days
    for sid, what in outcome.items():
        sev = f"SEV{worst.get(sid, 4)}"
        by = res.severity_by_outcome.setdefault(what, {})
        by[sev] = by.get(sev, 0) + 1
    target_ids = {id(lab) for lab in spikes if lab.mult >= 5.0 and lab.duration_s >= 120}
    for band in (4, 3, 2):
        paged = {sid for sid in outcome if worst.get(sid, 4) <= band}
        found = {id(opened_on[sid]) for sid in paged if outcome[sid] == "true"} & target_ids
        false = sum(1 for sid in paged if outcome[sid] == "false")
        res.pages_by_band[f"SEV{band}"] = {
            "target_recall": len(found) / len(target_ids) if target_ids else None,
            "fa_per_100_key_days": 100 * false / noise_key_days,
            "brigade_pages": sum(1 for sid in paged if outcome[sid] == "brigade"
                                 and opened_on[sid].reporters <= 3)}

    recall: dict[str, dict[str, list[int]]] = {m[2]: {d[2]: [0, 0] for d in DUR_BUCKETS}
                                               for m in MULT_BUCKETS}
    for lab in spikes:
        cell = recall[bucket(lab.mult, MULT_BUCKETS)][bucket(lab.duration_s, DUR_BUCKETS)]
        cell[1] += 1
        cell[0] += lab.detected_ms is not None
    res.recall = recall
    target = [lab for lab in spikes if lab.mult >= 5.0 and lab.duration_s >= 120]
    res.target_spikes = len(target)
    hits = [lab for lab in target if lab.detected_ms is not None]
    res.target_recall = len(hits) / len(target) if target else None
    by_rate: dict[str, list[int]] = {b[2]: [0, 0] for b in RATE_BUCKETS}
    by_shape: dict[str, list[int]] = {"step": [0, 0], "ramp": [0, 0], "slow": [0, 0]}
    for lab in target:
        for d, name in ((by_rate, bucket(tr.keys[lab.key].base, RATE_BUCKETS)), (by_shape, lab.shape)):
            d[name][1] += 1
            d[name][0] += lab.detected_ms is not None
    res.recall_by_rate = by_rate
    res.recall_by_shape = by_shape
    delays = [(lab.detected_ms - lab.start_ms) / 1000.0 for lab in hits]  # type: ignore[operator]
    res.delay_median_s = pct(delays, 50)
    res.oracle_recall, res.oracle_delay_median_s = oracle(tr, target)
    res.oracle_any_recall, res.oracle_any_delay_median_s = oracle_any_window(
        tr, target, min_reports=int(res.config.get("min_reporters", 5)))
    res.delay_p95_s = pct(delays, 95)
    for name, groups in (("rate", RATE_BUCKETS), ("mult", MULT_BUCKETS[2:])):
        out: dict[str, list[float | None]] = {}
        for lo, hi, b in groups:
            if name == "rate":
                xs = [(lab.detected_ms - lab.start_ms) / 1000.0 for lab in hits  # type: ignore[operator]
                      if lo <= tr.keys[lab.key].base < hi]
            else:
                xs = [(lab.detected_ms - lab.start_ms) / 1000.0 for lab in hits  # type: ignore[operator]
                      if lo <= lab.mult < hi]
            out[b] = [pct(xs, 50), pct(xs, 95), len(xs)]
        if name == "rate":
            res.delay_by_rate = out
        else:
            res.delay_by_mult = out
    for shape in ("step", "ramp", "slow"):
        xs = [(lab.detected_ms - lab.start_ms) / 1000.0 for lab in hits  # type: ignore[operator]
              if lab.shape == shape]
        res.delay_by_shape[shape] = [pct(xs, 50), pct(xs, 95), len(xs)]
    floors = sorted({4, int(res.config.get("min_reporters", 5))})

    def kth(labs: list[Label], k: int) -> list[float]:
        return [(lab.first_ms[k - 1] - lab.start_ms) / 1000.0 for lab in labs if len(lab.first_ms) >= k]

    for k in floors:
        res.arrival_floor_s[f"{k}th report"] = [pct(kth(target, k), 50), pct(kth(hits, k), 50)]
        res.target_spikes_short_of[str(k)] = sum(1 for lab in target if lab.reports < k)
    k = floors[-1]
    beyond = [(lab.detected_ms - lab.first_ms[k - 1]) / 1000.0 for lab in hits  # type: ignore[operator]
              if len(lab.first_ms) >= k]
    res.delay_after_floor_median_s, res.delay_after_floor_p95_s = pct(beyond, 50), pct(beyond, 95)
    # the issue's delay target: step spikes, from their own k-th distinct reporter
    steps = [(lab.detected_ms - lab.first_ms[k - 1]) / 1000.0 for lab in hits  # type: ignore[operator]
             if len(lab.first_ms) >= k and lab.shape == "step"]
    res.step_delay_after_floor_median_s = pct(steps, 50)

    detected = [lab for lab in spikes if lab.detected_ms is not None]
    after = [(lab.resolved_ms - lab.end_ms) / 1000.0 for lab in detected if lab.resolved_ms is not None]
    emit_after = [(lab.resolved_emit_ms - lab.end_ms) / 1000.0 for lab in detected
                  if lab.resolved_emit_ms is not None]
    res.resolved = len(after)
    res.unresolved = len(detected) - len(after)
    res.resolved_before_end = sum(1 for x in after if x < 0)
    res.resolve_after_end_median_s = pct(after, 50)
    res.resolve_after_end_p95_s = pct(after, 95)
    res.resolve_emitted_after_end_median_s = pct(emit_after, 50)

    res.targets = {
        "recall >= 0.95 on spikes >= 5x lasting >= 2 min": {
            "value": res.target_recall,
            "pass": res.target_recall is not None and res.target_recall >= TARGET_RECALL},
        "<= 1 false alarm per 100 key-days on plain noise": {
            "value": res.noise_fa_per_key_day * 100,
            "pass": res.noise_fa_per_key_day <= TARGET_FA_PER_KEY_DAY},
        "zero pages for brigades of <= 3 reporters": {
            "value": res.brigade_pages_small, "pass": res.brigade_pages_small == 0},
        # (was "10 s after onset", which no brigade-safe detector can meet: the arrival floor)
        "median delay <= 10 s after a step spike's 5th distinct reporter": {
            "value": res.step_delay_after_floor_median_s,
            "pass": res.step_delay_after_floor_median_s is not None
            and res.step_delay_after_floor_median_s <= TARGET_MEDIAN_DELAY_S},
    }


def poisson_sf(c: int, lam: float) -> float:
    """P(X >= c) for X ~ Poisson(lam), summed over the tail (accurate for tiny tails)."""
    if c <= 0:
        return 1.0
    if lam <= 0:
        return 0.0
    term = math.exp(-lam + c * math.log(lam) - math.lgamma(c + 1))
    total, i = 0.0, c
    while term > total * 1e-12 and i < c + 10_000:
        total += term
        i += 1
        term *= lam / i
    return min(1.0, total)


def poisson_threshold(lam: float, p: float) -> int:
    c = max(1, int(lam))
    while poisson_sf(c, lam) > p:
        c += 1
    return c


def oracle(tr: Traffic, spikes: list[Label]) -> tuple[float | None, float | None]:
    """What an idealised detector could achieve on ``spikes``: it knows each key's true
    current noise rate (Poisson), knows when the spike starts (60 s windows aligned to it)
    and allows one false alarm per 100 key-days over 1,440 windows per key-day. Returns the
    expected recall, and the median time for the expected trailing 60 s count to reach the
    threshold (a delay bound for a 60 s count window)."""
    p = TARGET_FA_PER_KEY_DAY / 1440.0
    probs: list[float] = []
    delays: list[float] = []
    for lab in spikes:
        key = tr.keys[lab.key]
        s0, s1 = lab.start_ms // 1000, lab.end_ms // 1000
        tt = np.arange(s0 - 60, s1 + 60, dtype=np.float64)
        noise = key.base / 60.0 * key.cycle(tt)
        m = np.ones_like(tt)
        inside = (tt >= s0) & (tt < s1)
        frac = (tt - s0 + 0.5) / (s1 - s0)
        m[inside] = lab.mult if lab.shape == "step" else (
            1.0 + (lab.mult - 1.0) * np.minimum(1.0, frac[inside] * 2.0))
        rate = noise * m
        c = poisson_threshold(float(noise[60:120].sum()), p)
        miss = 1.0
        for j in range(60, 60 + (s1 - s0), 60):
            miss *= 1.0 - poisson_sf(c, float(rate[j:j + 60].sum()))
        probs.append(1.0 - miss)
        trailing = np.convolve(rate, np.ones(60), mode="full")[:tt.size]  # [tt[i] - 59, tt[i]]
        hit = np.nonzero(trailing[60:] >= c)[0]
        if hit.size:
            delays.append(float(hit[0]) + 1.0)
    recall = float(np.mean(probs)) if probs else None
    return recall, pct(delays, 50)


ORACLE_WINDOWS_S = (10, 20, 30, 60, 120, 300, 600)


def oracle_any_window(tr: Traffic, spikes: list[Label], min_reports: int) -> tuple[float | None, float | None]:
    """A looser bound than ``oracle``: the same idealised detector (true Poisson noise rate,
    known spike start) may count the reports since the start over whichever window length
    suits the key best (``ORACLE_WINDOWS_S``; per length one false alarm per 100 key-days
    over the key-day's windows of that length) and opens only with at least ``min_reports``
    reports (distinct reporters: what keeps brigades out). Returns the expected recall (best
    length per spike) and the median time at which the expected trailing count of some window
    length first reaches that length's threshold (like ``oracle``'s delay, a
    bound on typical, not on every, detection: chance can make one detection earlier)."""
    probs: list[float] = []
    delays: list[float] = []
    for lab in spikes:
        key = tr.keys[lab.key]
        s0, s1 = lab.start_ms // 1000, lab.end_ms // 1000
        tt = np.arange(s0, s0 + max(ORACLE_WINDOWS_S), dtype=np.float64)
        noise = key.base / 60.0 * key.cycle(tt)
        m = np.ones_like(tt)
        inside = tt < s1
        frac = (tt - s0 + 0.5) / (s1 - s0)
        m[inside] = lab.mult if lab.shape == "step" else (
            1.0 + (lab.mult - 1.0) * np.minimum(1.0, frac[inside] * 2.0))
        cum = np.cumsum(noise * m)
        cum_noise = np.cumsum(noise)
        best = 0.0
        thr: list[tuple[int, int]] = []
        for w in ORACLE_WINDOWS_S:
            c = max(min_reports, poisson_threshold(float(cum_noise[w - 1]), TARGET_FA_PER_KEY_DAY * w / DAY_S))
            thr.append((w, c))
            best = max(best, poisson_sf(c, float(cum[w - 1])))
        probs.append(best)
        # delay: the first second t at which, for some window length w, the expected count of
        # the trailing w seconds (noise before the start, spike after it) reaches w's threshold
        firsts = []
        for w, c in thr:
            ts = np.arange(1, max(ORACLE_WINDOWS_S) + 1)
            trailing = cum[ts - 1] - np.where(ts > w, cum[np.maximum(ts - w, 1) - 1], 0.0)
            trailing += noise[0] * np.maximum(0, w - ts)  # the part of the window before the start
            hit = np.nonzero(trailing >= c)[0]
            if hit.size:
                firsts.append(float(hit[0]) + 1.0)
        if firsts:
            delays.append(min(firsts))
    return (float(np.mean(probs)) if probs else None), pct(delays, 50)


def poisson_upper95(k: int) -> float:
    """One-sided 95% upper bound of a Poisson mean given ``k`` events (exact, by bisection)."""
    lo, hi = float(k), float(k) + 10.0 * math.sqrt(k + 1) + 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        cdf = sum(math.exp(-mid + i * math.log(mid) - math.lgamma(i + 1)) for i in range(k + 1))
        lo, hi = (mid, hi) if cdf > 0.05 else (lo, mid)
    return hi


# ---- output ------------------------------------------------------------------------------


def fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def frac(hit: int, n: int) -> str:
    return f"{hit / n:5.2f} ({hit:>3}/{n:<3})" if n else "    -         "


def print_report(r: Results) -> None:
    p = print
    cfg = r.config
    p("Detection-quality benchmark (event time, synthetic labelled traffic)")
    p(f"  seed {r.seed}, {r.days:g} days, {r.streams} streams, {r.keys} keys (stream x category), "
      f"{r.partitions} partitions")
    p(f"  warm-up: the first {r.warmup_hours:g} h are excluded from scoring (baselines learn); "
      f"scored: {r.scored_key_days:.0f} key-days")
    p(f"  reports: {r.reports:,} ({r.background_reports:,} background, {r.spike_reports:,} in "
      f"{r.spikes} spikes, {r.brigade_reports:,} in {r.brigades_small}+{r.brigades_large} brigades); "
      f"late beyond grace: {r.late_dropped:,}")
    p("  config: " + ", ".join(f"{k}={v}" for k, v in cfg.items() if k != "scoring"))
    p("")
    p("Recall of labelled spikes (detected / injected), by multiplier x duration:")
    durs = [d[2] for d in DUR_BUCKETS]
    p(f"  {'mult':<8}" + "".join(f"{d:>18}" for d in durs) + f"{'all':>18}")
    for m, row in r.recall.items():
        tot = [sum(c[0] for c in row.values()), sum(c[1] for c in row.values())]
        p(f"  {m:<8}" + "".join(f"{frac(*row[d]):>18}" for d in durs) + f"{frac(*tot):>18}")
    p("  target set (>= 5x, >= 2 min) by key base rate: "
      + ", ".join(f"{b} {frac(*v).strip()}" for b, v in r.recall_by_rate.items()))
    p(f"  bound for the target set: an oracle knowing every key's true noise rate and each spike's "
      f"start, counting 60 s windows at 1 FA/100 key-days, would detect {fmt(r.oracle_recall, '.2f')}")
    p(f"  looser bound: the same oracle free to pick, per spike, the best count window since its start "
      f"({'/'.join(map(str, ORACLE_WINDOWS_S))} s, each at 1 FA/100 key-days) and needing "
      f">= {cfg.get('min_reporters')} reports: {fmt(r.oracle_any_recall, '.2f')}")
    p("  target set by shape: " + ", ".join(f"{b} {frac(*v).strip()}" for b, v in r.recall_by_shape.items()))
    p("")
    p("Detection delay (observed_at - spike start), spikes >= 5x lasting >= 2 min:")
    p(f"  median {fmt(r.delay_median_s)} s, p95 {fmt(r.delay_p95_s)} s")
    p(f"  bound: the expected trailing-60 s count of that oracle reaches its threshold after a median "
      f"{fmt(r.oracle_delay_median_s)} s")
    p(f"  bound: that oracle counting since the spike's start over any window length, needing >= "
      f"{cfg.get('min_reporters')} reports: expected count reaches its threshold after a median "
      f"{fmt(r.oracle_any_delay_median_s)} s")
    p("  by base rate (median / p95 / n): " + ", ".join(
        f"{b} {fmt(v[0])}/{fmt(v[1])}/{v[2]:.0f}" for b, v in r.delay_by_rate.items()))
    p("  by multiplier (median / p95 / n): " + ", ".join(
        f"{b} {fmt(v[0])}/{fmt(v[1])}/{v[2]:.0f}" for b, v in r.delay_by_mult.items()))
    p("  by shape (median / p95 / n): " + ", ".join(
        f"{b} {fmt(v[0])}/{fmt(v[1])}/{v[2]:.0f}" for b, v in r.delay_by_shape.items()))
    p("  arrival floor: the spike's own k-th report arrives a median (all target spikes / the "
      "detected ones) " + ", ".join(
        f"{k} {fmt(v[0])} / {fmt(v[1])} s" for k, v in r.arrival_floor_s.items())
      + " after onset; no detector needing k distinct reporters opens earlier on the surge alone")
    p("  target spikes that bring fewer than k reports in all: " + ", ".join(
        f"k={k}: {n}/{r.target_spikes}" for k, n in r.target_spikes_short_of.items()))
    p(f"  delay after the spike's own {cfg.get('min_reporters')}th report (the detector's share): median "
      f"{fmt(r.delay_after_floor_median_s)} s, p95 {fmt(r.delay_after_floor_p95_s)} s; step spikes: median "
      f"{fmt(r.step_delay_after_floor_median_s)} s (target <= {TARGET_MEDIAN_DELAY_S:g} s)")
    p("")
    p(f"Pages (opening spike signals after warm-up): {r.openings_scored}; true {r.true_positive_openings} "
      f"(of which {r.repeat_openings} re-opened an already detected spike); precision "
      f"{fmt(r.precision, '.3f')}")
    p(f"  false alarms on plain noise: {r.noise_false_alarms + r.burst_pages} = {r.noise_fa_per_key_day * 100:.2f} per 100 "
      f"key-days (95% upper bound {r.noise_fa_per_key_day_upper95 * 100:.2f})")
    if r.noise_false_alarms:
        p(f"    by base rate: {r.noise_fa_by_rate}; by noise: {r.noise_fa_by_noise}")
    if r.bursts:
        p(f"  heavy-tailed bursts: {r.bursts}; pages on bursts < {EXTREME_BURST:g}x (in the false "
          f"alarms above): {r.burst_pages}; on extreme ones: {r.burst_pages_extreme}")
    p("  worst severity reached, by outcome: " + "; ".join(
        f"{k} {dict(sorted(v.items()))}" for k, v in sorted(r.severity_by_outcome.items())))
    p("  a route paging from SEVn (high_urgency_from; lower severities recorded, not paged): " + "; ".join(
        f"{b}: recall {fmt(v['target_recall'], '.3f')}, FA {fmt(v['fa_per_100_key_days'], '.2f')}/100 "
        f"key-days, small-brigade pages {v['brigade_pages']}" for b, v in r.pages_by_band.items()))
    p(f"  first 10 minutes after warm-up: {r.false_stream_incidents_first_10_min} false stream "
      f"openings" + (f", {r.trend_opens_first_10_min} trend openings"
                     if r.trend_signals_after_warmup is not None else ""))
    p(f"  brigade pages, <= 3 reporters: {r.brigade_pages_small} "
      f"({r.brigades_paged_small}/{r.brigades_small} brigades paged)")
    p(f"  brigade pages, 5-10 reporters (informational): {r.brigade_pages_large} "
      f"({r.brigades_paged_large}/{r.brigades_large} brigades paged)")
    p(f"  signals by kind: {r.signals}")
    p("")
    p(f"Resolution of detected spikes: {r.resolved} resolved, {r.unresolved} never resolved, "
      f"{r.resolved_before_end} resolved before the spike ended")
    p(f"  resolve window end - spike end: median {fmt(r.resolve_after_end_median_s)} s, "
      f"p95 {fmt(r.resolve_after_end_p95_s)} s; emitted (partition clock) - spike end: "
      f"median {fmt(r.resolve_emitted_after_end_median_s)} s")
    if r.trend_signals_after_warmup is not None:
        p(f"  platform trend stage (--trends, unscored): signals after warm-up {r.trend_signals_after_warmup}, "
          f"{r.trend_s:.1f} s")
    p("")
    p(f"Runtime: generate {r.generate_s:.1f} s; detector {r.detector_s:.1f} s for {r.reports:,} reports "
      f"= {r.reports_per_s:,.0f} reports/s (StreamTask.process + outbox drain, one core)")
    p("")
    p("Targets:")
    for name, t in r.targets.items():
        v = t["value"]
        p(f"  [{'PASS' if t['pass'] else 'FAIL'}] {name}: {fmt(v, '.3f') if isinstance(v, float) else v}")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    types = {f.name: type(getattr(DetectorConfig(), f.name)) for f in fields(DetectorConfig)}
    out: dict[str, Any] = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in types or name == "scoring":
            raise SystemExit(f"--set: no DetectorConfig field {name!r}")
        if types[name] is tuple:  # e.g. scan_windows_s=20,300 (empty: none)
            out[name] = tuple(int(float(v)) for v in value.split(",") if v.strip())
        else:
            out[name] = types[name](float(value)) if types[name] is int else types[name](value)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.detection", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--days", type=float, default=2.0)
    ap.add_argument("--streams", "--keys", type=int, default=300, dest="streams",
                    help="streams (each has 1-4 categories = keys)")
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--warmup-hours", type=float, default=None,
                    help="excluded from scoring (default 24 h, or half the run if shorter)")
    ap.add_argument("--spikes-per-key-day", type=float, default=0.8)
    ap.add_argument("--brigades-per-key-day", type=float, default=0.3,
                    help="brigades of 1-3 reporters; a third as many of 5-10 reporters")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a DetectorConfig field for this run (repeatable)")
    ap.add_argument("--trends", action="store_true",
                    help="also run the platform trend stage on the outboxes (informational: its "
                         "signals are counted, not scored)")
    ap.add_argument("--world", choices=("bench", "platform"), default="bench",
                    help="bench: the original key-level generator; platform: Zipf popularity, "
                         "reports in proportion to viewers, over-dispersion up to 2, weekly "
                         "cycle, heavy-tailed bursts, slow ramps")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args(argv)
    warm_h = args.warmup_hours if args.warmup_hours is not None else min(24.0, args.days * 12.0)
    warmup_s = int(warm_h * 3600)

    cfg = DetectorConfig(**parse_overrides(args.set))
    conf = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name != "scoring"}
    t0 = time.perf_counter()
    tr = generate(args.seed, args.streams, args.days, warmup_s, args.spikes_per_key_day,
                  args.brigades_per_key_day, args.world)
    gen_s = time.perf_counter() - t0
    res = Results(seed=args.seed, days=args.days, warmup_hours=warm_h, streams=args.streams,
                  keys=len(tr.keys), partitions=args.partitions, config=conf)
    res.reports = int(tr.ev_ms.size)
    res.background_reports, res.spike_reports, res.brigade_reports = (
        tr.background, tr.spike_reports, tr.brigade_reports)
    res.generate_s = gen_s
    res.scored_key_days = len(tr.keys) * (args.days * DAY_S - warmup_s) / DAY_S
    emitted, stats = run_detector(tr, cfg, args.partitions, trends=args.trends,
                                  warmup_ms=warmup_s * 1000)
    for k, v in stats.items():
        setattr(res, k, v)
    score(tr, emitted, warmup_s * 1000, res)
    if args.json:
        print(json.dumps(asdict(res), indent=2, default=str))
    else:
        print_report(res)
    return 0 if all(t["pass"] for t in res.targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
