"""Memory benchmark: a million distinct streams over a day through the per-stream triage task.

Most streams on a live platform are short and get reported once or twice. A detector that
kept every key it ever saw would grow without bound; ``KeyedDetector`` evicts a key once it
has been idle for ``idle_evict_s`` (its baseline handed out for the store, which in
production is Postgres, with a TTL). This benchmark feeds one ``StreamTask`` (one partition)
with ``--streams`` distinct one-off streams spread evenly over ``--hours`` of event time
(each gets 1..6 reports within a couple of minutes, from distinct reporters, some with 2
categories) plus ``--steady`` long-lived streams reporting all day, and samples, every
simulated hour, the keys held, the evicted baselines handed out (counted, then dropped as
the runner drops them once written) and the process RSS.

Baseline, measured in the same run: the same traffic with eviction switched off
(``idle_evict_s`` beyond the run), for the first ``--baseline-hours`` only (without eviction
every hop walks every key ever seen, so a full day would take hours). Each mode runs in its
own child process, so the RSS figures are its own.

Pass: with eviction, keys held and RSS over the second half of the day stay within 5% of
their values at mid-day (flat), while the baseline's keys grow with the streams seen.

    python -m bench.memory [--streams 1000000] [--hours 24] [--baseline-hours 1] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench.progress import Progress
from services.triage.detector import DetectorConfig
from services.triage.streams import StreamTask

T0_MS = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp() * 1000)
HOUR_MS = 3_600_000
CATEGORIES = ("spam", "harassment", "hate", "nudity", "violence", "other")


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


@dataclass
class Sample:
    hour: float
    streams_seen: int
    reports: int
    keys_held: int
    evicted_total: int
    rss_mb: float
    detector_s: float  # time in StreamTask so far (the traffic generator excluded)


@dataclass
class Run:
    mode: str
    hours: float
    samples: list[Sample] = field(default_factory=list)
    reports_per_s: float = 0.0  # through StreamTask.process and the drains, generation excluded


def traffic(seed: int, streams: int, steady: int, hours: float) -> Any:
    """Yield (event ms, report) in event-time order, one simulated second at a time."""
    rng = random.Random(seed)
    horizon_s = int(hours * 3600)
    per_s = streams / horizon_s
    pending: dict[int, list[tuple[int, dict[str, Any]]]] = {}  # second -> reports due then
    made = 0
    rid = 0
    acc = 0.0
    for sec in range(horizon_s):
        acc += per_s
        while acc >= 1.0 and made < streams:
            acc -= 1.0
            sid = f"s{made:07d}"
            made += 1
            cats = (rng.choice(CATEGORIES),) if rng.random() < 0.8 else tuple(rng.sample(CATEGORIES, 2))
            for cat in cats:
                for _ in range(rng.randint(1, 6)):
                    at = sec + rng.randint(0, 120)
                    rid += 1
                    pending.setdefault(at, []).append((rng.randint(0, 999), {
                        "report_id": f"r{rid}", "stream_id": sid, "category": cat, "source": "user",
                        "reporter_id": f"u{rng.randrange(50_000_000)}", "region": "US",
                        "viewer_count": rng.randint(10, 5000)}))
        for i in range(steady):  # long-lived streams: about 2 reports a minute each
            if rng.random() < 2 / 60:
                rid += 1
                pending.setdefault(sec, []).append((rng.randint(0, 999), {
                    "report_id": f"r{rid}", "stream_id": f"steady{i:04d}", "category": "spam",
                    "source": "user", "reporter_id": f"u{rng.randrange(50_000_000)}", "region": "US",
                    "viewer_count": 1000}))
        for ms, rep in sorted(pending.pop(sec, ()), key=lambda x: x[0]):
            yield T0_MS + sec * 1000 + ms, made, rep


def run_mode(mode: str, seed: int, streams: int, steady: int, hours: float, run_hours: float,
             quiet: bool) -> Run:
    gc.freeze()  # as the streaming services do (livetriage.runtime)
    gc.set_threshold(50_000, 10, 10)
    cfg = DetectorConfig() if mode == "evict" else DetectorConfig(idle_evict_s=10**9)
    task = StreamTask(cfg, 0)
    run = Run(mode, run_hours)
    evicted = reports = 0
    next_sample = T0_MS
    busy = 0.0
    clock = time.perf_counter
    end_ms = T0_MS + int(run_hours * HOUR_MS)
    with Progress(f"{mode}", run_hours, unit="h", quiet=quiet) as bar:
        for ts, seen, rep in traffic(seed, streams, steady, hours):
            if ts >= end_ms:
                break
            if ts >= next_sample:
                evicted += len(task.detector.take_evicted())  # written to the store, then dropped
                task.take_trend_outbox()  # published to the repartition topic
                run.samples.append(Sample((ts - T0_MS) / HOUR_MS, seen, reports,
                                          len(task.detector.keys), evicted, rss_mb(), busy))
                bar.update((ts - T0_MS) / HOUR_MS, keys=len(task.detector.keys))
                next_sample += HOUR_MS // 4
            t0 = clock()
            task.process(rep, ts)
            reports += 1
            if reports % 20_000 == 0:  # the runner drains these at every checkpoint
                evicted += len(task.detector.take_evicted())
                task.take_trend_outbox()
            busy += clock() - t0
    evicted += len(task.detector.take_evicted())
    run.samples.append(Sample(run_hours, seen, reports, len(task.detector.keys), evicted, rss_mb(), busy))
    run.reports_per_s = reports / busy if busy else 0.0
    return run


def _child(q: Any, args: tuple[Any, ...]) -> None:
    q.put(asdict(run_mode(*args)))


def in_child(*args: Any) -> Run:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q, args))
    p.start()
    d = q.get()
    p.join()
    run = Run(d["mode"], d["hours"], [Sample(**s) for s in d["samples"]], d["reports_per_s"])
    return run


def at(run: Run, hour: float) -> Sample:
    return min(run.samples, key=lambda s: abs(s.hour - hour))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, default=1_000_000)
    ap.add_argument("--steady", type=int, default=500)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--baseline-hours", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    quiet = args.json
    evict = in_child("evict", args.seed, args.streams, args.steady, args.hours, args.hours, quiet)
    base = in_child("no-evict", args.seed, args.streams, args.steady, args.hours,
                    min(args.hours, args.baseline_hours), quiet)
    mid, last = at(evict, args.hours / 2), evict.samples[-1]
    keys_flat = last.keys_held <= 1.05 * max(1, mid.keys_held)
    rss_flat = last.rss_mb <= 1.05 * mid.rss_mb
    b0, b1 = base.samples[0], base.samples[-1]
    grows = b1.keys_held >= 0.9 * b1.streams_seen
    ok = keys_flat and rss_flat and grows
    if args.json:
        print(json.dumps({"evict": asdict(evict), "no_evict": asdict(base), "pass": ok}, indent=2))
        return 0 if ok else 1
    p = print
    p(f"Memory: {args.streams:,} distinct one-off streams + {args.steady} steady ones over "
      f"{args.hours:g} h of event time, one StreamTask (defaults: idle_evict_s="
      f"{DetectorConfig().idle_evict_s})")
    p("")
    p(f"  {'hour':>5} {'streams seen':>13} {'reports':>11} {'keys held':>10} {'evicted':>10} {'RSS MB':>8}")
    step = max(1, len(evict.samples) // 12)
    for s in evict.samples[::step] + ([last] if evict.samples[::step][-1] is not last else []):
        p(f"  {s.hour:5.1f} {s.streams_seen:>13,} {s.reports:>11,} {s.keys_held:>10,} "
          f"{s.evicted_total:>10,} {s.rss_mb:8.1f}")
    p(f"  with eviction: {evict.reports_per_s:,.0f} reports/s")
    p("")
    p(f"Baseline, same traffic without eviction, first {base.hours:g} h: keys held "
      f"{b0.keys_held:,} -> {b1.keys_held:,} ({b1.streams_seen:,} streams seen), RSS "
      f"{b0.rss_mb:.1f} -> {b1.rss_mb:.1f} MB; {base.reports_per_s:,.0f} reports/s")
    e1 = at(evict, base.hours)
    p(f"  with eviction at the same hour: keys held {e1.keys_held:,}, RSS {e1.rss_mb:.1f} MB")
    per_key = (b1.rss_mb - b0.rss_mb) * 1e6 / max(1, b1.keys_held - b0.keys_held)
    p(f"  without eviction each key costs ~{per_key:,.0f} bytes: a day's {last.streams_seen:,} streams "
      f"would hold ~{per_key * last.streams_seen * 1.2 / 1e6:,.0f} MB (x1.2: 20% have two categories)")
    p("")
    p(f"[{'PASS' if keys_flat else 'FAIL'}] keys held flat over the second half: {mid.keys_held:,} at "
      f"{mid.hour:g} h, {last.keys_held:,} at the end")
    p(f"[{'PASS' if rss_flat else 'FAIL'}] RSS flat over the second half: {mid.rss_mb:.1f} MB -> "
      f"{last.rss_mb:.1f} MB")
    p(f"[{'PASS' if grows else 'FAIL'}] the baseline's keys grow with the streams seen (the comparison "
      "is meaningful)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
