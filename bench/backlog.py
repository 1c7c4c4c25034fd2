"""Backlog benchmark: does a pipeline catching up on days of reports decide what it would
have decided live?

Input: ``--hours`` of event time (default 48) on ``--keys`` streams (default 3000) with Zipf
popularity, a daily cycle (sinusoidal ±60%; the input starts at 18:00 of its day, peaks at
20:00 and bottoms out at 08:00) and ``--surges``
stream spikes (a burst of reports on one stream from many distinct reporters for a few
minutes), ~1% client retries and ~0.2% malformed records; generated deterministically from
``--seed`` (only the absolute timestamps move with the wall clock: the input ends two
minutes before the benchmark started, as ingest rejects reports older than its dedup horizon).

Phase A, backlog: a fresh tansu broker and scratch database, migrated; every report published
first; then ``livetriage ingest``, ``livetriage triage`` and ``livetriage notifier`` start as
separate processes (configured by environment, as in production), with a routing file
pointing PagerDuty, Slack and webhook channels at a receiver in this process; watched until
drained: every consumer group's committed offsets at its topic's end offsets (a few records
of slack: tansu's end offsets can trail), the stages' counters agreeing, no page pending, and
incidents and pages unchanged for a few seconds.

Phase B, slow: the same input into a fresh broker and database, published in event-time order
in chunks of ``--chunk-s`` event seconds while the services run, each chunk drained before
the next (the event times stay the recorded ones).

Then incidents (by dedup_key and kind) and pages (receiver requests by channel, incident
dedup_key and page kind) of A and B must be identical: the diff is printed and the exit code
is 1 if they differ or a phase did not drain (the throughput targets are printed, not enforced).

    python -m bench.backlog [--hours 48 --keys 3000 --rate 10] [--quick] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import logging
import math
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import orjson

from bench.pipeline import bench_settings, prepare, throwaway_database
from bench.procs import (
    Offsets, Receiver, Samples, Services, by_label, fmt_mb, loop_lag_metrics, routing_yaml,
    instances, of_role, running_receiver, running_services, total,
)
from bench.progress import Progress
from livetriage.embedded import embedded_broker, free_port
from livetriage.simulate import ReportFactory
from shared.kafka import open_producer
from shared.settings import Settings

log = logging.getLogger("bench.backlog")

TARGET_RPS = 20_000.0
POLL_S = 0.25
QUIET_S = 3.0  # incidents and pages unchanged this long, everything else drained: done
STALL_S = 10.0  # a stage with work waiting and no progress this long has stalled
OFFSET_SLACK = 12  # records per topic the committed offsets may trail tansu's end offsets
DAY_S = 86_400.0
PEAK_HOUR = 20.0  # of the input's own day, which begins at START_HOUR (not the wall clock)
START_HOUR = 18.0
DAILY_AMPLITUDE = 0.6


# ---- input ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Surge:
    stream_id: str
    category: str
    start_s: float
    duration_s: float
    rate: float  # extra reports/s


@dataclass
class Traffic:
    """A deterministic, re-playable input: ``records()`` yields the same bytes every time."""

    hours: float
    keys: int
    rate: float
    seed: int
    end: datetime
    surges: list[Surge]
    duplicate_ratio: float = 0.01
    malformed_ratio: float = 0.002
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def span_s(self) -> float:
        return self.hours * 3600.0

    @property
    def start(self) -> datetime:
        return self.end - timedelta(seconds=self.span_s)

    def records(self) -> Iterator[tuple[float, bytes, bytes]]:
        """(event offset s, key, value) in event-time order, minute by minute."""
        factory = ReportFactory(streams=self.keys, seed=self.seed)
        rng = factory.rng
        cum: list[float] = []
        acc = 0.0
        for w in factory.weights:
            acc += w
            cum.append(acc)
        streams = factory.streams
        start = self.start
        start_tod_h = START_HOUR  # the cycle's phase is fixed: the same counts whenever it runs
        counts: Counter[str] = Counter()
        previous: tuple[bytes, bytes] | None = None
        minutes = math.ceil(self.span_s / 60)
        for m in range(minutes):
            t0 = m * 60.0
            width = min(60.0, self.span_s - t0)
            tod_h = (start_tod_h + (t0 + width / 2) / 3600) % 24
            lam = self.rate * width * (1 + DAILY_AMPLITUDE * math.cos(2 * math.pi * (tod_h - PEAK_HOUR) / 24))
            n = max(0, round(rng.gauss(lam, math.sqrt(lam)))) if lam > 0 else 0
            events: list[tuple[float, str | None, str | None]] = [
                (t0 + rng.random() * width, streams[bisect.bisect_left(cum, rng.random() * acc)], None)
                for _ in range(n)
            ]
            for s in self.surges:
                lo, hi = max(t0, s.start_s), min(t0 + width, s.start_s + s.duration_s)
                if hi > lo:
                    k = round(rng.gauss(s.rate * (hi - lo), math.sqrt(s.rate * (hi - lo))))
                    events += [(lo + rng.random() * (hi - lo), s.stream_id, s.category) for _ in range(max(0, k))]
            events.sort(key=lambda e: e[0])
            for t, stream, cat in events:
                if rng.random() < self.malformed_ratio:
                    counts["malformed"] += 1
                    yield t, b"garbage", factory.malformed()
                    continue
                if previous is not None and rng.random() < self.duplicate_ratio:
                    counts["duplicates"] += 1
                    yield (t, *previous)
                    continue
                rep = factory.report(start + timedelta(seconds=t), stream, cat)
                if cat is not None:
                    counts["surge"] += 1
                counts["reports"] += 1
                previous = (rep["stream_id"].encode(), orjson.dumps(rep))
                yield (t, *previous)
        self.counts = counts


def make_traffic(hours: float, keys: int, rate: float, n_surges: int, seed: int, end: datetime) -> Traffic:
    import random

    rng = random.Random(seed * 7919 + 1)
    span = hours * 3600
    cats = ["violence", "hate", "harassment", "nudity", "self_harm", "dangerous_acts"]
    surges = []
    for _ in range(n_surges):
        rank = rng.randrange(min(10, keys - 1), max(11, keys // 2))
        surges.append(Surge(
            stream_id=f"stream-{rank:06d}", category=rng.choice(cats),
            start_s=rng.uniform(0.3, 0.9) * span, duration_s=rng.uniform(120, 420), rate=rng.uniform(0.5, 3.0),
        ))
    surges.sort(key=lambda s: s.start_s)
    return Traffic(hours=hours, keys=keys, rate=rate, seed=seed, end=end, surges=surges)


# ---- watching the pipeline -----------------------------------------------------------------


@dataclass
class Point:
    t: float
    ingest: float
    published: float
    triage: float
    trends: float
    signals: float
    notified: float


@dataclass
class PhaseResult:
    name: str
    sent: int = 0
    publish_s: float = 0.0
    drained: bool = False
    wall_s: float = 0.0
    ingest_rps: float = 0.0
    triage_rps: float = 0.0
    e2e_rps: float = 0.0
    ingest_s: float = 0.0
    triage_s: float = 0.0
    longest_pause: dict[str, float] = field(default_factory=dict)
    pause_at: dict[str, float] = field(default_factory=dict)  # s after ingest's first report
    peak_rss_kb: dict[str, int] = field(default_factory=dict)
    loop_lag: dict[str, dict[str, float]] = field(default_factory=dict)
    checkpoints: dict[str, float] = field(default_factory=dict)
    rewinds: dict[str, float] = field(default_factory=dict)
    late: dict[str, float] = field(default_factory=dict)
    signals: dict[str, float] = field(default_factory=dict)
    duplicates: float = 0.0
    dlq: float = 0.0
    published: float = 0.0
    residual_lag: dict[str, int] = field(default_factory=dict)
    incidents: Counter[tuple[str, str]] = field(default_factory=Counter)
    incident_states: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    pages: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    unmatched_pages: int = 0
    notifications: dict[str, int] = field(default_factory=dict)
    chunks: int = 0
    slowest_chunk_s: float = 0.0
    problem: str = ""


def point(samples: dict[str, Samples]) -> Point:
    i, t, n = of_role(samples, "ingest"), of_role(samples, "triage"), of_role(samples, "notifier")
    return Point(
        t=time.monotonic(),
        ingest=total(i, "livetriage_ingest_reports_consumed_total"),
        published=total(i, "livetriage_ingest_reports_published_total"),
        triage=total(t, "livetriage_triage_records_consumed_total", stage="streams"),
        trends=total(t, "livetriage_triage_records_consumed_total", stage="trends"),
        signals=total(t, "livetriage_triage_signals_total"),
        notified=total(n, "livetriage_notifier_signals_consumed_total"),
    )


class Watch:
    """Polls the services' metrics, keeps the series and answers "is it drained?"."""

    def __init__(self, services: Services, settings: Settings, offsets: Offsets, db_url: str,
                 receiver: Receiver) -> None:
        self.services, self.s, self.offsets, self.db_url, self.receiver = services, settings, offsets, db_url, receiver
        self.points: list[Point] = []
        self._stable_since: float | None = None
        self._last_state: tuple[int, ...] | None = None
        self._last_db = 0.0
        self.residual: dict[str, int] = {}

    async def sample(self) -> Point:
        p = point(await self.services.scrape_all())
        self.points.append(p)
        return p

    def counters_caught_up(self, p: Point, sent: int) -> bool:
        return p.ingest >= sent and p.triage >= p.published and p.notified >= p.signals

    async def drained(self, p: Point, sent: int, conn: asyncpg.Connection) -> bool:
        """Everything consumed and committed, nothing pending, output unchanged for QUIET_S."""
        if not self.counters_caught_up(p, sent):
            self._stable_since = None
            return False
        now = time.monotonic()
        if now - self._last_db < 1.0:
            return False
        self._last_db = now
        s = self.s
        lags = {}
        for group, topic in ((s.ingest_group, s.reports_topic), (s.triage_group, s.clean_topic),
                             (s.trend_group, s.trends_topic), (s.notifier_group, s.signals_topic)):
            lags[topic], _ = await self.offsets.lag(group, topic)
        self.residual = lags
        incidents = await conn.fetchval("SELECT count(*) FROM incidents")
        notes = await conn.fetchval("SELECT count(*) FROM notifications")
        pending = await conn.fetchval("SELECT count(*) FROM notifications WHERE status = 'pending'")
        state = (int(p.ingest), int(p.triage), int(p.trends), int(p.notified), incidents, notes,
                 len(self.receiver.requests))
        if state != self._last_state or pending or any(v > OFFSET_SLACK for v in lags.values()):
            self._last_state = state
            self._stable_since = now
            return False
        return self._stable_since is not None and now - self._stable_since >= QUIET_S

    def figures(self, res: PhaseResult, sent: int) -> None:
        """Rates per stage from the counters over time; the longest pause with work waiting."""
        pts = self.points
        if not pts:
            return

        def first_when(cond) -> Point | None:  # type: ignore[no-untyped-def]
            return next((q for q in pts if cond(q)), None)

        final = pts[-1]
        i0 = first_when(lambda q: q.ingest > 0)
        i1 = first_when(lambda q: q.ingest >= sent)
        t0 = first_when(lambda q: q.triage > 0)
        t1 = first_when(lambda q: q.triage >= final.published and q.ingest >= sent)
        e1 = first_when(lambda q: q.triage >= final.published and q.ingest >= sent and q.notified >= q.signals)
        half = POLL_S / 2  # a counter first seen non-zero moved somewhere in the poll before
        if i0 and i1:
            res.ingest_s = i1.t - i0.t + half
            res.ingest_rps = sent / res.ingest_s
        if t0 and t1:
            res.triage_s = t1.t - t0.t + half
            res.triage_rps = final.published / res.triage_s
        if i0 and e1:
            res.e2e_rps = sent / (e1.t - i0.t + half)
        for stage, done, todo in (("ingest", lambda q: q.ingest, lambda q: sent),
                                  ("triage", lambda q: q.triage, lambda q: q.published)):
            longest, at, since, last = 0.0, 0.0, None, None
            for q in pts:
                # from the stage's first report on: joining the group at start is no stall
                waiting = done(q) > 0 and (done(q) < todo(q) or (stage == "triage" and q.ingest < sent))
                if last is None or done(q) != last or not waiting:
                    since = q.t
                    last = done(q)
                elif since is not None and q.t - since > longest:
                    longest, at = q.t - since, since - (i0.t if i0 else pts[0].t)
            res.longest_pause[stage] = longest
            res.pause_at[stage] = at


