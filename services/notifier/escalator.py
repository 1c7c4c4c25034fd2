"""The escalation worker: pages the next level of an incident nobody acknowledged in time.

Every poll claims due incidents (status 'triggered', ``next_escalation_at <= now``) with
``FOR UPDATE SKIP LOCKED``, so two notifier instances never escalate the same incident at
once; for each it enqueues an ``escalate`` notification to the route's channels (event
``esc<step>``: idempotent), records an ``escalated`` timeline entry and moves
``escalation_level`` / ``next_escalation_at`` on (NULL once the policy is exhausted), all in
one transaction. Acknowledging or resolving changes the status, which stops it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.notifier.escalation import Step, next_step, resolve_targets
from services.notifier.metrics import NotifierMetrics
from services.notifier.outbox import enqueue, incident_payload
from services.notifier.routing import Routing
from services.notifier.tables import incident_timeline, incidents
from shared.clock import Clock
from shared.errors import retryable_types

log = logging.getLogger(__name__)
SYSTEM_ACTOR = "livetriage"


def _count(metrics: NotifierMetrics | None, step: Step) -> None:
    if metrics is not None:
        metrics.escalations.labels(str(step.policy_level)).inc()
        if step.level > step.policy_level:  # a step past the policy's last level: a repeat
            metrics.escalation_repeats.inc()


async def start_escalation(
    conn: AsyncConnection, *, incident_id: uuid.UUID, routing: Routing, policy_name: str, now: datetime,
    metrics: NotifierMetrics | None = None,
) -> list[str]:
    """At creation: step 1 is paged with the trigger; time step 2. Returns step 1's targets."""
    policy = routing.escalation_policies[policy_name]
    step = next_step(policy, 0, now)
    assert step is not None  # a policy has at least one level
    _count(metrics, step)
    targets = resolve_targets(step.targets, routing.schedules, now)
    await conn.execute(incidents.update().where(incidents.c.id == incident_id).values(
        escalation_policy=policy_name, escalation_level=step.level,
        next_escalation_at=step.next_escalation_at))
    await conn.execute(incident_timeline.insert().values(
        incident_id=incident_id, at=now, kind="escalated", actor=SYSTEM_ACTOR,
        detail={"level": step.level, "policy_level": step.policy_level, "targets": targets,
                "policy": policy_name}))
    return targets


async def escalate(
    conn: AsyncConnection, *, row: dict[str, Any], routing: Routing, now: datetime,
    metrics: NotifierMetrics | None = None,
) -> int:
    """Escalate one claimed incident; returns the notifications enqueued."""
    policy = routing.escalation_policies.get(row["escalation_policy"] or "")
    step = next_step(policy, row["escalation_level"], now) if policy is not None else None
    if step is None:  # policy gone from the config, or exhausted: stop timing
        await conn.execute(incidents.update().where(incidents.c.id == row["id"])
                           .values(next_escalation_at=None))
        return 0
    targets = resolve_targets(step.targets, routing.schedules, now)
    route = routing.route(row)
    team = row.get("team") or route.team
    payload = {**incident_payload(row, team), "targets": targets, "escalation_level": step.level}
    n = await enqueue(conn, incident_id=row["id"], event=f"esc{step.level}", kind="escalate",
                      channels=route.channels, payload=payload, now=now)
    await conn.execute(incident_timeline.insert().values(
        incident_id=row["id"], at=now, kind="escalated", actor=SYSTEM_ACTOR,
        detail={"level": step.level, "policy_level": step.policy_level, "targets": targets,
                "channels": route.channels, "policy": row["escalation_policy"]}))
    await conn.execute(incidents.update().where(incidents.c.id == row["id"]).values(
        escalation_level=step.level, next_escalation_at=step.next_escalation_at, updated_at=now))
    _count(metrics, step)
    return n


