"""The triage service: consume clean reports, decide, publish signals, then commit."""

from __future__ import annotations

import asyncio
import logging

import orjson
from aiokafka import AIOKafkaProducer

from services.triage.metrics import TriageMetrics
from services.triage.spikes import Detector, DetectorConfig
from shared.kafka import Record, consume_batches, dlq_headers, open_consumer
from shared.settings import Settings

log = logging.getLogger(__name__)


def detector_config(settings: Settings) -> DetectorConfig:
    return DetectorConfig(
        window_size_s=settings.window_size_s,
        grace_s=settings.window_grace_s,
        spike_threshold=settings.spike_threshold,
        critical_score=settings.critical_score,
    )


class Triager:
    """Handles one batch of clean reports."""

    def __init__(
        self, settings: Settings, producer: AIOKafkaProducer, detector: Detector, metrics: TriageMetrics
    ) -> None:
        self._s = settings
        self._producer = producer
        self._detector = detector
        self._m = metrics

    async def handle(self, records: list[Record]) -> None:
        futures = []
        late_before = self._detector.late_reports
        for rec in records:
            try:
                report = orjson.loads(rec.value)  # type: ignore[arg-type]
                signals = self._detector.process(rec.partition, report)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                # ingest only publishes valid reports; anything else is a bug upstream
                self._m.invalid.inc()
                futures.append(
                    await self._producer.send(
                        self._s.clean_topic + ".dlq",
                        rec.value,
                        key=rec.key,
                        headers=dlq_headers(rec, "unreadable_clean_report", repr(exc)),
                    )
                )
                continue
            for sig in signals:
                self._m.signals.labels(sig.kind).inc()
                futures.append(
                    await self._producer.send(
                        self._s.signals_topic,
                        sig.model_dump_json().encode(),
                        key=sig.dedup_key.encode(),
                    )
                )
        if futures:
            await asyncio.gather(*futures)
        self._m.consumed.inc(len(records))
        self._m.late.inc(self._detector.late_reports - late_before)
        self._m.windows.set(self._detector.windows_held())


async def run_triage(
    settings: Settings,
    *,
    producer: AIOKafkaProducer,
    metrics: TriageMetrics,
    stop: asyncio.Event,
) -> None:
    """Run the triage consumer until ``stop`` is set."""
    triager = Triager(settings, producer, Detector(detector_config(settings)), metrics)
    async with open_consumer(settings, [settings.clean_topic], settings.triage_group) as consumer:
        log.info("triage consuming %s", settings.clean_topic)
        await consume_batches(
            consumer,
            triager.handle,
            stop,
            max_records=settings.batch_max_records,
            poll_timeout_ms=settings.poll_timeout_ms,
        )
    log.info("triage stopped")