async def collect(res: PhaseResult, db_url: str, receiver: Receiver, services: Services) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch("SELECT id, dedup_key, kind, status, severity FROM incidents")
        note_rows = await conn.fetch("SELECT status, count(*) AS n FROM notifications GROUP BY status")
    finally:
        await conn.close()
    ids = {str(r["id"]): r["dedup_key"] for r in rows}
    res.incidents = Counter((r["dedup_key"], r["kind"]) for r in rows)
    res.incident_states = Counter((r["dedup_key"], r["kind"], r["status"], r["severity"]) for r in rows)
    res.notifications = {r["status"]: int(r["n"]) for r in note_rows}
    for req in receiver.requests:
        # Idempotency-Key: "<incident_id>:<event>:<kind>:<channel>"
        inc_id, rest = req.key[:36], req.key[37:]
        parts = rest.rsplit(":", 2)
        dedup = ids.get(inc_id)
        if dedup is None or len(parts) != 3:
            res.unmatched_pages += 1
            continue
        res.pages[(req.path.strip("/"), dedup, parts[1])] += 1
    last = services.last
    t = of_role(last, "triage")
    res.checkpoints = by_label(t, "livetriage_triage_checkpoint_seconds_count", "stage")
    res.rewinds = by_label(t, "livetriage_triage_rewinds_total", "stage")
    res.late = by_label(t, "livetriage_triage_reports_late_total", "stage")
    res.signals = by_label(t, "livetriage_triage_signals_total", "kind")
    i = last.get("ingest", {})
    res.duplicates = total(i, "livetriage_ingest_duplicates_total")
    res.dlq = total(i, "livetriage_ingest_dlq_total")
    res.published = total(i, "livetriage_ingest_reports_published_total")
    for role, samples in last.items():
        lag = loop_lag_metrics(samples)
        if lag:
            res.loop_lag[role] = lag


