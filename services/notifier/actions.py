"""The moderation-actions consumer: what moderators did about a stream, joined to its incidents.

Per batch, in one DB transaction: record each action (idempotent by ``action_id``: an
action already recorded is skipped entirely), note it on the timelines of the stream's
open incidents, record time-to-action on the first one, and let a terminal action
(stream_ended, content_removed, account_suspended) resolve them and page a ``resolve``.
Offsets are committed only after the transaction committed; malformed records go to
``<actions_topic>.dlq`` with the reason in the headers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.notifier.metrics import NotifierMetrics
from services.notifier.routing import Routing
from services.notifier.store import notify
from services.notifier.tables import incident_timeline, incidents, moderation_actions
from shared.clock import Clock
from shared.events import TERMINAL_ACTIONS, ModerationAction
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


@dataclass(frozen=True, slots=True)
class ActionApplied:
    duplicate: bool
    incidents: int = 0  # open incidents of the stream it touched
    resolved: int = 0
    notified: int = 0


async def apply_action(
    conn: AsyncConnection, *, action: ModerationAction, now: datetime, routing: Routing | None = None,
    metrics: NotifierMetrics | None = None,
) -> ActionApplied:
    """Record ``action`` and apply it to the stream's open incidents, in the caller's transaction."""
    inserted = await conn.execute(
        pg_insert(moderation_actions)
        .values(action_id=action.action_id, stream_id=action.stream_id, action=action.action,
                actor=action.actor, acted_at=action.acted_at, received_at=now,
                payload=action.model_dump(mode="json"))
        .on_conflict_do_nothing(index_elements=["action_id"])
        .returning(moderation_actions.c.action_id)
    )
    if inserted.scalar() is None:
        return ActionApplied(duplicate=True)

    rows = (await conn.execute(
        sa.select(incidents)
        .where(incidents.c.stream_id == action.stream_id, incidents.c.status != "resolved")
        .order_by(incidents.c.detected_at, incidents.c.id)
        .with_for_update()
    )).mappings().all()
    terminal = action.action in TERMINAL_ACTIONS
    detail = {"action_id": action.action_id, "action": action.action, "acted_at": action.acted_at.isoformat()}
    resolved = notified = 0
    for row in rows:
        values: dict[str, object] = {"updated_at": now}
        if row["first_action_at"] is None:
            values["first_action_at"] = action.acted_at
            values["time_to_action_s"] = (action.acted_at - row["started_at"]).total_seconds()
        if terminal:
            values.update(status="resolved", resolved_at=now, resolved_by=action.actor, resolved_how="action",
                          next_escalation_at=None)
        await conn.execute(incidents.update().where(incidents.c.id == row["id"]).values(**values))
        entries = [{"incident_id": row["id"], "at": now, "kind": "moderation_action", "actor": action.actor,
                    "detail": detail}]
        if terminal:
            entries.append({"incident_id": row["id"], "at": now, "kind": "resolved", "actor": action.actor,
                            "detail": {"how": "action", **detail}})
        await conn.execute(incident_timeline.insert(), entries)
        if terminal:
            resolved += 1
            if routing is not None:
                notified += await notify(conn, incident_id=row["id"], event=f"act:{action.action_id}",
                                         kind="resolve", routing=routing, now=now, metrics=metrics)
    return ActionApplied(duplicate=False, incidents=len(rows), resolved=resolved, notified=notified)


class ActionApplier:
    """Handles one batch of moderation actions."""

    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        producer: AIOKafkaProducer,
        clock: Clock,
        routing: Routing | None = None,
        on_enqueued: Callable[[], None] | None = None,
        metrics: NotifierMetrics | None = None,
    ) -> None:
        self._s = settings
        self._engine = engine
        self._producer = producer
        self._clock = clock
        self._routing = routing
        self._on_enqueued = on_enqueued
        self._m = metrics or NotifierMetrics(CollectorRegistry())

    async def handle(self, records: list[Record]) -> None:
        actions: list[ModerationAction] = []
        dead = []
        for rec in records:
            try:
                actions.append(ModerationAction.model_validate_json(rec.value or b""))
            except ValidationError as exc:
                self._m.actions_invalid.inc()
                dead.append(await self._producer.send(
                    dlq_topic(self._s.actions_topic), rec.value, key=rec.key,
                    headers=dlq_headers(rec, "invalid_action", str(exc)[:500]),
                ))
        if dead:
            await asyncio.gather(*dead)  # durable in the DLQ before the offsets move
        if not actions:
            return
        now = self._clock.now()
        async with self._engine.begin() as conn:
            results = [await apply_action(conn, action=a, now=now, routing=self._routing, metrics=self._m)
                       for a in actions]
        if self._on_enqueued is not None and any(r.notified for r in results):
            self._on_enqueued()
        for a, r in zip(actions, results, strict=True):
            self._m.actions.labels(a.action).inc()
            if r.duplicate:
                self._m.actions_duplicate.inc()
            self._m.resolved_by_action.inc(r.resolved)
            if r.resolved:
                log.info("action %s (%s on %s) resolved %d incident(s)", a.action_id, a.action, a.stream_id,
                         r.resolved, extra={"action_id": a.action_id, "stream_id": a.stream_id})


async def run_actions(
    settings: Settings,
    *,
    engine: AsyncEngine,
    producer: AIOKafkaProducer,
    clock: Clock,
    stop: asyncio.Event,
    routing: Routing | None = None,
    on_enqueued: Callable[[], None] | None = None,
    metrics: NotifierMetrics | None = None,
) -> None:
    """Run the moderation-actions consumer until ``stop`` is set."""
    applier = ActionApplier(settings, engine, producer, clock, routing, on_enqueued, metrics)
    async with open_consumer(settings, [settings.actions_topic], settings.actions_group) as consumer:
        log.info("notifier consuming %s", settings.actions_topic)
        await consume_batches(consumer, applier.handle, stop, max_records=settings.batch_max_records,
                              poll_timeout_ms=settings.poll_timeout_ms,
                              lag=metrics.lag if metrics is not None else None, group=settings.actions_group,
                              dead_letter=dead_letter_to(producer, dlq_topic(settings.actions_topic)))
    log.info("actions consumer stopped")
