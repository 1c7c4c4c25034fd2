"""The notifier's consumer: apply signals to incidents in one DB transaction per batch.

The batch's offsets are committed only after the transaction committed; signals are
idempotent by id, so a redelivered batch changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaProducer
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.notifier.metrics import NotifierMetrics
from services.notifier.routing import Routing
from services.notifier.store import apply_signals
from shared.clock import Clock
from shared.events import Signal
from shared.kafka import (
    Record,
    consume_batches,
    dead_letter_to,
    dlq_headers,
    dlq_topic,
    open_consumer,
)
from shared.settings import Settings

log = logging.getLogger(__name__)


class SignalApplier:
    """Handles one batch of signals."""

    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        producer: AIOKafkaProducer,
        metrics: NotifierMetrics,
        clock: Clock,
        routing: Routing | None = None,
        on_enqueued: Callable[[], None] | None = None,
    ) -> None:
        self._s = settings
        self._routing = routing
        self._on_enqueued = on_enqueued
        self._engine = engine
        self._producer = producer
        self._m = metrics
        self._clock = clock

    async def handle(self, records: list[Record]) -> None:
        started = time.perf_counter()
        signals: list[Signal] = []
        dead = []
        for rec in records:
            try:
                signals.append(Signal.model_validate_json(rec.value or b""))
            except ValidationError as exc:
                self._m.invalid.inc()
                dead.append(
                    await self._producer.send(
                        dlq_topic(self._s.signals_topic),
                        rec.value,
                        key=rec.key,
                        headers=dlq_headers(rec, "invalid_signal", str(exc)[:500]),
                    )
                )
        if dead:
            await asyncio.gather(*dead)
        if not signals:
            return
        now = self._clock.now()
        async with self._engine.begin() as conn:
            applied = await apply_signals(conn, signals=signals, now=now, routing=self._routing,
                                          metrics=self._m)
        results = list(zip(signals, applied, strict=True))
        if self._on_enqueued is not None and any(res.notified for _, res in results):
            self._on_enqueued()
        for sig, res in results:
            self._m.signals.labels(sig.kind).inc()
            if res.duplicate:
                self._m.duplicates.inc()
            else:
                self._m.signal_latency.observe(max(0.0, (now - sig.observed_at).total_seconds()))
            if res.created:
                self._m.incidents_created.labels(sig.severity.value).inc()
                log.info("incident %s opened: %s", res.incident_id, sig.reason,
                         extra={"incident_id": str(res.incident_id), "signal_id": sig.signal_id,
                                "dedup_key": sig.dedup_key, "severity": sig.severity.value})
        self._m.batch_seconds.observe(time.perf_counter() - started)


async def run_notifier(
    settings: Settings,
    *,
    engine: AsyncEngine,
    producer: AIOKafkaProducer,
    metrics: NotifierMetrics,
    clock: Clock,
    stop: asyncio.Event,
    routing: Routing | None = None,
    on_enqueued: Callable[[], None] | None = None,
) -> None:
    """Run the signal consumer until ``stop`` is set."""
    applier = SignalApplier(settings, engine, producer, metrics, clock, routing, on_enqueued)
    async with open_consumer(settings, [settings.signals_topic], settings.notifier_group) as consumer:
        log.info("notifier consuming %s", settings.signals_topic)
        await consume_batches(
            consumer,
            applier.handle,
            stop,
            max_records=settings.batch_max_records,
            poll_timeout_ms=settings.poll_timeout_ms,
            lag=metrics.lag,
            group=settings.notifier_group,
            dead_letter=dead_letter_to(producer, dlq_topic(settings.signals_topic)),
        )
    log.info("notifier stopped")