async def publish(settings: Settings, records: Iterator[tuple[float, bytes, bytes]], bar: Progress | None,
                  done: int = 0) -> int:
    n = 0
    async with open_producer(settings) as producer:
        pending = []
        for _, key, value in records:
            pending.append(await producer.send(settings.reports_topic, value, key=key))
            n += 1
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
                if bar is not None:
                    bar.update(done + n)
        await asyncio.gather(*pending)
    return n


def chunked(records: Iterator[tuple[float, bytes, bytes]], chunk_s: float) -> Iterator[list[tuple[float, bytes, bytes]]]:
    chunk: list[tuple[float, bytes, bytes]] = []
    boundary = chunk_s
    for rec in records:
        if rec[0] >= boundary:
            if chunk:
                yield chunk
            chunk = []
            boundary = (rec[0] // chunk_s + 1) * chunk_s
        chunk.append(rec)
    if chunk:
        yield chunk


async def run_phase(name: str, traffic: Traffic, args: argparse.Namespace, expected: int | None) -> PhaseResult:
    res = PhaseResult(name)
    say = lambda msg: print(f"[{name}] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    started = time.monotonic()
    deadline = started + args.timeout
    async with AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"livetriage-backlog-{name}-")))
        bootstrap = await stack.enter_async_context(embedded_broker(tmp, free_port()))
        db_url = await stack.enter_async_context(throwaway_database())
        settings = bench_settings(bootstrap, db_url)
        await prepare(settings)
        receiver = await stack.enter_async_context(running_receiver())
        routing = tmp / "routing.yaml"
        routing.write_text(routing_yaml(receiver))
        offsets = await stack.enter_async_context(Offsets(bootstrap))
        extra = dict(routing_file=routing, dedup_ttl_hours=traffic.hours + 24, log_level="WARNING",
                     idle_flush_s=args.idle_flush_s)
        say(f"broker {bootstrap}, database {db_url.rsplit('/', 1)[1]}")

        if name == "backlog":
            t = time.perf_counter()
            with Progress("publish", expected) as bar:
                res.sent = await publish(settings, traffic.records(), bar)
            res.publish_s = time.perf_counter() - t
            say(f"published {res.sent:,} records in {res.publish_s:.1f}s; starting services")

        roles = ["ingest", *instances("triage", args.triage_instances), "notifier"]
        services = await stack.enter_async_context(running_services(settings, roles, tmp, **extra))
        conn = await asyncpg.connect(db_url)
        stack.push_async_callback(conn.close)
        watch = Watch(services, settings, offsets, db_url, receiver)
        try:
            if name == "slow":
                with Progress("slow feed", expected) as bar:
                    for chunk in chunked(traffic.records(), args.chunk_s):
                        res.sent += await publish(settings, iter(chunk), None)
                        res.chunks += 1
                        c0 = time.monotonic()
                        while True:
                            p = await watch.sample()
                            if watch.counters_caught_up(p, res.sent):
                                break
                            if time.monotonic() > deadline:
                                raise TimeoutError(f"chunk {res.chunks} not drained: {p}")
                            await asyncio.sleep(POLL_S / 2)  # polling metrics, with a deadline
                        res.slowest_chunk_s = max(res.slowest_chunk_s, time.monotonic() - c0)
                        bar.update(res.sent, chunk=res.chunks)
            with Progress("drain", res.sent) as bar:
                while True:
                    p = await watch.sample()
                    if await watch.drained(p, res.sent, conn):
                        res.drained = True
                        break
                    if time.monotonic() > deadline:
                        res.problem = f"not drained in {args.timeout:.0f}s: {p} lag {watch.residual}"
                        break
                    bar.update(p.ingest, triage=f"{p.triage:,.0f}/{p.published:,.0f}",
                               notifier=f"{p.notified:,.0f}/{p.signals:,.0f}")
                    await asyncio.sleep(POLL_S)  # polling metrics, with a deadline
        except (RuntimeError, TimeoutError) as exc:
            res.problem = str(exc)
            for svc in services.by_role.values():
                say(f"--- {svc.role} log tail ---\n{svc.tail()}")
        res.wall_s = time.monotonic() - started
        res.residual_lag = watch.residual
        watch.figures(res, res.sent)
        await collect(res, db_url, receiver, services)
        for svc in services.by_role.values():
            svc.read_rss()
    for role, svc in services.by_role.items():
        res.peak_rss_kb[role] = svc.peak_rss_kb
    return res


