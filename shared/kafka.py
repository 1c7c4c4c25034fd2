"""Thin aiokafka helpers: clients as async context managers, topic creation, the batch loop.

Every consumer runs ``consume_batches``: poll a batch, hand it to the service's handler,
and commit the batch's offsets only after the handler returned, i.e. after its effect is
durable. Transient failures are retried with backoff and the offsets stay uncommitted; a
permanent one (the database or broker rejected a record's values) is narrowed down to its
record by bisecting the batch, and that record goes to the DLQ (``dlq_topic``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeAlias, cast

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, KafkaConnectionError, KafkaError
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import CollectorRegistry, Counter, Gauge

from shared.errors import Kind, RetryableError, failure_detail, failure_types, judge
from shared.settings import Settings

log = logging.getLogger(__name__)

# explicit TypeAlias: aiokafka has no py.typed, so to mypy ConsumerRecord is Any
Record: TypeAlias = ConsumerRecord[bytes, bytes]
BatchHandler = Callable[[list[Record]], Awaitable[None]]
# (record, bounded reason, detail): must make the DLQ copy durable before returning
DeadLetter = Callable[[Record, str, str], Awaitable[None]]

TOPIC_EXISTS = 36


@asynccontextmanager
async def open_producer(settings: Settings, **overrides: Any) -> AsyncIterator[AIOKafkaProducer]:
    """A started producer that waits for all in-sync replicas (acks=all)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.require_kafka(),
        acks="all",
        linger_ms=settings.producer_linger_ms,
        compression_type=settings.compression_type,
        max_batch_size=256 * 1024,
        **overrides,
    )
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


@asynccontextmanager
async def open_consumer(
    settings: Settings,
    topics: Sequence[str],
    group_id: str,
    listener: ConsumerRebalanceListener | None = None,
    **overrides: Any,
) -> AsyncIterator[AIOKafkaConsumer]:
    """A started group consumer with manual commits, reading from the earliest offset."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.require_kafka(),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        **overrides,
    )
    if listener is not None:
        consumer.subscribe(list(topics), listener=listener)
    else:
        consumer.subscribe(list(topics))
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


@asynccontextmanager
async def open_admin(settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.require_kafka())
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


def dlq_topic(topic: str) -> str:
    """The dead-letter topic of ``topic``. (The reports' DLQ is configurable on its own,
    ``settings.dlq_topic``, and defaults to this name too.)"""
    return f"{topic}.dlq"


def topics_of(settings: Settings) -> list[str]:
    """Every topic livetriage reads or writes."""
    return [
        settings.reports_topic,
        settings.clean_topic,
        settings.signals_topic,
        settings.trends_topic,
        settings.dlq_topic,
        dlq_topic(settings.clean_topic),
        dlq_topic(settings.signals_topic),
        settings.actions_topic,
        dlq_topic(settings.actions_topic),
    ]


async def ensure_topics(settings: Settings, names: Iterable[str] | None = None) -> None:
    """Create the topics if missing; an existing topic is left as it is."""
    wanted = list(names) if names is not None else topics_of(settings)
    async with open_admin(settings) as admin:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(n, settings.topic_partitions, settings.topic_replication)
            for n in wanted
            if n not in existing
        ]
        if not new:
            return
        resp = await admin.create_topics(new)
        for topic, code, message in resp.topic_errors:
            if code not in (0, TOPIC_EXISTS):
                raise RetryableError(f"creating topic {topic} failed: {code} {message}")


async def wait_for_broker(settings: Settings, timeout_s: float = 30.0) -> None:
    """Block until the broker answers a metadata request, or raise RetryableError."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    last: Exception | None = None
    while asyncio.get_running_loop().time() < deadline:
        try:
            async with open_admin(settings) as admin:
                await admin.list_topics()
                return
        except (KafkaError, OSError) as exc:
            last = exc
            await asyncio.sleep(0.2)  # retry pacing, not synchronisation
    raise RetryableError(f"broker {settings.kafka_bootstrap_servers} unreachable: {last}")


def next_offsets(records: Iterable[Record]) -> dict[TopicPartition, OffsetAndMetadata]:
    """The offsets to commit after ``records``: one past the last record of each partition."""
    out: dict[TopicPartition, OffsetAndMetadata] = {}
    for r in records:
        out[TopicPartition(r.topic, r.partition)] = OffsetAndMetadata(r.offset + 1, "")
    return out


def backoff_s(attempt: int, base: float = 0.2, cap: float = 10.0) -> float:
    """Exponential backoff with full jitter."""
    return random.uniform(0, min(cap, base * (2**attempt)))


_LAG: weakref.WeakKeyDictionary[CollectorRegistry, ConsumerLag] = weakref.WeakKeyDictionary()
_ERRORS: weakref.WeakKeyDictionary[CollectorRegistry, ConsumerErrors] = weakref.WeakKeyDictionary()


