"""The transactional outbox: notifications are rows written with the incident change.

``enqueue`` runs inside the caller's transaction. ``claim`` hands due notifications to one
delivery worker at a time (``FOR UPDATE SKIP LOCKED``); ``settle`` records the attempt and
either marks the row sent, schedules a retry (exponential backoff with full jitter), or marks
it dead after ``max_attempts``.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notifier.channels.base import Outcome
from services.notifier.tables import notification_attempts, notifications


def incident_payload(row: dict[str, Any], team: str | None) -> dict[str, Any]:
    """What a page says about an incident (a snapshot taken with the change)."""
    return {
        "id": str(row["id"]),
        "dedup_key": row["dedup_key"],
        "kind": row["kind"],
        "status": row["status"],
        "severity": row["severity"],
        "category": row["category"],
        "stream_id": row.get("stream_id"),
        "region": row.get("region"),
        "reason": row["reason"],
        "score": row["score"],
        "report_count": row["report_count"],
        "started_at": row["started_at"].isoformat(),
        "resolved_at": row["resolved_at"].isoformat() if row.get("resolved_at") else None,
        "factors": row.get("factors", []),
        "team": team,
    }


async def enqueue(
    conn: AsyncConnection,
    *,
    incident_id: uuid.UUID,
    event: str,
    kind: str,
    channels: list[str],
    payload: dict[str, Any],
    now: datetime,
    delay: timedelta = timedelta(0),
) -> int:
    """One notification per channel for a change identified by ``event``; idempotent."""
    if not channels:
        return 0
    res = await conn.execute(
        pg_insert(notifications)
        .values([
            {
                "key": f"{incident_id}:{event}:{kind}:{ch}",
                "incident_id": incident_id,
                "channel": ch,
                "kind": kind,
                "payload": payload,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now + delay,
                "created_at": now,
            }
            for ch in channels
        ])
        .on_conflict_do_nothing(index_elements=["key"])
    )
    return res.rowcount or 0


async def claim(conn: AsyncConnection, *, now: datetime, limit: int) -> list[dict[str, Any]]:
    """Due notifications, each the oldest pending one of its (incident, channel): a channel
    hears an incident's changes in order (no resolve overtaking its trigger or a retry)."""
    earlier = notifications.alias("earlier")
    rows = await conn.execute(
        sa.select(notifications)
        .where(
            notifications.c.status == "pending",
            notifications.c.next_attempt_at <= now,
            ~sa.exists().where(
                earlier.c.incident_id == notifications.c.incident_id,
                earlier.c.channel == notifications.c.channel,
                earlier.c.status == "pending",
                earlier.c.id < notifications.c.id,
            ),
        )
        .order_by(notifications.c.next_attempt_at, notifications.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [dict(r) for r in rows.mappings()]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, and when to give up."""

    max_attempts: int = 8
    base_s: float = 1.0
    cap_s: float = 300.0

    def delay(self, attempts: int, rng: random.Random) -> timedelta:
        return timedelta(seconds=rng.uniform(0, min(self.cap_s, self.base_s * 2 ** (attempts - 1))))


async def settle(
    conn: AsyncConnection,
    *,
    notification: dict[str, Any],
    outcome: Outcome,
    now: datetime,
    duration_ms: float,
    policy: RetryPolicy,
    rng: random.Random,
) -> str:
    """Record an attempt; returns the new status (sent, pending or dead)."""
    attempts = notification["attempts"] + 1
    await conn.execute(
        notification_attempts.insert().values(
            notification_id=notification["id"], at=now, ok=outcome.ok, status_code=outcome.status,
            error=outcome.error, duration_ms=duration_ms,
        )
    )
    values: dict[str, Any]
    if outcome.ok:
        status, values = "sent", {"sent_at": now, "last_error": None}
    elif outcome.retry and attempts < policy.max_attempts:
        status, values = "pending", {"next_attempt_at": now + policy.delay(attempts, rng),
                                     "last_error": outcome.error}
    else:
        status, values = "dead", {"last_error": outcome.error}
    await conn.execute(
        notifications.update()
        .where(notifications.c.id == notification["id"])
        .values(status=status, attempts=attempts, **values)
    )
    return status


async def for_incident(conn: AsyncConnection, *, incident_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await conn.execute(
        sa.select(notifications).where(notifications.c.incident_id == incident_id).order_by(notifications.c.id)
    )
    return [dict(r) for r in rows.mappings()]


async def _lock_unless_in_flight(conn: AsyncConnection, where: Any) -> list[Any] | None:
    """Lock the notification rows matching ``where`` (id, status, attempts), or None if one
    of them is being delivered right now. The deliverer holds a row locked for its whole
    HTTP call, and a plain read would still see it unsent; SKIP LOCKED never waits on a slow
    receiver: a row it cannot lock is in flight (found by the fault suite)."""
    cols = (notifications.c.id, notifications.c.status, notifications.c.attempts)
    rows = (await conn.execute(sa.select(*cols).where(where).with_for_update(skip_locked=True))).all()
    total = await conn.scalar(sa.select(sa.func.count()).select_from(notifications).where(where))
    return None if len(rows) < (total or 0) else list(rows)


async def unsent_trigger_refreshed(
    conn: AsyncConnection, *, incident_id: uuid.UUID, payload: dict[str, Any],
    kinds: tuple[str, ...] = ("trigger", "update"),
) -> bool:
    """A page of ``kinds`` still waiting (a trigger its group wait, an update its group
    interval) takes the incident's latest state instead of another page; True if there was one.

    Only when every such page of the incident is still untried and none is in flight: a page
    that may already have reached its receiver keeps what it said, and the change becomes a
    page of its own, for every channel, so none misses the rise."""
    rows = await _lock_unless_in_flight(conn, sa.and_(
        notifications.c.incident_id == incident_id,
        notifications.c.kind.in_(kinds),
        notifications.c.status == "pending"))
    if not rows or any(r.attempts > 0 for r in rows):
        return False
    await conn.execute(
        notifications.update().where(notifications.c.id.in_([r.id for r in rows])).values(payload=payload)
    )
    return True


async def last_sent_at(conn: AsyncConnection, *, incident_id: uuid.UUID) -> datetime | None:
    return cast("datetime | None", await conn.scalar(
        sa.select(sa.func.max(notifications.c.sent_at)).where(notifications.c.incident_id == incident_id)
    ))


async def cancel_if_never_paged(conn: AsyncConnection, *, incident_id: uuid.UUID) -> bool:
    """If nothing about the incident was ever sent, cancel what is pending; True if so.

    A page with a failed attempt counts as sent: a timeout does not say the receiver did not
    get it (found by the fault suite: a slow webhook took the trigger, the cancel then kept
    its resolve from ever going out). So does a page in flight."""
    cancelled = await _cancel_unheard(conn, notifications.c.incident_id == incident_id)
    return bool(cancelled)


async def cancel_pending(conn: AsyncConnection, *, incident_id: uuid.UUID, kind: str) -> bool:
    """Cancel the incident's untried pages of ``kind``; True if none of that kind had gone
    out (or was in flight, or had a failed attempt): then nobody heard of it."""
    where = sa.and_(notifications.c.incident_id == incident_id, notifications.c.kind == kind)
    return await _cancel_unheard(conn, where) is not None


async def _cancel_unheard(conn: AsyncConnection, where: Any) -> int | None:
    """Cancel the pending pages matching ``where`` unless one of them may have been heard
    (sent, tried, or in flight): the number cancelled, or None if one may have been."""
    rows = await _lock_unless_in_flight(conn, where)
    if rows is None or any(r.status == "sent" or r.attempts > 0 for r in rows):
        return None
    pending = [r.id for r in rows if r.status == "pending"]
    if pending:
        await conn.execute(
            notifications.update().where(notifications.c.id.in_(pending)).values(status="cancelled")
        )
    return len(pending)