# ---- output --------------------------------------------------------------------------------


def phase_table(r: PhaseResult) -> str:
    def per(d: dict[str, float]) -> str:
        return ", ".join(f"{k} {v:,.0f}" for k, v in sorted(d.items())) or "0"

    rows = [
        ("records sent", f"{r.sent:,}" + (f"  (published first in {r.publish_s:.1f}s)" if r.publish_s else
                                          f"  ({r.chunks} chunks, slowest drained in {r.slowest_chunk_s:.1f}s)")),
        ("drained", ("yes" if r.drained else f"NO: {r.problem}") + f"  (wall {r.wall_s:.1f}s, residual lag {r.residual_lag})"),
        ("ingest", f"{r.ingest_rps:,.0f} reports/s  ({r.ingest_s:.1f}s)" + ("  (paced by the feed)" if r.chunks else "")),
        ("triage (streams)", f"{r.triage_rps:,.0f} reports/s  ({r.triage_s:.1f}s, {r.published:,.0f} clean reports)"),
        ("end to end", f"{r.e2e_rps:,.0f} reports/s"),
        ("longest pause with work waiting", ", ".join(
            f"{k} {v:.1f} s (from +{r.pause_at.get(k, 0):.1f} s)" for k, v in r.longest_pause.items())),
        ("event-loop lag (worst)", ", ".join(f"{k} {v['worst_s']:.2f} s" for k, v in r.loop_lag.items())
         or "not exposed by the services"),
        ("peak RSS (VmHWM)", ", ".join(f"{k} {fmt_mb(v)}" for k, v in r.peak_rss_kb.items())),
        ("triage checkpoints", per(r.checkpoints)),
        ("triage rewinds", per(r.rewinds)),
        ("triage late reports", per(r.late)),
        ("ingest duplicates / DLQ", f"{r.duplicates:,.0f} / {r.dlq:,.0f}"),
        ("signals", per(r.signals)),
        ("incidents", f"{sum(r.incidents.values()):,}  ({len(r.incidents):,} dedup keys; by kind "
                      f"{per(dict(Counter(k for _, k in r.incidents.elements())))})"),
        ("pages received", f"{sum(r.pages.values()):,}  by channel {per(dict(Counter(c for c, _, _ in r.pages.elements())))}"
                           f"; by kind {per(dict(Counter(k for _, _, k in r.pages.elements())))}"
                           + (f"; {r.unmatched_pages} unmatched" if r.unmatched_pages else "")),
        ("notifications in db", per(r.notifications)),
    ]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{w}}  {v}" for k, v in rows)