class ConsumerErrors:
    """``livetriage_consumer_errors{group,kind,reason}``: handler failures of a consume loop,
    one per failed attempt (a bisected batch counts each failing part);
    ``livetriage_consumer_dead_lettered{group,reason}``: records it sent to a DLQ.
    Labels are bounded: ``reason`` is a ``shared.errors.failure_reason`` code."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.errors = Counter("livetriage_consumer_errors", "Batch handler failures, by kind and reason.",
                              ["group", "kind", "reason"], registry=registry)
        self.dead_lettered = Counter("livetriage_consumer_dead_lettered",
                                     "Records a consumer dead-lettered after the handler rejected them.",
                                     ["group", "reason"], registry=registry)

    @classmethod
    def of(cls, registry: CollectorRegistry) -> ConsumerErrors:
        """One per registry, like ``ConsumerLag.of``."""
        errors = _ERRORS.get(registry)
        if errors is None:
            errors = _ERRORS[registry] = cls(registry)
        return errors


class ConsumerLag:
    """``livetriage_consumer_lag{group,topic,partition}``: records between a consumer's position
    and the partition's high watermark as of its last fetch. Free to read (no request), so
    it is refreshed at most once a second per consumer as batches arrive."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.gauge = Gauge("livetriage_consumer_lag", "Records not yet consumed, per group and partition.",
                           ["group", "topic", "partition"], registry=registry)
        self._next: dict[str, float] = {}
        self._shown: dict[str, set[tuple[str, str, str]]] = {}
        # a consumer that reports its lag reports its failures beside it
        self.errors = ConsumerErrors.of(registry)

    @classmethod
    def of(cls, registry: CollectorRegistry) -> ConsumerLag:
        """One per registry: services sharing a registry (``livetriage up``) share the gauge."""
        lag = _LAG.get(registry)
        if lag is None:
            lag = _LAG[registry] = cls(registry)
        return lag

    async def observe(self, consumer: AIOKafkaConsumer, group: str) -> None:
        now = time.monotonic()
        if now < self._next.get(group, 0.0):
            return
        self._next[group] = now + 1.0
        owned = set()
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is None:
                continue  # nothing fetched from it yet
            position = await consumer.position(tp)
            labels = (group, tp.topic, str(tp.partition))
            owned.add(labels)
            self.gauge.labels(*labels).set(max(0, high - position))
        # a partition handed to another instance is that instance's to report
        for labels in self._shown.get(group, set()) - owned:
            self.gauge.remove(*labels)
        self._shown[group] = owned


async def consume_batches(
    consumer: AIOKafkaConsumer,
    handle: BatchHandler,
    stop: asyncio.Event,
    *,
    max_records: int,
    poll_timeout_ms: int,
    tick: Callable[[], Awaitable[None]] | None = None,
    lag: ConsumerLag | None = None,
    group: str = "",
    dead_letter: DeadLetter | None = None,
    errors: ConsumerErrors | None = None,
) -> None:
    """Poll, handle, commit — until ``stop`` is set; then finish the batch in hand and commit.

    The handler must make its effect durable before returning, and be idempotent. A failure
    is judged by ``shared.errors.classify``:

    - transient: the same part of the batch is retried (backoff with jitter), nothing is
      committed past it;
    - permanent (the database or broker rejected a record's values): the failing part is
      split in halves, each handled again, until the single record at fault is found; it is
      given to ``dead_letter`` with a bounded reason, and the rest of the batch goes on. Redoing
      the halves that did succeed is safe because handlers are idempotent.

    Without ``dead_letter`` a permanent failure is logged and raised: the service stops with
    the batch uncommitted, rather than retry it forever or drop it. Every runner passes one.
    Failures are counted in ``errors`` (by default beside the ``lag`` gauge, same registry).
    ``tick`` runs once per poll, busy or idle, for housekeeping.
    """
    if errors is None and lag is not None:
        errors = lag.errors
    while not stop.is_set():
        batches = await consumer.getmany(timeout_ms=poll_timeout_ms, max_records=max_records)
        if tick is not None:
            await tick()
        if lag is not None:
            await lag.observe(consumer, group)
        records = [r for part in batches.values() for r in part]
        if not records:
            continue
        if not await _settle(records, handle, stop, dead_letter, errors, group):
            # Shutting down with a dependency gone: leave offsets uncommitted,
            # the next owner of the partitions redoes the batch.
            return
        await commit(consumer, next_offsets(records))


@dataclass(frozen=True, slots=True)
class _Rejected:
    """A record found at fault, still to be dead-lettered."""

    record: Record
    reason: str
    detail: str


