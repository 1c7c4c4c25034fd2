"""End-to-end throughput benchmark: can the pipeline keep up with >= 5,000 reports/s?

Runs against a fresh embedded tansu broker and a throwaway Postgres database:

1. preload N realistic reports (``traffic()``: many streams, ~1% duplicates, ~0.5% malformed,
   event times spread over N/5000 s) into the reports topic;
2. ceiling: a bare aiokafka consumer reads the whole topic and parses every value with
   orjson — the most a Python consumer in this process can do on this machine;
3. reference: a hand-written aiokafka loop reads the same topic, parses every report and
   counts it into 10 s panes per stream key, summed into 60 s hopping windows as panes close
   (30 s grace) — what triage's windowing costs at the least, with no validation, dedup,
   baselines, checkpoints or output: the reference ceiling;
4. pipeline: ingest, triage and notifier run as three separate processes
   (``livetriage ingest|triage|notifier``, configured by environment as in production;
   ``--mode inproc``: all three in this process, ``start_services``) and are timed from the
   first report ingest consumed until triage has consumed every clean report and the
   notifier every signal triage emitted, reading their Prometheus /metrics. The figure is
   end-to-end reports/s as a % of the reference (target >= 25%).

Postgres: ``DATABASE_URL`` if set; else a fresh ``bench_<random>`` database on
127.0.0.1:5432 (user postgres, trust auth), dropped at the end; else the embedded one.

    python -m bench.pipeline [--reports 200000] [--mode procs|inproc] [--json] [--profile out.prof]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import logging
import os
import pstats
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer
from prometheus_client import Counter
from sqlalchemy import text

from bench.procs import CpuMeter, by_label, instances, of_role, running_services, total
from bench.progress import Progress
from livetriage.embedded import embedded_broker, embedded_postgres_url, free_port, port_open
from livetriage.runtime import ROLES, Running, start_services
from livetriage.simulate import ReportFactory, traffic
from shared.db import migrate, open_engine
from shared.kafka import ensure_topics, open_producer, wait_for_broker
from shared.settings import Settings

log = logging.getLogger("bench.pipeline")

TARGET_RPS = 5_000.0
TARGET_OF_REFERENCE = 0.25
PANE_MS = 10_000
WINDOW_PANES = 6  # 60 s windows hopping by 10 s
GRACE_PANES = 3  # a pane closes 30 s of event time after it ends
POLL_S = 0.2  # metrics polling; more often costs the services CPU the figure is about
LOCAL_PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class Results:
    reports: int
    streams: int
    database: str
    generate_s: float = 0.0
    preload_s: float = 0.0
    preload_rps: float = 0.0
    generated_duplicates: int = 0
    generated_malformed: int = 0
    ceiling_s: float = 0.0
    ceiling_rps: float = 0.0
    ceiling_unparseable: int = 0
    reference_s: float = 0.0
    reference_rps: float = 0.0
    reference_windows: int = 0
    reference_keys: int = 0
    mode: str = "procs"
    triage_instances: int = 1
    of_reference: float = 0.0
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    pipeline_s: float = 0.0
    pipeline_rps: float = 0.0
    ratio: float = 0.0
    ingest_done_s: float = 0.0
    triage_done_s: float = 0.0
    consumed: int = 0
    published: int = 0
    triaged: int = 0
    duplicates_dropped: int = 0
    dlq: int = 0
    dlq_reasons: dict[str, int] = field(default_factory=dict)
    late: int = 0
    windows_held: int = 0
    signals: int = 0
    signals_by_kind: dict[str, int] = field(default_factory=dict)
    notifier_signals: int = 0
    incidents_created: int = 0
    incidents_in_db: int = 0
    completed: bool = False
    target_rps: float = TARGET_RPS
    target_met: bool = False
    target_of_reference: float = TARGET_OF_REFERENCE
    reference_target_met: bool = False
    # bench.relay: the same chain of processes with no logic (relay, then the reference count)
    floor_s: float = 0.0
    floor_rps: float = 0.0
    floor_cpu_us: dict[str, float] = field(default_factory=dict)
    floor_cpu_bound_rps: float = 0.0
    validate_us: float = 0.0  # parse_report per record, in this process
    ideal_bound_rps: float = 0.0  # cores / (floor's CPU per report + validation)
    # CPU microseconds per report spent by each process over the pipeline phase (procs mode),
    # the cores they kept busy, and the rate those cores allow at that cost
    cpu_us: dict[str, float] = field(default_factory=dict)
    cores_busy: float = 0.0
    cores: int = 0
    cpu_bound_rps: float = 0.0


# ---- infrastructure ----------------------------------------------------------------------


async def _local_postgres_ok() -> bool:
    if not port_open(5432):
        return False
    try:
        conn = await asyncpg.connect(LOCAL_PG_ADMIN, timeout=3)
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable"
        log.info("local postgres on 5432 not usable: %r", exc)
        return False
    await conn.close()
    return True


@asynccontextmanager
async def throwaway_database() -> AsyncIterator[str]:
    """CREATE DATABASE bench_<random> on the local server; DROP it on exit."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(LOCAL_PG_ADMIN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        conn = await asyncpg.connect(LOCAL_PG_ADMIN)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def database_url(stack: AsyncExitStack, tmp: Path) -> tuple[str, str]:
    """(url, description) of the database to use."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"], "DATABASE_URL"
    if await _local_postgres_ok():
        url = await stack.enter_async_context(throwaway_database())
        return url, f"127.0.0.1:5432/{url.rsplit('/', 1)[1]} (throwaway)"
    url = await stack.enter_async_context(embedded_postgres_url(tmp))
    return url, "embedded PostgreSQL"


def bench_settings(bootstrap: str, db_url: str) -> Settings:
    sfx = uuid.uuid4().hex[:8]
    return Settings(
        kafka_bootstrap_servers=bootstrap,
        database_url=db_url,
        reports_topic=f"bench.{sfx}.live.reports",
        clean_topic=f"bench.{sfx}.triage.reports",
        signals_topic=f"bench.{sfx}.triage.signals",
        trends_topic=f"bench.{sfx}.triage.trends",
        actions_topic=f"bench.{sfx}.moderation.actions",
        dlq_topic=f"bench.{sfx}.live.reports.dlq",
        ingest_group=f"bench-{sfx}-ingest",
        triage_group=f"bench-{sfx}-triage",
        notifier_group=f"bench-{sfx}-notifier",
        trend_group=f"bench-{sfx}-trends",
        actions_group=f"bench-{sfx}-actions",
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        log_level="WARNING",
    )


async def prepare(settings: Settings) -> None:
    """What ``livetriage.cli._prepare`` does: broker up, topics exist, schema migrated."""
    await wait_for_broker(settings)
    await ensure_topics(settings)
    await asyncio.to_thread(migrate, settings.require_database())


# ---- phases ------------------------------------------------------------------------------


def generate(n: int, streams: int, seed: int, res: Results) -> list[tuple[bytes, bytes]]:
    """N records in event-time order: ~1% duplicates, ~0.5% malformed, over N/5000 s."""
    duration = n / TARGET_RPS
    factory = ReportFactory(streams=streams, seed=seed)
    start = datetime.now(UTC) - timedelta(seconds=duration)
    records: list[tuple[bytes, bytes]] = []
    previous: bytes | None = None
    for _, key, value in traffic(
        factory,
        rate=n / duration,
        duration_s=duration,
        start=start,
        duplicate_ratio=0.01,
        malformed_ratio=0.005,
    ):
        if key == b"garbage":
            res.generated_malformed += 1
        elif value is previous:  # traffic() resends the very same bytes object
            res.generated_duplicates += 1
        else:
            previous = value
        records.append((key, value))
    # traffic() makes int(rate * duration) events; top up (or trim) float rounding to exactly n
    while len(records) < n:
        rep = factory.report(start + timedelta(seconds=duration))
        records.append((rep["stream_id"].encode(), orjson.dumps(rep)))
    del records[n:]
    return records


async def preload(settings: Settings, records: list[tuple[bytes, bytes]], quiet: bool = False) -> float:
    t0 = time.perf_counter()
    async with open_producer(settings) as producer:
        with Progress("preload", len(records), quiet=quiet) as bar:
            pending = []
            for i, (key, value) in enumerate(records, 1):
                pending.append(await producer.send(settings.reports_topic, value, key=key))
                if len(pending) >= 20_000:
                    await asyncio.gather(*pending)
                    pending.clear()
                    bar.update(i)
            await asyncio.gather(*pending)
    return time.perf_counter() - t0


def plain_consumer(bootstrap: str, topic: str, group: str) -> AIOKafkaConsumer:
    """The baselines' consumer (and ``bench.relay``'s): a group member with manual commits,
    fetching as ``shared.kafka.open_consumer`` does."""
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        max_partition_fetch_bytes=4 * 1024 * 1024,  # as shared.kafka.open_consumer
    )


async def timed_read(settings: Settings, n: int, timeout_s: float, who: str,
                     on_batch: Callable[[list[Any]], None]) -> float:
    """Seconds (from the first record) for a plain aiokafka consumer to read all n reports,
    each batch handed to ``on_batch``; the loop both baselines share."""
    consumer = plain_consumer(settings.require_kafka(), settings.reports_topic, f"{settings.ingest_group}-{who}")
    await consumer.start()
    try:
        count = 0
        first: float | None = None
        deadline = time.perf_counter() + timeout_s
        while count < n:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{who} consumer read {count}/{n} records in {timeout_s:.0f}s")
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            for recs in batches.values():
                if first is None and recs:
                    first = time.perf_counter()
                on_batch(recs)
                count += len(recs)
        assert first is not None
        return time.perf_counter() - first
    finally:
        await consumer.stop()


async def ceiling(settings: Settings, n: int, timeout_s: float) -> tuple[float, int]:
    """Seconds for a bare consumer to read (and orjson-parse) all n reports; unparseable count."""
    bad = [0]

    def parse(recs: list[Any]) -> None:
        for r in recs:
            try:
                orjson.loads(r.value)
            except orjson.JSONDecodeError:
                bad[0] += 1

    return await timed_read(settings, n, timeout_s, "ceiling", parse), bad[0]


class PaneCounter:
    """The reference: 10 s panes per stream key, summed into 60 s hopping windows as each pane
    closes (event time, GRACE_PANES of grace). Counts the windows it closed."""

    def __init__(self) -> None:
        self.panes: dict[int, dict[str, int]] = {}  # pane -> key -> reports
        self.watermark = -1  # highest pane seen
        self.closed = -1  # panes <= this are closed
        self.windows = 0
        self.keys: set[str] = set()

    def add(self, key: str, ms: int) -> None:
        pane = ms // PANE_MS
        if pane <= self.closed:
            return  # late: dropped, as triage does
        counts = self.panes.get(pane)
        if counts is None:
            counts = self.panes[pane] = {}
        counts[key] = counts.get(key, 0) + 1
        if pane > self.watermark:
            self.watermark = pane

    def count(self, records: list[Any]) -> None:
        """One batch of raw records: each report counted into its pane, then panes closed."""
        for r in records:
            try:
                got = _event_ms(orjson.loads(r.value))
            except orjson.JSONDecodeError:
                continue
            if got is not None:
                self.add(*got)
        self.advance()

    def advance(self, final: bool = False) -> None:
        if self.watermark < 0:
            return
        close_to = self.watermark if final else self.watermark - GRACE_PANES
        if self.closed < 0:
            self.closed = min(self.panes) - 1
        while self.closed < close_to:
            self.closed += 1
            end = self.closed
            sums: dict[str, int] = {}
            for p in range(end - WINDOW_PANES + 1, end + 1):
                for k, c in self.panes.get(p, {}).items():
                    sums[k] = sums.get(k, 0) + c
            self.windows += len(sums)
            self.keys.update(sums)
            self.panes.pop(end - WINDOW_PANES + 1, None)


def _event_ms(doc: object) -> tuple[str, int] | None:
    if not isinstance(doc, dict):
        return None
    key, at = doc.get("stream_id"), doc.get("reported_at")
    if not isinstance(key, str) or not isinstance(at, str):
        return None
    try:
        return key, int(datetime.fromisoformat(at).timestamp() * 1000)
    except ValueError:
        return None


async def reference(settings: Settings, n: int, timeout_s: float) -> tuple[float, PaneCounter]:
    """Seconds for a hand-written aiokafka loop to read all n reports and count them into
    hopping windows per stream key (``PaneCounter``)."""
    counter = PaneCounter()
    seconds = await timed_read(settings, n, timeout_s, "reference", counter.count)
    counter.advance(final=True)
    return seconds, counter


async def pipeline_procs(settings: Settings, n: int, timeout_s: float, res: Results, quiet: bool,
                         log_dir: Path, triage_instances: int = 1) -> None:
    """The three services as separate processes (triage as ``triage_instances`` of them, in
    one consumer group), timed by polling their /metrics."""
    roles = ["ingest", *instances("triage", triage_instances), "notifier"]
    async with running_services(settings, roles, log_dir, log_level="WARNING") as services:
        meter = CpuMeter({role: svc.pid for role, svc in services.by_role.items()}, settings.require_kafka())
        meter.start()
        started = time.perf_counter()
        t0: float | None = None
        t_ingest = t_triage = None
        bar = Progress("ingest", n, quiet=quiet)
        while True:
            samples = await services.scrape_all()
            now = time.perf_counter()
            i, t, nt = of_role(samples, "ingest"), of_role(samples, "triage"), of_role(samples, "notifier")
            consumed = total(i, "livetriage_ingest_reports_consumed_total")
            published = total(i, "livetriage_ingest_reports_published_total")
            triaged = total(t, "livetriage_triage_records_consumed_total", stage="streams")
            signals = total(t, "livetriage_triage_signals_total")
            notified = total(nt, "livetriage_notifier_signals_consumed_total")
            if t0 is None and consumed > 0:
                # the first record was fetched the handling time of the batches done so far earlier
                t0 = now - total(i, "livetriage_ingest_batch_seconds_sum")
            if t_ingest is None and consumed >= n:
                t_ingest = now
            if t_ingest is not None and t_triage is None and triaged >= published:
                t_triage = now
            if consumed >= n and triaged >= published and notified >= signals:
                res.completed = True
                break
            if now - started > timeout_s:
                log.error("timed out after %.0fs: consumed %d triaged %d/%d notified %d/%d",
                          timeout_s, consumed, triaged, published, notified, signals)
                break
            bar.update(consumed, triage=f"{triaged:,.0f}/{published:,.0f}", notifier=f"{notified:,.0f}/{signals:,.0f}")
            await asyncio.sleep(POLL_S)  # polling metrics with a deadline
        meter.stop()
        bar.close()
        end = time.perf_counter()
        t0 = t0 if t0 is not None else end
        res.cpu_us = {k: round(v, 1) for k, v in meter.per_report_us(int(consumed)).items()}
        res.cores_busy = sum(meter.spent.values()) / meter.wall_s if meter.wall_s else 0.0
        res.cores = os.cpu_count() or 1
        # what the machine's cores allow at this CPU cost per report, the bench's own polling
        # left out: the pipeline's figure cannot exceed it however its stages overlap
        spent_us = sum(v for k, v in res.cpu_us.items() if k != "bench")
        res.cpu_bound_rps = res.cores * 1e6 / spent_us if spent_us else 0.0
        res.pipeline_s = end - t0
        res.ingest_done_s = (t_ingest or end) - t0
        res.triage_done_s = (t_triage or end) - t0
        res.consumed, res.published, res.triaged = int(consumed), int(published), int(triaged)
        res.signals, res.notifier_signals = int(signals), int(notified)
        res.pipeline_rps = (n if res.completed else consumed) / res.pipeline_s if res.pipeline_s else 0.0
        res.duplicates_dropped = int(total(i, "livetriage_ingest_duplicates_total"))
        res.dlq_reasons = {k: int(v) for k, v in by_label(i, "livetriage_ingest_dlq_total", "reason").items()}
        res.dlq = sum(res.dlq_reasons.values())
        res.late = int(total(t, "livetriage_triage_reports_late_total", stage="streams"))
        res.windows_held = int(total(t, "livetriage_triage_keys_held", stage="streams"))
        res.signals_by_kind = {k: int(v) for k, v in by_label(t, "livetriage_triage_signals_total", "kind").items()}
        res.incidents_created = int(total(nt, "livetriage_notifier_incidents_created_total"))
    res.peak_rss_mb = {role: svc.peak_rss_kb / 1024 for role, svc in services.by_role.items()}
    async with open_engine(settings) as engine, engine.connect() as conn:
        res.incidents_in_db = int(await conn.scalar(text("SELECT count(*) FROM incidents")) or 0)


def validation_cost_us(records: list[tuple[bytes, bytes]]) -> float:
    """CPU microseconds ``parse_report`` (the contract, as ingest runs it) takes per record."""
    from services.ingest.validate import parse_report

    now = datetime.now(UTC)
    t = time.process_time()
    for _, value in records:
        parse_report(value, max_bytes=65_536, max_text_chars=2_000, now=now, max_age=timedelta(hours=48))
    return (time.process_time() - t) / len(records) * 1e6 if records else 0.0


async def floor(settings: Settings, n: int, timeout_s: float, res: Results) -> None:
    """``bench.relay``: a do-nothing relay process and the reference count behind it, timed
    from the relay's first record to the count's last, with the CPU each spent."""
    boot = settings.require_kafka()
    relayed = f"{settings.clean_topic}.relay"
    await ensure_topics(settings, [relayed])
    cmd = [sys.executable, "-m", "bench.relay"]
    procs = {
        "relay": await asyncio.create_subprocess_exec(
            *cmd, "relay", boot, settings.reports_topic, relayed, str(n), f"{settings.ingest_group}-relay",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE),
        "count": await asyncio.create_subprocess_exec(
            *cmd, "count", boot, relayed, str(n), f"{settings.ingest_group}-count",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE),
    }
    meter = CpuMeter({k: p.pid for k, p in procs.items()}, boot)
    try:
        first = await asyncio.wait_for(procs["relay"].stdout.readline(), timeout_s)  # type: ignore[union-attr]
        meter.start()  # from the first relayed record: their start-up and group join left out
        done = await asyncio.wait_for(procs["count"].stdout.readline(), timeout_s)  # type: ignore[union-attr]
        meter.stop()  # they wait for their stdin to close: /proc forgets a process's time with it
    finally:
        for p in procs.values():
            if p.stdin is not None:
                p.stdin.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(p.wait(), 10)
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
            await p.wait()
    if not first.startswith(b"first ") or not done.startswith(b"done "):
        raise RuntimeError(f"bench.relay said {first!r} / {done!r}")
    res.floor_s = float(done.split()[1]) - float(first.split()[1])
    res.floor_rps = n / res.floor_s
    res.floor_cpu_us = {k: round(v, 1) for k, v in meter.per_report_us(n).items() if k != "bench"}
    res.floor_cpu_bound_rps = (os.cpu_count() or 1) * 1e6 / sum(res.floor_cpu_us.values())
    # a chain that did nothing but relay, validate and count, with no dedup, scoring or paging
    res.ideal_bound_rps = (os.cpu_count() or 1) * 1e6 / (sum(res.floor_cpu_us.values()) + res.validate_us)


def _value(c: Counter) -> int:
    return int(c._value.get())  # noqa: SLF001 - the benchmark reads metrics in process


def _by_label(c: Counter) -> dict[str, int]:
    out: dict[str, int] = {}
    for metric in c.collect():
        for s in metric.samples:
            if s.name.endswith("_total"):
                label = next(iter(s.labels.values()), "")
                out[label] = out.get(label, 0) + int(s.value)
    return out


@dataclass
class Snapshot:
    consumed: int
    published: int
    triaged: int
    signals: int
    notified: int
    handle_s: float  # sum of ingest batch handling times so far


def snapshot(running: Running) -> Snapshot:
    assert running.ingest and running.triage and running.notifier
    return Snapshot(
        consumed=_value(running.ingest.consumed),
        published=_value(running.ingest.published),
        triaged=_value(running.triage.consumed.labels("streams")),
        signals=sum(_by_label(running.triage.signals).values()),
        notified=sum(_by_label(running.notifier.signals).values()),
        handle_s=running.ingest.batch_seconds._sum.get(),  # noqa: SLF001
    )


async def pipeline(settings: Settings, n: int, timeout_s: float, res: Results, quiet: bool) -> None:
    stop = asyncio.Event()
    async with start_services(settings, ROLES, stop, api=False) as running:
        assert running.ingest and running.triage and running.notifier
        tasks = running.tasks
        # one process runs every service (and this bench's polling: "up" and "bench" are the
        # same process, and only "up" counts towards the cost)
        meter = CpuMeter({"up": os.getpid()}, settings.require_kafka())
        meter.start()
        started = time.perf_counter()
        t0: float | None = None
        t_ingest = t_triage = None
        bar = Progress("ingest", n, quiet=quiet)
        while True:
            now = time.perf_counter()
            s = snapshot(running)
            consumed = s.consumed
            if t0 is None and s.consumed > 0:
                # consumed is counted when a batch is done: the first record was fetched
                # the handling time of the batches done so far earlier (<= 50 ms poll lag).
                t0 = now - s.handle_s
            if t_ingest is None and s.consumed >= n:
                t_ingest = now
            if t_ingest is not None and t_triage is None and s.triaged >= s.published:
                t_triage = now
            if s.consumed >= n and s.triaged >= s.published and s.notified >= s.signals:
                res.completed = True
                break
            if now - started > timeout_s:
                log.error("timed out after %.0fs: %s", timeout_s, s)
                break
            dead = [t for t in tasks if t.done()]
            if dead:
                raise RuntimeError(f"service {dead[0].get_name()} ended: {dead[0].exception()!r}")
            bar.update(s.consumed, triage=f"{s.triaged}/{s.published}", notifier=f"{s.notified}/{s.signals}")
            await asyncio.sleep(POLL_S)  # polling metrics with a deadline

        meter.stop()
        bar.close()
        end = time.perf_counter()
        t0 = t0 if t0 is not None else end
        res.cpu_us = {k: round(v, 1) for k, v in meter.per_report_us(int(consumed)).items()}
        res.cores_busy = sum(meter.spent.values()) / meter.wall_s if meter.wall_s else 0.0
        res.cores = os.cpu_count() or 1
        # what the machine's cores allow at this CPU cost per report, the bench's own polling
        # left out: the pipeline's figure cannot exceed it however its stages overlap
        spent_us = sum(v for k, v in res.cpu_us.items() if k != "bench")
        res.cpu_bound_rps = res.cores * 1e6 / spent_us if spent_us else 0.0
        res.pipeline_s = end - t0
        res.ingest_done_s = (t_ingest or end) - t0
        res.triage_done_s = (t_triage or end) - t0
        res.consumed = s.consumed
        res.published = s.published
        res.triaged = s.triaged
        res.signals = s.signals
        res.notifier_signals = s.notified
        res.pipeline_rps = (s.consumed if not res.completed else n) / res.pipeline_s if res.pipeline_s else 0.0
        res.duplicates_dropped = _value(running.ingest.duplicates)
        res.dlq_reasons = _by_label(running.ingest.dlq)
        res.dlq = sum(res.dlq_reasons.values())
        res.late = _value(running.triage.late.labels("streams"))
        res.windows_held = int(running.triage.keys.labels("streams")._value.get())  # noqa: SLF001
        res.signals_by_kind = _by_label(running.triage.signals)
        res.incidents_created = sum(_by_label(running.notifier.incidents_created).values())
    async with open_engine(settings) as engine, engine.connect() as conn:
        res.incidents_in_db = int(await conn.scalar(text("SELECT count(*) FROM incidents")) or 0)


async def bench_environment(
    stack: AsyncExitStack, make_settings: Callable[[str, str], Settings]
) -> tuple[Settings, str, str]:
    """A fresh embedded broker and a database, owned by ``stack``; topics made, schema migrated.
    Returns (settings, database description, bootstrap address)."""
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="livetriage-bench-")))
    bootstrap = await stack.enter_async_context(embedded_broker(tmp, free_port()))
    db_url, db_desc = await database_url(stack, tmp)
    settings = make_settings(bootstrap, db_url)
    await prepare(settings)
    return settings, db_desc, bootstrap


async def run(args: argparse.Namespace) -> Results:
    n = args.reports
    timeout_s = args.timeout or max(120.0, n / 500)
    quiet = args.json
    say = (lambda *_: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    async with AsyncExitStack() as stack:
        settings, db_desc, bootstrap = await bench_environment(stack, bench_settings)
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="livetriage-bench-logs-")))
        res = Results(reports=n, streams=args.streams, database=db_desc, mode=args.mode,
                      triage_instances=args.triage_instances)
        say(f"broker {bootstrap} (embedded tansu), database {db_desc}")

        t = time.perf_counter()
        records = generate(n, args.streams, args.seed, res)
        res.generate_s = time.perf_counter() - t
        say(f"generated {n} records in {res.generate_s:.1f}s; preloading ...")
        res.validate_us = validation_cost_us(records[:20_000])
        res.preload_s = await preload(settings, records, quiet)
        res.preload_rps = n / res.preload_s
        del records

        say("ceiling: bare aiokafka consumer ...")
        res.ceiling_s, res.ceiling_unparseable = await ceiling(settings, n, timeout_s)
        res.ceiling_rps = n / res.ceiling_s

        say("reference: aiokafka loop counting 10 s panes into 60 s hopping windows per stream ...")
        res.reference_s, counter = await reference(settings, n, timeout_s)
        res.reference_rps = n / res.reference_s
        res.reference_windows, res.reference_keys = counter.windows, len(counter.keys)
        del counter

        say("floor: a relay process that does nothing, and the reference count behind it ...")
        await floor(settings, n, timeout_s, res)

        procs = f"{2 + args.triage_instances} processes"
        say(f"pipeline: ingest + triage + notifier ({procs if args.mode == 'procs' else 'one process'}) ...")
        prof = cProfile.Profile() if args.profile else None
        if prof:
            prof.enable()
        try:
            if args.mode == "procs":
                await pipeline_procs(settings, n, timeout_s, res, quiet, logs, args.triage_instances)
            else:
                await pipeline(settings, n, timeout_s, res, quiet)
        finally:
            if prof:
                prof.disable()
                prof.dump_stats(args.profile)
                if not quiet:
                    pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
        res.ratio = res.pipeline_rps / res.ceiling_rps if res.ceiling_rps else 0.0
        res.target_met = res.completed and res.pipeline_rps >= TARGET_RPS
        res.of_reference = res.pipeline_rps / res.reference_rps if res.reference_rps else 0.0
        res.reference_target_met = res.completed and res.of_reference >= TARGET_OF_REFERENCE
    return res


def table(r: Results) -> str:
    rows = [
        ("reports (N)", f"{r.reports:,}  ({r.streams} streams, event times over {r.reports / TARGET_RPS:.0f}s)"),
        ("database", r.database),
        ("preload", f"{r.preload_s:.2f} s  ({r.preload_rps:,.0f} reports/s)"),
        ("ceiling (bare consumer)", f"{r.ceiling_rps:,.0f} reports/s  ({r.ceiling_s:.2f} s)"),
        ("reference (panes -> 60 s windows)", f"{r.reference_rps:,.0f} reports/s  ({r.reference_s:.2f} s, "
                                              f"{r.reference_windows:,} windows over {r.reference_keys:,} keys)"),
        ("floor (relay + count, 2 processes)",
         f"{r.floor_rps:,.0f} reports/s = {r.floor_rps / r.reference_rps:.1%} of the reference  "
         f"({r.floor_s:.2f} s; CPU " + "  ".join(f"{k} {v:,.1f} us" for k, v in r.floor_cpu_us.items())
         + f"; cores allow {r.floor_cpu_bound_rps:,.0f}/s = {r.floor_cpu_bound_rps / r.reference_rps:.1%})"
         if r.floor_rps and r.reference_rps else "n/a"),
        ("floor + validation (ideal chain)",
         f"{r.validate_us:.1f} us to validate a report; cores allow {r.ideal_bound_rps:,.0f}/s = "
         f"{r.ideal_bound_rps / r.reference_rps:.1%} of the reference; its relay alone (one core) "
         f"{1e6 / (r.floor_cpu_us.get('relay', 0) + r.validate_us):,.0f}/s = "
         f"{1e6 / (r.floor_cpu_us.get('relay', 0) + r.validate_us) / r.reference_rps:.1%}"
         if r.ideal_bound_rps and r.reference_rps and r.floor_cpu_us else "n/a"),
        ("pipeline" + (f" ({2 + r.triage_instances} processes)" if r.mode == "procs" else " (one process)"),
         f"{r.pipeline_rps:,.0f} reports/s  ({r.pipeline_s:.2f} s)" + ("" if r.completed else "  INCOMPLETE (timed out)")),
        ("  ingest consumed all", f"{r.ingest_done_s:.2f} s"),
        ("  triage caught up", f"{r.triage_done_s:.2f} s"),
        ("pipeline / ceiling", f"{r.ratio:.2f}"),
        ("pipeline / reference", f"{r.of_reference:.1%}"),
        ("CPU per report", "  ".join(f"{k} {v:,.1f} us" for k, v in r.cpu_us.items())
         + f"  (total {sum(r.cpu_us.values()):,.1f} us)" if r.cpu_us else "n/a (one process)"),
        ("cores busy", f"{r.cores_busy:.2f} of {r.cores}" if r.cpu_us else "n/a"),
        ("bound by CPU (cores / us per report)",
         f"{r.cpu_bound_rps:,.0f} reports/s = {r.cpu_bound_rps / r.reference_rps:.1%} of the reference"
         if r.cpu_bound_rps and r.reference_rps else "n/a"),
        ("peak RSS (VmHWM)", ", ".join(f"{k} {v:,.0f} MB" for k, v in r.peak_rss_mb.items()) or "n/a (one process)"),
        ("ingest consumed / published", f"{r.consumed:,} / {r.published:,}"),
        ("duplicates dropped", f"{r.duplicates_dropped:,}  (generated {r.generated_duplicates:,})"),
        ("DLQ", f"{r.dlq:,}  (generated malformed {r.generated_malformed:,}) {r.dlq_reasons}"),
        ("triage consumed / late", f"{r.triaged:,} / {r.late:,}  ({r.windows_held:,} keys held)"),
        ("signals", f"{r.signals:,}  {r.signals_by_kind}  (notifier consumed {r.notifier_signals:,})"),
        ("incidents created", f"{r.incidents_created:,}  ({r.incidents_in_db:,} rows in db)"),
        (f"target >= {TARGET_RPS:,.0f} reports/s", "MET" if r.target_met else "NOT MET"),
        (f"target >= {TARGET_OF_REFERENCE:.0%} of the reference", "MET" if r.reference_target_met else "NOT MET"),
    ]
    w = max(len(k) for k, _ in rows)
    line = "-" * (w + 50)
    return "\n".join([line, *(f"{k:<{w}}  {v}" for k, v in rows), line])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reports", type=int, default=200_000, help="reports to preload (default 200000)")
    p.add_argument("--streams", type=int, default=2000, help="distinct streams (default 2000)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds each measured phase may take (default max(120, N/500))")
    p.add_argument("--mode", choices=["procs", "inproc"], default="procs",
                   help="procs: ingest, triage, notifier as 3 processes (default); inproc: one process")
    p.add_argument("--triage-instances", type=int, default=1,
                   help="with --mode procs: triage processes in one consumer group (default 1)")
    p.add_argument("--json", action="store_true", help="print the results as JSON only")
    p.add_argument("--profile", metavar="FILE", default=None,
                   help="cProfile the pipeline phase into FILE (slows it down; with --mode procs it "
                        "profiles only this process's watching, not the services)")
    args = p.parse_args(argv)
    if args.reports < 1:
        p.error("--reports must be positive")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    res = asyncio.run(run(args))
    if args.json:
        print(json.dumps(asdict(res), indent=2))
    else:
        print(table(res))
    return 0 if res.completed else 1


if __name__ == "__main__":
    sys.exit(main())