class Escalator:
    """Polls for due escalations; ``escalate_due`` is one poll (tests call it directly)."""

    def __init__(
        self,
        engine: AsyncEngine,
        routing: Routing,
        clock: Clock,
        *,
        batch: int = 50,
        idle_poll_s: float = 1.0,
        on_enqueued: Callable[[], None] | None = None,
        metrics: NotifierMetrics | None = None,
    ) -> None:
        self.engine = engine
        self.routing = routing
        self.clock = clock
        self.batch = batch
        self.idle_poll_s = idle_poll_s
        self.on_enqueued = on_enqueued
        self.m = metrics or NotifierMetrics(CollectorRegistry())

    async def escalate_due(self) -> int:
        """Escalate one batch of due incidents; returns how many were escalated."""
        async with self.engine.begin() as conn:
            now = self.clock.now()
            rows = (await conn.execute(
                sa.select(incidents)
                .where(incidents.c.status == "triggered", incidents.c.next_escalation_at.is_not(None),
                       incidents.c.next_escalation_at <= now)
                .order_by(incidents.c.next_escalation_at)
                .limit(self.batch)
                .with_for_update(skip_locked=True)
            )).mappings().all()
            enqueued = 0
            for row in rows:
                enqueued += await escalate(conn, row=dict(row), routing=self.routing, now=now, metrics=self.m)
        if enqueued and self.on_enqueued is not None:
            self.on_enqueued()
        return len(rows)

    async def resolve_quiet(self) -> int:
        """Auto-resolve open incidents that got no signal for ``routing.auto_resolve_after_s``
        (the resolve page goes out as for a resolve signal); returns how many."""
        quiet = self.routing.auto_resolve_after_s
        if not quiet:
            return 0
        from services.notifier.store import notify  # store imports this module

        async with self.engine.begin() as conn:
            now = self.clock.now()
            rows = (await conn.execute(
                sa.select(incidents.c.id)
                .where(incidents.c.status != "resolved",
                       incidents.c.last_signal_at < now - timedelta(seconds=quiet))
                .limit(self.batch)
                .with_for_update(skip_locked=True)
            )).scalars().all()
            for incident_id in rows:
                await conn.execute(incidents.update().where(incidents.c.id == incident_id).values(
                    status="resolved", resolved_at=now, resolved_by=SYSTEM_ACTOR, resolved_how="quiet",
                    next_escalation_at=None, updated_at=now))
                await conn.execute(incident_timeline.insert().values(
                    incident_id=incident_id, at=now, kind="resolved", actor=SYSTEM_ACTOR,
                    detail={"how": "quiet", "quiet_s": quiet}))
                await notify(conn, incident_id=incident_id, event="quiet", kind="resolve",
                             routing=self.routing, now=now, metrics=self.m)
        if rows and self.on_enqueued is not None:
            self.on_enqueued()
        return len(rows)

    async def repeat_unacknowledged(self) -> int:
        """Page again incidents still triggered ``repeat_interval_s`` after their last page
        (incidents with an escalation policy are the Escalator's, not this). Returns how many."""
        every = self.routing.repeat_interval_s
        if not every:
            return 0
        from services.notifier.store import notify  # store imports this module
        from services.notifier.tables import notifications

        async with self.engine.begin() as conn:
            now = self.clock.now()
            last_page = (
                sa.select(sa.func.max(notifications.c.created_at))
                .where(notifications.c.incident_id == incidents.c.id, notifications.c.status != "cancelled")
                .scalar_subquery()
            )
            rows = (await conn.execute(
                sa.select(incidents.c.id, last_page.label("last_page"))
                .where(incidents.c.status == "triggered", incidents.c.escalation_policy.is_(None),
                       incidents.c.silenced_by.is_(None), last_page <= now - timedelta(seconds=every))
                .limit(self.batch)
                .with_for_update(of=incidents, skip_locked=True)
            )).all()
            for incident_id, last in rows:
                # the event names the page it repeats, so a second sweep cannot repeat it twice
                if await notify(conn, incident_id=incident_id, event=f"repeat:{last.isoformat()}",
                                kind="trigger", routing=self.routing, now=now, metrics=self.m):
                    self.m.repeats.inc()
        if rows and self.on_enqueued is not None:
            self.on_enqueued()
        return len(rows)

    async def end_elapsed_silences(self) -> int:
        """Silences whose end time passed are expired as if deleted: what they held is paged
        again (once: expiring is idempotent). Returns how many were ended."""
        from services.notifier.silence_store import expire_silence
        from services.notifier.tables import silences

        async with self.engine.begin() as conn:
            now = self.clock.now()
            ids = (await conn.execute(
                sa.select(silences.c.id)
                .where(silences.c.expired_at.is_(None), silences.c.ends_at <= now)
                .limit(self.batch)
                .with_for_update(skip_locked=True)
            )).scalars().all()
            for silence_id in ids:
                await expire_silence(conn, silence_id=silence_id, now=now, routing=self.routing)
        if ids and self.on_enqueued is not None:
            self.on_enqueued()
        return len(ids)

    async def run(self, stop: asyncio.Event) -> None:
        retryable = retryable_types()
        while not stop.is_set():
            try:
                if (await self.escalate_due() + await self.resolve_quiet()
                        + await self.end_elapsed_silences() + await self.repeat_unacknowledged()):
                    continue
            except retryable as exc:
                log.warning("escalation paused: %r", exc)
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.idle_poll_s)
            except TimeoutError:
                pass