async def _settle(
    records: list[Record],
    handle: BatchHandler,
    stop: asyncio.Event,
    dead_letter: DeadLetter | None,
    errors: ConsumerErrors | None,
    group: str,
) -> bool:
    """Handle or dead-letter every record of ``records``, in order; False if ``stop`` was set
    while waiting to retry a transient failure."""
    failures = failure_types()
    todo: list[list[Record] | _Rejected] = [records]  # a stack: the next piece of work is last
    attempt = 0
    while todo:
        work = todo[-1]
        try:
            if isinstance(work, _Rejected):
                assert dead_letter is not None  # only queued when there is one
                await dead_letter(work.record, work.reason, work.detail)
                if errors is not None:
                    errors.dead_lettered.labels(group, work.reason).inc()
                log.error("record dead-lettered (%s): %s", work.reason, work.detail, extra={
                    "reason": work.reason, "group": group,
                    "source": f"{work.record.topic}:{work.record.partition}:{work.record.offset}"})
            else:
                await handle(work)
        except failures as exc:
            kind, reason = judge(exc)
            if errors is not None:
                errors.errors.labels(group, kind.value, reason).inc()
            if kind is Kind.TRANSIENT:
                delay = backoff_s(attempt)
                attempt += 1
                log.warning("batch failed (%s: %s), retry %d in %.2fs", reason, failure_detail(exc, 200),
                            attempt, delay, extra={"reason": reason, "group": group})
                if await _wait_or_stop(stop, delay):
                    return False
                continue
            if dead_letter is None or isinstance(work, _Rejected):
                # nowhere to put the record: stop rather than loop on it or skip it
                log.error("%s (%s): %s", "dead-lettering failed" if dead_letter else
                          "batch rejected and no dead-letter topic to send it to", reason,
                          failure_detail(exc), extra={"reason": reason, "group": group})
                raise
            if len(work) == 1:
                todo[-1] = _Rejected(work[0], reason, failure_detail(exc))
            else:
                mid = len(work) // 2
                todo[-1:] = [work[mid:], work[:mid]]  # the first half is handled first
                log.info("batch of %d rejected (%s), bisecting", len(work), reason,
                         extra={"reason": reason, "group": group})
        else:
            todo.pop()
            attempt = 0
    return True


async def commit(consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
    """Commit, tolerating a rebalance: revoked partitions are redone by their new owner."""
    owned = consumer.assignment()
    mine = {tp: om for tp, om in offsets.items() if tp in owned}
    if not mine:
        return
    try:
        await consumer.commit(mine)
    except CommitFailedError as exc:
        log.info("commit skipped after rebalance: %s", exc)
    except KafkaConnectionError as exc:
        log.warning("commit failed, batch will be redelivered: %s", exc)


async def _wait_or_stop(stop: asyncio.Event, delay: float) -> bool:
    try:
        await asyncio.wait_for(stop.wait(), timeout=delay)
        return True
    except TimeoutError:
        return False


def dead_letter_to(producer: AIOKafkaProducer, topic: str) -> DeadLetter:
    """A ``DeadLetter`` for ``consume_batches``: copies the record to ``topic`` (``dlq_value``,
    ``dlq_headers``) and waits for the broker's ack, so the offset may move past it."""

    async def dead_letter(record: Record, reason: str, detail: str) -> None:
        value, cut = dlq_value(record)
        headers = dlq_headers(record, reason, detail) + cut
        await (await producer.send(topic, value, key=record.key, headers=headers))

    return dead_letter


def header(record: Record, name: str) -> bytes | None:
    for k, v in record.headers or ():
        if k == name:
            return cast("bytes | None", v)  # aiokafka is untyped: headers are (str, bytes)
    return None


# A DLQ copy must fit a produce request (1 MiB by default, on the broker too): a bigger
# record is kept as its first DLQ_KEEP_BYTES, marked truncated; dlq.source.* locate the whole.
DLQ_MAX_BYTES = 900 * 1024
DLQ_KEEP_BYTES = 64 * 1024


def dlq_value(record: Record) -> tuple[bytes | None, list[tuple[str, bytes]]]:
    """The value to dead-letter for ``record`` and the headers that say if it was cut."""
    value = record.value
    if value is None or len(value) <= DLQ_MAX_BYTES:
        return value, []
    return value[:DLQ_KEEP_BYTES], [("dlq.truncated", b"true"), ("dlq.original_bytes", str(len(value)).encode())]


def dlq_headers(record: Record, reason: str, detail: str) -> list[tuple[str, bytes]]:
    """The original headers plus why and where from, so a DLQ record can be replayed.

    Only we write ``dlq.*``: a producer's own header of that name (a spoofed reason or
    offset, which readers taking the first match would believe) is kept as ``orig.dlq.*``.
    """
    return [
        *((f"orig.{k}" if k.startswith("dlq.") else k, v) for k, v in record.headers or ()),
        ("dlq.reason", reason.encode()),
        ("dlq.detail", detail.encode("utf-8", "replace")[:1000]),
        ("dlq.source.topic", record.topic.encode()),
        ("dlq.source.partition", str(record.partition).encode()),
        ("dlq.source.offset", str(record.offset).encode()),
    ]
