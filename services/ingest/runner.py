"""The ingest service: consume raw reports, validate, dedup, publish clean or dead-letter.

Per batch: validate every record; claim the valid report ids in Postgres (durable before
anything is published); publish first sightings to the clean topic and rejects to the DLQ;
wait for the broker's acks; only then does ``consume_batches`` commit the offsets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

import orjson
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ingest.dedup import Deduplicator, Origin
from services.ingest.metrics import IngestMetrics
from services.ingest.validate import Rejected, canonical_json, parse_report
from shared.clock import Clock, SystemClock
from shared.events import Report
from shared.kafka import (
    Record,
    consume_batches,
    dead_letter_to,
    dlq_headers,
    dlq_value,
    open_consumer,
)
from shared.publish import KeyedBatches
from shared.settings import Settings

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 300.0
CHUNK = 1000  # records validated while the previous chunk's claim is in the database


class Ingester:
    """Handles one batch of raw reports; owns no resources, the caller passes them in."""

    def __init__(
        self,
        settings: Settings,
        producer: AIOKafkaProducer,
        dedup: Deduplicator,
        metrics: IngestMetrics,
        clock: Clock | None = None,
    ) -> None:
        self._s = settings
        self._producer = producer
        self._dedup = dedup
        self._m = metrics
        self._clock = clock or SystemClock()
        self._max_future = timedelta(seconds=settings.max_future_skew_s)
        self._max_age = None if settings.accept_old_reports else timedelta(hours=settings.dedup_ttl_hours)
        self._dead_letter = dead_letter_to(producer, settings.dlq_topic)

    async def dead_letter(self, rec: Record, reason: str, detail: str) -> None:
        """A report the database or broker rejected (found by ``consume_batches``): to the DLQ."""
        await self._dead_letter(rec, reason, detail)
        self._m.dlq.labels(reason).inc()

    async def handle(self, records: list[Record]) -> None:
        """Validate, claim, publish; return once every copy is acknowledged.

        The batch goes through in chunks, each claimed while the next one is validated: the
        database round trip and the broker's acks overlap the CPU work instead of following
        it. Claims run one at a time, in offset order, so the first record to carry an id
        still owns it."""
        started = time.perf_counter()
        acks: list[asyncio.Future[object]] = []
        rejected: list[tuple[Record, Rejected]] = []
        claiming: tuple[list[tuple[Record, Report]], asyncio.Task[set[Origin]]] | None = None
        duplicates = 0
        now = self._clock.now()
        # (asked per batch: the producer's metadata is cached, and follows a partition increase)
        partitions = len(await self._producer.partitions_for(self._s.clean_topic))
        clean = KeyedBatches(self._producer, self._s.clean_topic, partitions)
        for lo in range(0, len(records), CHUNK):
            valid: list[tuple[Record, Report]] = []
            for rec in records[lo:lo + CHUNK]:
                parsed = parse_report(
                    rec.value,
                    max_bytes=self._s.max_report_bytes,
                    max_text_chars=self._s.max_text_chars,
                    now=now,
                    max_future=self._max_future,
                    max_age=self._max_age,
                )
                if isinstance(parsed, Rejected):
                    rejected.append((rec, parsed))
                else:
                    valid.append((rec, parsed))
            if claiming is not None:
                dup = await self._publish(*claiming, clean)
                duplicates += dup
            claiming = (valid, asyncio.ensure_future(self._dedup.firsts(
                [(rep.report_id, Origin(rec.partition, rec.offset)) for rec, rep in valid])))
        if claiming is not None:
            duplicates += await self._publish(*claiming, clean)
        await clean.flush()
        published = clean.records
        acks.extend(clean.futures)
        for rec, rej in rejected:
            value, cut = dlq_value(rec)
            acks.append(
                await self._producer.send(
                    self._s.dlq_topic,
                    value,
                    key=rec.key,
                    headers=dlq_headers(rec, rej.reason, rej.detail) + cut,
                )
            )
        if acks:
            await asyncio.gather(*acks)

        self._m.consumed.inc(len(records))
        self._m.published.inc(published)
        self._m.duplicates.inc(duplicates)
        for _, rej in rejected:
            self._m.dlq.labels(rej.reason).inc()
        _log_rejected(rejected)
        self._m.batch_seconds.observe(time.perf_counter() - started)

    async def _publish(
        self, valid: list[tuple[Record, Report]], claim: asyncio.Task[set[Origin]], clean: KeyedBatches,
    ) -> int:
        """Add the first sightings of a claimed chunk to the clean topic's batches; return the
        number of duplicates dropped."""
        owners = await claim
        duplicates = 0
        for rec, rep in valid:
            if Origin(rec.partition, rec.offset) not in owners:
                duplicates += 1
                continue
            await clean.add(
                rep.stream_id.encode(),
                canonical_json(rep),
                timestamp_ms=int(rep.reported_at.timestamp() * 1000),
                # where it came from: lets triage recognise a republished record
                headers=[("lt.src", f"{rec.partition}:{rec.offset}".encode())],
            )
        return duplicates


LOG_REJECTED_PER_BATCH = 20  # one line each; a flood of bad input gets one summary line more


def _log_rejected(rejected: list[tuple[Record, Rejected]]) -> None:
    """A line per dead-lettered report, with its id when one can be read, so a producer
    asking "where did report X go" finds it in the logs as well as on the DLQ topic."""
    for rec, rej in rejected[:LOG_REJECTED_PER_BATCH]:
        log.info("report dead-lettered (%s): %s", rej.reason, rej.detail[:200], extra={
            "report_id": report_id_of(rec.value), "reason": rej.reason,
            "source": f"{rec.topic}:{rec.partition}:{rec.offset}"})
    if len(rejected) > LOG_REJECTED_PER_BATCH:
        log.info("%d more reports dead-lettered in this batch (see the DLQ topic)",
                 len(rejected) - LOG_REJECTED_PER_BATCH)


def report_id_of(value: bytes | None) -> str | None:
    """The report_id of a rejected record, if it is a JSON object with a string one."""
    if not value or len(value) > 1 << 20:
        return None
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    rid = doc.get("report_id") if isinstance(doc, dict) else None
    return rid[:200].replace("\x00", "\\0") if isinstance(rid, str) else None


async def run_ingest(
    settings: Settings,
    *,
    producer: AIOKafkaProducer,
    engine: AsyncEngine,
    metrics: IngestMetrics,
    stop: asyncio.Event,
) -> None:
    """Run the ingest consumer until ``stop`` is set."""
    dedup = Deduplicator(engine, timedelta(hours=settings.dedup_ttl_hours))
    ingester = Ingester(settings, producer, dedup, metrics)
    last_prune = 0.0

    async def tick() -> None:
        nonlocal last_prune
        if time.monotonic() - last_prune > PRUNE_EVERY_S:
            last_prune = time.monotonic()
            try:
                removed = await dedup.prune()
            except Exception as exc:  # noqa: BLE001  (housekeeping must never stop ingestion)
                log.warning("dedup prune failed, will retry: %s", exc)
                return
            if removed:
                log.info("pruned %d expired dedup claims", removed)

    async with open_consumer(settings, [settings.reports_topic], settings.ingest_group) as consumer:
        log.info("ingest consuming %s", settings.reports_topic)
        await consume_batches(
            consumer,
            ingester.handle,
            stop,
            max_records=settings.batch_max_records,
            poll_timeout_ms=settings.poll_timeout_ms,
            tick=tick,
            lag=metrics.lag,
            group=settings.ingest_group,
            dead_letter=ingester.dead_letter,
        )
    log.info("ingest stopped")
