"""Thin aiokafka helpers: clients as async context managers, topic creation, the batch loop.

Every consumer runs ``consume_batches``: poll a batch, hand it to the service's handler,
and commit the batch's offsets only after the handler returned, i.e. after its effect is
durable. Retryable failures are retried with backoff and the offsets stay uncommitted.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, KafkaError, KafkaConnectionError
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import CollectorRegistry, Gauge

from shared.errors import RetryableError, retryable_types
from shared.settings import Settings

log = logging.getLogger(__name__)

Record = ConsumerRecord[bytes, bytes]
BatchHandler = Callable[[list[Record]], Awaitable[None]]

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


def topics_of(settings: Settings) -> list[str]:
    """Every topic livetriage reads or writes."""
    return [
        settings.reports_topic,
        settings.clean_topic,
        settings.signals_topic,
        settings.trends_topic,
        settings.dlq_topic,
        settings.clean_topic + ".dlq",
        settings.signals_topic + ".dlq",
        settings.actions_topic,
        settings.actions_topic + ".dlq",
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


class ConsumerLag:
    """``livetriage_consumer_lag{group,topic,partition}``: records between a consumer's position
    and the partition's high watermark as of its last fetch. Free to read (no request), so
    it is refreshed at most once a second per consumer as batches arrive."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.gauge = Gauge("livetriage_consumer_lag", "Records not yet consumed, per group and partition.",
                           ["group", "topic", "partition"], registry=registry)
        self._next: dict[str, float] = {}
        self._shown: dict[str, set[tuple[str, str, str]]] = {}

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
) -> None:
    """Poll, handle, commit — until ``stop`` is set; then finish the batch in hand and commit.

    The handler must make its effect durable before returning. If it raises a retryable
    error the same batch is retried (backoff with jitter) and nothing is committed.
    ``tick`` runs once per poll, busy or idle, for housekeeping.
    """
    retryable = retryable_types()
    while not stop.is_set():
        batches = await consumer.getmany(timeout_ms=poll_timeout_ms, max_records=max_records)
        if tick is not None:
            await tick()
        if lag is not None:
            await lag.observe(consumer, group)
        records = [r for part in batches.values() for r in part]
        if not records:
            continue
        attempt = 0
        while True:
            try:
                await handle(records)
                break
            except retryable as exc:
                delay = backoff_s(attempt)
                attempt += 1
                log.warning("batch failed (%s), retry %d in %.2fs", exc, attempt, delay)
                if await _wait_or_stop(stop, delay):
                    # Shutting down with a dependency gone: leave offsets uncommitted,
                    # the next owner of the partitions redoes the batch.
                    return
        await commit(consumer, next_offsets(records))


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


def header(record: Record, name: str) -> bytes | None:
    for k, v in record.headers or ():
        if k == name:
            return v
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
    """The original headers plus why and where from, so a DLQ record can be replayed."""
    return [
        *(record.headers or ()),
        ("dlq.reason", reason.encode()),
        ("dlq.detail", detail.encode("utf-8", "replace")[:1000]),
        ("dlq.source.topic", record.topic.encode()),
        ("dlq.source.partition", str(record.partition).encode()),
        ("dlq.source.offset", str(record.offset).encode()),
    ]
