"""Triage-stage throughput benchmark: reports/s of ``run_triage`` alone, against a ceiling.

Runs against a fresh embedded tansu broker and a throwaway Postgres database (the same
helpers as ``bench.pipeline``):

1. preload N clean reports into a fresh clean topic exactly as ingest publishes them: the
   value is ``canonical_json`` of a validated ``ReportFactory`` report, key = stream_id,
   timestamp = reported_at in ms, header ``lt.src`` = "<raw partition>:<raw offset>" (the raw
   partition is the one the producer's key partitioner picks, offsets increase per partition).
   Arrivals are Poisson at ``--rate`` reports/s of event time (default 2000/s, so 200,000
   reports span 100 s: windows close and hop); reported_at lags arrival by U(0, ``--jitter``) s;
2. ceiling: a bare aiokafka consumer (own group, earliest, getmany max_records=5000) reads
   all N records of the clean topic and orjson-parses each value;
3. triage: ``run_triage`` (streams + trends stages, checkpointing to Postgres) runs in this
   process with fresh groups; timed from the first record the streams stage consumed until
   the trend stage is done too: the streams checkpoints cover all N and the trends stage has
   consumed every trend record sent (counted at the producer). Rate = reports consumed after
   that first observation / elapsed time (the streams stage alone is reported beside it).
   The event loop's worst lag over the phase is measured by a task sleeping 10 ms in a loop
   (its overshoot: how long something held the loop). Also reported: CPU µs/report of
   this process in both phases (steadier than wall rates when the machine is shared), signals
   by kind, late reports, checkpoints (count, total and mean seconds) and peak RSS.

Target: the triage stage sustains >= 25% of the ceiling (exit status 0 on PASS, else 1).

Postgres: ``DATABASE_URL`` if set; else a fresh ``bench_<random>`` database on
127.0.0.1:5432, dropped at the end; else the embedded one.

    python -m bench.triage [--reports 200000] [--rate 2000] [--json]
                           [--checkpoint-interval S] [--profile out.prof] [--py-spy out.txt]

``--py-spy`` attaches ``py-spy record --idle --format raw`` to this process for the triage
phase only (collapsed stacks; drop the ``EpollSelector.select`` ones for CPU shares).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import logging
import os
import pstats
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka.partitioner import murmur2
from prometheus_client import CollectorRegistry, Histogram

from bench.pipeline import _by_label, _value, bench_environment, bench_settings, ceiling
from bench.progress import Progress
from livetriage.runtime import freeze_startup_heap
from livetriage.simulate import ReportFactory
from services.ingest.validate import Rejected, canonical_json, parse_report
from services.triage.metrics import TriageMetrics
from services.triage.runner import SRC_HEADER, run_triage
from shared.db import open_engine, wait_for_database
from shared.kafka import open_producer
from shared.settings import Settings

log = logging.getLogger("bench.triage")

TARGET_RATIO = 0.25
POLL_S = 0.02
SEND_CHUNK = 20_000


@dataclass
class Results:
    reports: int
    streams: int
    rate: float
    jitter_s: float
    database: str
    partitions: int = 0
    checkpoint_interval_s: float = 0.0
    preload_s: float = 0.0
    preload_rps: float = 0.0
    ceiling_s: float = 0.0
    ceiling_rps: float = 0.0
    ceiling_unparseable: int = 0
    ceiling_cpu_s: float = 0.0  # CPU time of this process during the ceiling phase (incl. join)
    triage_startup_s: float = 0.0  # run_triage start -> first record consumed (join, restore)
    triage_s: float = 0.0
    triage_measured_records: int = 0
    triage_rps: float = 0.0  # both stages: until the trend stage has applied every outbox
    streams_s: float = 0.0
    streams_rps: float = 0.0  # the streams stage alone: until it consumed all N
    trends_done: bool = False
    trend_records_sent: int = 0
    loop_lag_max_ms: float = 0.0
    loop_lag_p99_ms: float = 0.0
    triage_cpu_s: float = 0.0  # CPU time of this process over the measured triage interval
    ratio: float = 0.0
    shutdown_s: float = 0.0
    consumed: int = 0
    trends_consumed: int = 0
    late: int = 0
    replayed: int = 0
    invalid: int = 0
    rewinds: int = 0
    keys_held: int = 0
    signals: int = 0
    signals_by_kind: dict[str, int] = field(default_factory=dict)
    checkpoints: dict[str, dict[str, float]] = field(default_factory=dict)
    gc_pauses: dict[int, tuple[int, float]] = field(default_factory=dict)  # gen -> (n, s), triage phase
    rss_peak_before_triage_mb: float = 0.0
    rss_at_triage_end_mb: float = 0.0
    rss_peak_mb: float = 0.0
    completed: bool = False
    target_ratio: float = TARGET_RATIO
    passed: bool = False


# ---- helpers -----------------------------------------------------------------------------


class GcPauses:
    """Count and time the garbage collector's passes by generation (gc.callbacks)."""

    def __init__(self) -> None:
        self.by_gen: dict[int, list[float]] = {0: [0, 0.0], 1: [0, 0.0], 2: [0, 0.0]}
        self._t = 0.0

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._cb)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._cb)

    def _cb(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        else:
            g = self.by_gen[info["generation"]]
            g[0] += 1
            g[1] += time.perf_counter() - self._t

    def reset(self) -> None:
        for g in self.by_gen.values():
            g[0], g[1] = 0, 0.0


def triage_settings(bootstrap: str, db_url: str) -> Settings:
    """``bench_settings`` plus a fresh trends topic and trend group (it leaves the defaults)."""
    s = bench_settings(bootstrap, db_url)
    sfx = s.triage_group.split("-")[1]
    return s.model_copy(update={
        "trends_topic": f"bench.{sfx}.triage.trends",
        "trend_group": f"bench-{sfx}-trends",
    })


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _histogram(h: Histogram) -> dict[str, dict[str, float]]:
    """{label: {"count", "sum_s", "mean_ms"}} of a one-label histogram."""
    out: dict[str, dict[str, float]] = {}
    for metric in h.collect():
        for s in metric.samples:
            label = next(iter(s.labels.values()), "")
            if s.name.endswith("_count"):
                out.setdefault(label, {})["count"] = s.value
            elif s.name.endswith("_sum"):
                out.setdefault(label, {})["sum_s"] = s.value
    for v in out.values():
        v["mean_ms"] = 1000 * v.get("sum_s", 0.0) / v["count"] if v.get("count") else 0.0
    return out


class LoopLag:
    """The event loop's lag: a task sleeping ``every_s`` in a loop records its overshoot (a
    measurement by sleeping, not a synchronisation)."""

    def __init__(self, every_s: float = 0.01) -> None:
        self.every_s = every_s
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(self.every_s)
            self.lags.append(max(0.0, loop.time() - t - self.every_s))

    def start(self) -> None:
        self.lags.clear()
        self._task = asyncio.create_task(self._run(), name="loop-lag")

    async def stop(self) -> tuple[float, float]:
        """(max, p99) lag in ms."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if not self.lags:
            return 0.0, 0.0
        lags = sorted(self.lags)
        return 1000 * lags[-1], 1000 * lags[min(len(lags) - 1, int(0.99 * len(lags)))]


class CountingProducer:
    """The producer run_triage gets, counting what it sends per topic (the bench's view of
    how many trend records the trend stage has to consume)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.sent: dict[str, int] = {}

    async def send(self, topic: str, *args: Any, **kw: Any) -> Any:
        fut = await self._inner.send(topic, *args, **kw)
        self.sent[topic] = self.sent.get(topic, 0) + 1
        return fut

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def _covered(engine: Any, settings: Settings) -> int:
    """Clean-topic records covered by the streams stage's checkpoints."""
    from sqlalchemy import text

    async with engine.connect() as conn:
        total = await conn.scalar(text(
            "SELECT coalesce(sum(next_offset), 0) FROM triage_checkpoints WHERE group_id = :g AND topic = :t"
        ), {"g": settings.triage_group, "t": settings.clean_topic})
    return int(total or 0)


# ---- phases ------------------------------------------------------------------------------


CleanRecord = tuple[bytes, bytes, int, list[tuple[str, bytes]]]  # key, value, timestamp_ms, headers


def clean_records(
    settings: Settings, n: int, streams: int, seed: int, rate: float, jitter_s: float
) -> Iterator[CleanRecord]:
    """(key, value, timestamp_ms, headers) of N clean reports, as ingest would publish them."""
    partitions = settings.topic_partitions  # the raw topic's, as ensure_topics makes it
    checks: dict[str, Any] = {  # exactly ingest's validation (Ingester.handle)
        "max_bytes": settings.max_report_bytes,
        "max_text_chars": settings.max_text_chars,
        "max_future": timedelta(seconds=settings.max_future_skew_s),
        "max_age": timedelta(hours=settings.dedup_ttl_hours),
    }
    factory = ReportFactory(streams=streams, seed=seed)
    rng = random.Random(seed + 1)
    start = datetime.now(UTC) - timedelta(seconds=n / rate)
    raw_offsets = [0] * partitions
    arrival = 0.0
    made = 0
    while made < n:
        arrival += rng.expovariate(rate)
        at = start + timedelta(seconds=arrival - rng.uniform(0, jitter_s))
        raw = factory.report(at)
        key = raw["stream_id"].encode()
        # ingest's validation, then its canonical form
        rep = parse_report(orjson.dumps(raw), now=datetime.now(UTC), **checks)
        if isinstance(rep, Rejected):  # ReportFactory.report() is valid; event times <= now
            raise AssertionError(f"factory made an invalid report: {rep}")
        raw_part = (murmur2(key) & 0x7FFFFFFF) % partitions  # where the raw report landed
        src = f"{raw_part}:{raw_offsets[raw_part]}".encode()
        raw_offsets[raw_part] += 1
        made += 1
        yield key, canonical_json(rep), int(rep.reported_at.timestamp() * 1000), [(SRC_HEADER, src)]


async def preload(settings: Settings, records: Iterator[CleanRecord], n: int, quiet: bool = False) -> int:
    sent = 0
    with Progress("preload", n, quiet=quiet) as bar:
        async with open_producer(settings) as producer:
            pending = []
            for key, value, ts, headers in records:
                pending.append(await producer.send(
                    settings.clean_topic, value, key=key, timestamp_ms=ts, headers=headers
                ))
                sent += 1
                if len(pending) >= SEND_CHUNK:
                    await asyncio.gather(*pending)
                    pending.clear()
                    bar.update(sent)
            await asyncio.gather(*pending)
    return sent


class PySpy:
    """``py-spy record`` attached to this process while the block runs (raw/collapsed stacks)."""

    def __init__(self, out: str) -> None:
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        # --idle: waits (epoll: Postgres, broker) show up too, so shares are of wall time
        self.cmd = [exe, "record", "--pid", str(os.getpid()), "--rate", "200", "--nonblocking",
                    "--idle", "--format", "raw", "-o", out]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PySpy:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        if self.proc.returncode not in (0, -signal.SIGINT):
            print(f"py-spy exited {self.proc.returncode}: {err.decode(errors='replace')[-500:]}",
                  file=sys.stderr)


async def triage(settings: Settings, n: int, timeout_s: float, res: Results, quiet: bool) -> None:
    stop = asyncio.Event()
    metrics = TriageMetrics(CollectorRegistry())
    consumed = metrics.consumed.labels("streams")
    trends_consumed = metrics.consumed.labels("trends")
    lag = LoopLag()
    async with open_producer(settings) as inner, open_engine(settings) as engine:
        await wait_for_database(engine)
        producer = CountingProducer(inner)
        started = time.perf_counter()
        task = asyncio.create_task(
            run_triage(settings, producer=producer, engine=engine, metrics=metrics, stop=stop),  # type: ignore[arg-type]
            name="triage",
        )
        lag.start()
        streams_end: float | None = None
        sent_before = -1
        t0: float | None = None
        c0 = 0
        cpu0 = time.process_time()
        pauses = GcPauses().__enter__()
        freeze_startup_heap(streaming=True)  # as `livetriage triage` does once started
        bar = Progress("triage", n, quiet=quiet)
        deadline = started + timeout_s
        try:
            while True:
                now = time.perf_counter()
                c = _value(consumed)
                if t0 is None and c > 0:
                    # the c records counted so far were consumed before t0: they are left out
                    t0, c0, cpu0 = now, c, time.process_time()
                    pauses.reset()
                    res.triage_startup_s = now - started
                if c >= n and streams_end is None:
                    streams_end = now
                if streams_end is not None and await _covered(engine, settings) >= n:
                    # the last outboxes go out right after the checkpoint covering N: done once
                    # the count of trend records sent stood still for a poll and all are consumed
                    sent = producer.sent.get(settings.trends_topic, 0)
                    if sent == sent_before and 0 < sent <= _value(trends_consumed):
                        res.completed = res.trends_done = True
                        break
                    sent_before = sent
                if task.done():
                    raise RuntimeError(f"run_triage ended early: {task.exception()!r}")
                if now > deadline:
                    log.error("timed out after %.0fs: streams consumed %d/%d, trends %d of %d sent",
                              timeout_s, c, n, _value(trends_consumed),
                              producer.sent.get(settings.trends_topic, 0))
                    res.completed = c >= n
                    break
                bar.update(c)
                await asyncio.sleep(POLL_S)  # polling metrics with a deadline
            end = time.perf_counter()
            bar.close()
            res.triage_cpu_s = time.process_time() - cpu0
            pauses.__exit__()
            res.gc_pauses = {g: (int(n), s) for g, (n, s) in pauses.by_gen.items()}
            res.rss_at_triage_end_mb = _rss_mb()
            t0 = t0 if t0 is not None else end
            res.triage_s = end - t0
            res.triage_measured_records = c - c0
            res.triage_rps = res.triage_measured_records / res.triage_s if res.triage_s > 0 else 0.0
            res.streams_s = (streams_end or end) - t0
            res.streams_rps = res.triage_measured_records / res.streams_s if res.streams_s > 0 else 0.0
            res.loop_lag_max_ms, res.loop_lag_p99_ms = await lag.stop()
            res.trend_records_sent = producer.sent.get(settings.trends_topic, 0)
        finally:
            stop.set()
            t_stop = time.perf_counter()
            try:
                await asyncio.wait_for(task, timeout=30)
            except TimeoutError:
                log.error("run_triage did not stop within 30s")
            res.shutdown_s = time.perf_counter() - t_stop

    res.consumed = _value(consumed)
    res.trends_consumed = _value(metrics.consumed.labels("trends"))
    res.late = _value(metrics.late.labels("streams"))
    res.replayed = _value(metrics.replayed.labels("streams"))
    res.invalid = _value(metrics.invalid)
    res.rewinds = sum(_by_label(metrics.rewinds).values())
    res.keys_held = int(metrics.keys.labels("streams")._value.get())  # noqa: SLF001
    res.signals_by_kind = _by_label(metrics.signals)
    res.signals = sum(res.signals_by_kind.values())
    res.checkpoints = _histogram(metrics.checkpoint_seconds)


async def run(args: argparse.Namespace) -> Results:
    n = args.reports
    timeout_s = args.timeout or max(120.0, n / 500)
    quiet = args.json
    say = (lambda *_: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    def make_settings(bootstrap: str, db_url: str) -> Settings:
        s = triage_settings(bootstrap, db_url)
        if args.checkpoint_interval is not None:
            s = s.model_copy(update={"checkpoint_interval_s": args.checkpoint_interval})
        return s

    async with AsyncExitStack() as stack:
        settings, db_desc, bootstrap = await bench_environment(stack, make_settings)
        res = Results(reports=n, streams=args.streams, rate=args.rate, jitter_s=args.jitter,
                      database=db_desc, partitions=settings.topic_partitions,
                      checkpoint_interval_s=settings.checkpoint_interval_s)
        say(f"broker {bootstrap} (embedded tansu), database {db_desc}")

        say(f"generating and preloading {n} clean reports into {settings.clean_topic} ...")
        t = time.perf_counter()
        sent = await preload(settings, clean_records(
            settings, n, args.streams, args.seed, args.rate, args.jitter
        ), n, quiet)
        assert sent == n
        res.preload_s = time.perf_counter() - t
        res.preload_rps = n / res.preload_s

        say("ceiling: bare aiokafka consumer + orjson.loads ...")
        # bench.pipeline.ceiling reads settings.reports_topic: point it at the clean topic
        cpu0 = time.process_time()
        res.ceiling_s, res.ceiling_unparseable = await ceiling(
            settings.model_copy(update={"reports_topic": settings.clean_topic}), n, timeout_s
        )
        res.ceiling_cpu_s = time.process_time() - cpu0
        res.ceiling_rps = n / res.ceiling_s
        res.rss_peak_before_triage_mb = _peak_rss_mb()

        say("triage: run_triage (streams + trends stages) ...")
        prof = cProfile.Profile() if args.profile else None
        spy = PySpy(args.py_spy) if args.py_spy else None
        if spy:
            spy.__enter__()
        if prof:
            prof.enable()
        try:
            await triage(settings, n, timeout_s, res, quiet)
        finally:
            if prof:
                prof.disable()
                prof.dump_stats(args.profile)
                if not quiet:
                    pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(30)
            if spy:
                spy.__exit__(None, None, None)
        res.rss_peak_mb = max(_peak_rss_mb(), res.rss_at_triage_end_mb)  # maxrss lags a little
        res.ratio = res.triage_rps / res.ceiling_rps if res.ceiling_rps else 0.0
        res.passed = res.completed and res.ratio >= TARGET_RATIO
    return res


def _us(cpu_s: float, n: int) -> str:
    return f"{1e6 * cpu_s / n:.1f}" if n else "-"


def table(r: Results) -> str:
    cps = "; ".join(
        f"{stage}: {int(v.get('count', 0))} in {v.get('sum_s', 0.0):.2f} s"
        f" (mean {v['mean_ms']:.1f} ms)"
        for stage, v in sorted(r.checkpoints.items())
    ) or "none"
    rows = [
        ("reports (N)", f"{r.reports:,}  ({r.streams} streams, {r.partitions} partitions, "
                        f"event time {r.reports / r.rate:.0f}s at {r.rate:,.0f}/s, "
                        f"jitter {r.jitter_s:g}s)"),
        ("database", r.database),
        ("checkpoint interval", f"{r.checkpoint_interval_s:g} s"),
        ("preload (generate+produce)", f"{r.preload_s:.2f} s  ({r.preload_rps:,.0f} reports/s)"),
        ("ceiling (bare consumer)", f"{r.ceiling_rps:,.0f} reports/s  ({r.ceiling_s:.2f} s, "
                                    f"{r.ceiling_unparseable} unparseable; "
                                    f"{_us(r.ceiling_cpu_s, r.reports)} CPU µs/report)"),
        ("triage (streams + trends)", f"{r.triage_rps:,.0f} reports/s  "
                   f"({r.triage_measured_records:,} in {r.triage_s:.2f} s; "
                   f"{_us(r.triage_cpu_s, r.triage_measured_records)} CPU µs/report)"
                   + ("" if r.completed else "  INCOMPLETE (timed out)")
                   + ("" if r.trends_done else "  (trend stage not done)")),
        ("  streams stage alone", f"{r.streams_rps:,.0f} reports/s  ({r.streams_s:.2f} s)"),
        ("  event-loop lag", f"max {r.loop_lag_max_ms:,.1f} ms  (p99 {r.loop_lag_p99_ms:,.1f} ms)"),
        ("  startup (join+restore)", f"{r.triage_startup_s:.2f} s"),
        ("  shutdown (final ckpt)", f"{r.shutdown_s:.2f} s"),
        ("triage / ceiling", f"{r.ratio:.3f}  ({r.ratio:.1%})"),
        ("streams consumed / late", f"{r.consumed:,} / {r.late:,}  (replayed {r.replayed}, invalid "
                                    f"{r.invalid}, rewinds {r.rewinds}, "
                                    f"keys held {r.keys_held:,})"),
        ("trends consumed", f"{r.trends_consumed:,}  (of {r.trend_records_sent:,} trend records sent)"),
        ("signals", f"{r.signals:,}  {r.signals_by_kind}"),
        ("checkpoints", cps),
        ("GC passes (triage phase)", "  ".join(f"gen{g}: {n} in {s:.2f} s"
                                               for g, (n, s) in sorted(r.gc_pauses.items()))),
        ("RSS (MB)", f"peak {r.rss_peak_mb:,.0f}  "
                     f"(peak before triage {r.rss_peak_before_triage_mb:,.0f}, "
                     f"at triage end {r.rss_at_triage_end_mb:,.0f})"),
        (f"target >= {TARGET_RATIO:.0%} of ceiling", "PASS" if r.passed else "FAIL"),
    ]
    w = max(len(k) for k, _ in rows)
    line = "-" * (w + 60)
    return "\n".join([line, *(f"{k:<{w}}  {v}" for k, v in rows), line])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.triage", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reports", type=int, default=200_000,
                   help="clean reports to preload (default 200000)")
    p.add_argument("--streams", type=int, default=2000, help="distinct streams (default 2000)")
    p.add_argument("--rate", type=float, default=2000.0,
                   help="reports per second of event time (default 2000)")
    p.add_argument("--jitter", type=float, default=2.0,
                   help="reported_at precedes arrival by U(0, JITTER) s (default 2)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--checkpoint-interval", type=float, default=None, metavar="S",
                   help="override checkpoint_interval_s (default: the Settings default)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds each measured phase may take (default max(120, N/500))")
    p.add_argument("--json", action="store_true", help="print the results as JSON only")
    p.add_argument("--profile", metavar="FILE", default=None,
                   help="cProfile the triage phase into FILE (slows it down)")
    p.add_argument("--py-spy", metavar="FILE", default=None,
                   help="py-spy record (raw/collapsed stacks) this process during the triage phase")
    args = p.parse_args(argv)
    if args.reports < 1:
        p.error("--reports must be positive")
    if args.rate <= 0 or args.jitter < 0:
        p.error("--rate must be positive and --jitter non-negative")
    if args.checkpoint_interval is not None and args.checkpoint_interval <= 0:
        p.error("--checkpoint-interval must be positive")
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    res = asyncio.run(run(args))
    if args.json:
        print(json.dumps(asdict(res), indent=2))
    else:
        print(table(res))
    return 0 if res.passed else 1


if __name__ == "__main__":
    sys.exit(main())