def diff(a: Counter, b: Counter, limit: int = 25) -> list[str]:  # type: ignore[type-arg]
    out = []
    for key in sorted(set(a) | set(b), key=str):
        if a[key] != b[key]:
            out.append(f"    {key}: backlog {a[key]}, slow {b[key]}")
    if len(out) > limit:
        out = [*out[:limit], f"    ... {len(out) - limit} more"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.backlog", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hours", type=float, default=48.0, help="event time covered (default 48)")
    p.add_argument("--keys", type=int, default=3000, help="streams (default 3000)")
    p.add_argument("--rate", type=float, default=10.0, help="mean reports/s of event time (default 10)")
    p.add_argument("--surges", type=int, default=8, help="stream spikes injected (default 8)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--triage-instances", type=int, default=2,
                   help="triage processes in one consumer group, as production scales out (default 2)")
    p.add_argument("--chunk-s", type=float, default=None,
                   help="phase B publishes this many event seconds at a time (default span/240)")
    p.add_argument("--idle-flush-s", type=float, default=None,
                   help="LIVETRIAGE_IDLE_FLUSH_S for the services (default: the services' default)")
    p.add_argument("--timeout", type=float, default=None, help="seconds each phase may take (default 1800)")
    p.add_argument("--quick", action="store_true", help="2 h, 200 keys, 25 reports/s, 3 surges (< 3 min)")
    p.add_argument("--phase", choices=["both", "backlog", "slow"], default="both")
    args = p.parse_args(argv)
    if args.quick:
        args.hours, args.keys, args.rate, args.surges = 2.0, 200, 25.0, 3
        args.timeout = args.timeout or 150.0
    args.timeout = args.timeout or 1800.0
    args.chunk_s = args.chunk_s or max(30.0, args.hours * 3600 / (60 if args.quick else 240))
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=2)
    traffic = make_traffic(args.hours, args.keys, args.rate, args.surges, args.seed, end)
    t = time.perf_counter()
    expected = sum(1 for _ in traffic.records())
    counts = dict(traffic.counts)
    gen_s = time.perf_counter() - t
    print(f"input: {args.hours:g} h of event time ({traffic.start:%Y-%m-%d %H:%M} .. {end:%H:%M} UTC), "
          f"{args.keys:,} keys (Zipf), mean {args.rate:g} reports/s, daily cycle ±{DAILY_AMPLITUDE:.0%}, "
          f"seed {args.seed}: {expected:,} records {counts} (generated in {gen_s:.1f}s); "
          f"{args.triage_instances} triage instance(s)")
    for s in traffic.surges:
        print(f"  surge {s.stream_id} {s.category}: +{s.rate:.1f}/s for {s.duration_s / 60:.1f} min "
              f"at +{s.start_s / 3600:.2f} h")

    results: dict[str, PhaseResult] = {}
    for name in ("backlog", "slow"):
        if args.phase in (name, "both"):
            results[name] = asyncio.run(run_phase(name, traffic, args, expected))
            print(f"\nphase {'A' if name == 'backlog' else 'B'}: {name}")
            print(phase_table(results[name]), flush=True)

    ok = all(r.drained for r in results.values())
    identical = None
    if len(results) == 2:
        a, b = results["backlog"], results["slow"]
        d_inc, d_pages = diff(a.incidents, b.incidents), diff(a.pages, b.pages)
        d_state = diff(a.incident_states, b.incident_states)
        identical = not d_inc and not d_pages
        print("\ncomparison (backlog vs slow)")
        print(f"  incidents by (dedup_key, kind): {'identical' if not d_inc else f'{len(d_inc)} differ'}"
              f"  ({sum(a.incidents.values())} vs {sum(b.incidents.values())})")
        if d_inc:
            print("\n".join(d_inc))
        print(f"  pages by (channel, dedup_key, kind): {'identical' if not d_pages else f'{len(d_pages)} differ'}"
              f"  ({sum(a.pages.values())} vs {sum(b.pages.values())})")
        if d_pages:
            print("\n".join(d_pages))
        print(f"  (information) incidents by (dedup_key, kind, status, severity): "
              f"{'identical' if not d_state else f'{len(d_state)} differ'}")
        if d_state:
            print("\n".join(d_state[:10]))
    a = results.get("backlog")
    print("\ntargets")
    if a is not None:
        stall = max(a.longest_pause.values(), default=0.0)
        print(f"  no stall (no stage idle >= {STALL_S:.0f}s with work waiting): "
              f"{'MET' if a.drained and stall < STALL_S else 'NOT MET'} (longest {stall:.1f}s)")
        print(f"  ingest >= {TARGET_RPS:,.0f} reports/s: {'MET' if a.ingest_rps >= TARGET_RPS else 'NOT MET'} "
              f"({a.ingest_rps:,.0f})")
        print(f"  triage >= {TARGET_RPS:,.0f} reports/s: {'MET' if a.triage_rps >= TARGET_RPS else 'NOT MET'} "
              f"({a.triage_rps:,.0f})")
    if identical is not None:
        print(f"  identical incidents and pages: {'MET' if identical else 'NOT MET'}")
    if not ok:
        return 1
    if identical is False:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
