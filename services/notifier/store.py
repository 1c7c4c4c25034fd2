"""Incident persistence: async repository functions with keyword-only arguments.

``apply_signal`` is idempotent by ``signal_id``: a signal already recorded changes nothing,
so a redelivered batch is harmless. One open incident per dedup key is enforced by a partial
unique index, and the open incident is locked (``FOR UPDATE``) while a signal merges into it.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notifier.escalator import start_escalation
from services.notifier.incidents import IncidentState, kind_of, merge, open_incident
from services.notifier.outbox import (
    cancel_if_never_paged,
    enqueue,
    incident_payload,
    last_sent_at,
    unsent_trigger_refreshed,
)
from services.notifier.routing import Routing
from services.notifier.silence_store import held_by
from services.notifier.tables import incident_severity, incident_signals, incident_timeline, incidents
from shared.events import Severity, Signal

SYSTEM_ACTOR = "livetriage"


@dataclass(frozen=True, slots=True)
class Applied:
    """Outcome of applying one signal."""

    incident_id: uuid.UUID | None
    created: bool
    duplicate: bool
    notified: int = 0


async def apply_signal(
    conn: AsyncConnection, *, signal: Signal, now: datetime, routing: Routing | None = None
) -> Applied:
    """Merge ``signal`` into its open incident (or open one), and enqueue the notifications
    the change calls for, in the caller's transaction."""
    seen = await conn.scalar(
        sa.select(incident_signals.c.incident_id).where(incident_signals.c.signal_id == signal.signal_id)
    )
    if seen is not None:
        return Applied(seen, created=False, duplicate=True)

    row = (
        await conn.execute(
            sa.select(incidents)
            .where(incidents.c.dedup_key == signal.dedup_key, incidents.c.status != "resolved")
            .with_for_update()
        )
    ).mappings().first()

    if row is None:
        if signal.kind == "resolve":
            return Applied(None, created=False, duplicate=False)  # nothing open to resolve
        change = open_incident(signal)
        incident_id = uuid.uuid4()
        inserted = await conn.execute(
            pg_insert(incidents)
            .values(
                id=incident_id,
                dedup_key=signal.dedup_key,
                kind=kind_of(signal),
                category=signal.category.value,
                stream_id=signal.stream_id,
                region=signal.region,
                detected_at=now,
                updated_at=now,
                **_state_columns(change.state),
            )
            .on_conflict_do_nothing(
                index_elements=["dedup_key"], index_where=sa.text("status <> 'resolved'")
            )
            .returning(incidents.c.id)
        )
        if inserted.scalar() is None:
            # Another notifier opened it between our SELECT and INSERT: merge into theirs.
            return await apply_signal(conn, signal=signal, now=now, routing=routing)
        created = True
    else:
        incident_id = row["id"]
        change = merge(_state_of(row), signal)
        await conn.execute(
            incidents.update()
            .where(incidents.c.id == incident_id)
            .values(updated_at=now, **_state_columns(change.state))
        )
        created = False

    await conn.execute(
        incident_signals.insert().values(
            signal_id=signal.signal_id,
            incident_id=incident_id,
            kind=signal.kind,
            severity=signal.severity.value,
            received_at=now,
            payload=signal.model_dump(mode="json"),
        )
    )
    if change.events:
        await conn.execute(
            incident_timeline.insert(),
            [
                {"incident_id": incident_id, "at": now, "kind": k, "actor": SYSTEM_ACTOR, "detail": d}
                for k, d in change.events
            ],
        )
    kinds = {k for k, _ in change.events}
    if created or "severity_raised" in kinds:
        await conn.execute(incident_severity.insert().values(
            incident_id=incident_id, at=now, severity=change.state.severity.value))
    page = "trigger" if created else "resolve" if "resolved" in kinds else (
        "update" if "severity_raised" in kinds else None)
    notified = 0
    if page is not None and routing is not None:
        notified = await notify(conn, incident_id=incident_id, event=signal.signal_id, kind=page,
                                routing=routing, now=now, set_team=created)
    return Applied(incident_id, created=created, duplicate=False, notified=notified)


async def notify(
    conn: AsyncConnection,
    *,
    incident_id: uuid.UUID,
    event: str,
    kind: str,
    routing: Routing,
    now: datetime,
    set_team: bool = False,
) -> int:
    """Route the incident as it is now and enqueue ``kind`` for each of the route's channels."""
    row = await get_incident(conn, incident_id=incident_id)
    assert row is not None
    route = routing.route(row)
    if set_team or row.get("team") is None:
        await conn.execute(incidents.update().where(incidents.c.id == incident_id).values(team=route.team))
    held = await held_by(conn, incident={**row, "team": route.team}, now=now)
    if held is not None:  # a silence or an inhibition: record it, page nobody
        if held.silence_id is not None:
            await conn.execute(incidents.update().where(incidents.c.id == incident_id)
                               .values(silenced_by=held.silence_id))
        await conn.execute(incident_timeline.insert().values(
            incident_id=incident_id, at=now, kind=held.kind, actor=SYSTEM_ACTOR,
            detail={**held.detail, "kind": kind, "event": event},
        ))
        return 0
    payload = incident_payload(row, route.team)
    if kind == "update" and await unsent_trigger_refreshed(conn, incident_id=incident_id, payload=payload):
        return 0  # the first page has not gone out yet: it will carry this severity
    if kind == "resolve" and await cancel_if_never_paged(conn, incident_id=incident_id):
        await conn.execute(incident_timeline.insert().values(
            incident_id=incident_id, at=now, kind="page_cancelled", actor=SYSTEM_ACTOR,
            detail={"reason": "resolved within the group wait: nobody was paged", "event": event}))
        return 0
    if set_team and route.escalation_policy is not None:  # a new incident: page level 1, time level 2
        payload["targets"] = await start_escalation(conn, incident_id=incident_id, routing=routing,
                                                    policy_name=route.escalation_policy, now=now)
    delay = timedelta(0)
    if kind == "trigger":
        delay = timedelta(seconds=routing.group_wait_s)
    elif kind == "update" and routing.group_interval_s:
        # group interval: updates go out at most once per interval after the last page
        last = await last_sent_at(conn, incident_id=incident_id)
        if last is not None:
            delay = max(timedelta(0), last + timedelta(seconds=routing.group_interval_s) - now)
    n = await enqueue(conn, incident_id=incident_id, event=event, kind=kind, channels=route.channels,
                      payload=payload, now=now, delay=delay)
    if n:
        await conn.execute(incident_timeline.insert().values(
            incident_id=incident_id, at=now, kind="page_queued", actor=SYSTEM_ACTOR,
            detail={"kind": kind, "channels": route.channels, "team": route.team, "event": event},
        ))
    return n


class IncidentConflict(Exception):
    """The action does not apply to the incident in its current state."""


async def act(
    conn: AsyncConnection,
    *,
    incident_id: uuid.UUID,
    action: str,
    actor: str,
    now: datetime,
    routing: Routing | None,
    note: str | None = None,
) -> dict[str, Any] | None:
    """acknowledge | resolve | note, by a person; returns the incident, None if unknown."""
    row = (await conn.execute(
        sa.select(incidents).where(incidents.c.id == incident_id).with_for_update()
    )).mappings().first()
    if row is None:
        return None
    status = row["status"]
    timeline_id = None
    if action == "acknowledge":
        if status == "resolved":
            raise IncidentConflict("incident is resolved; it cannot be acknowledged")
        if status == "triggered":
            await conn.execute(incidents.update().where(incidents.c.id == incident_id).values(
                status="acknowledged", acknowledged_at=now, acknowledged_by=actor, updated_at=now,
                next_escalation_at=None))
            timeline_id = await _timeline(conn, incident_id, now, "acknowledged", actor, {"note": note})
    elif action == "resolve":
        if status != "resolved":
            await conn.execute(incidents.update().where(incidents.c.id == incident_id).values(
                status="resolved", resolved_at=now, resolved_by=actor, resolved_how="manual", updated_at=now,
                next_escalation_at=None))
            timeline_id = await _timeline(conn, incident_id, now, "resolved", actor,
                                          {"how": "manual", "note": note})
    elif action == "note":
        await _timeline(conn, incident_id, now, "note_added", actor, {"text": note})
    elif action == "reassign":
        if status == "resolved":
            raise IncidentConflict("incident is resolved; it cannot be reassigned")
        await conn.execute(incidents.update().where(incidents.c.id == incident_id).values(
            assignee=note, updated_at=now))
        await _timeline(conn, incident_id, now, "reassigned", actor, {"from": row["assignee"], "to": note})
    else:
        raise ValueError(action)
    if timeline_id is not None and routing is not None:
        await notify(conn, incident_id=incident_id, event=f"t{timeline_id}", kind=action,
                     routing=routing, now=now)
    return await get_incident(conn, incident_id=incident_id)


async def _timeline(
    conn: AsyncConnection, incident_id: uuid.UUID, at: datetime, kind: str, actor: str, detail: dict[str, Any]
) -> int:
    res = await conn.execute(
        incident_timeline.insert()
        .values(incident_id=incident_id, at=at, kind=kind, actor=actor, detail=detail)
        .returning(incident_timeline.c.id)
    )
    return int(res.scalar_one())


def _state_of(row: Any) -> IncidentState:
    return IncidentState(
        severity=Severity(row["severity"]),
        score=row["score"],
        reason=row["reason"],
        started_at=row["started_at"],
        last_signal_at=row["last_signal_at"],
        report_count=row["report_count"],
        signal_count=row["signal_count"],
        factors=list(row["factors"]),
        sample_report_ids=list(row["sample_report_ids"]),
        status=row["status"],
        resolved_at=row["resolved_at"],
    )


def _state_columns(s: IncidentState) -> dict[str, Any]:
    extra = {"resolved_how": "auto", "resolved_by": SYSTEM_ACTOR} if s.status == "resolved" else {}
    return {
        **extra,
        "status": s.status,
        "severity": s.severity.value,
        "score": s.score,
        "reason": s.reason,
        "started_at": s.started_at,
        "last_signal_at": s.last_signal_at,
        "resolved_at": s.resolved_at,
        "report_count": s.report_count,
        "signal_count": s.signal_count,
        "factors": s.factors,
        "sample_report_ids": s.sample_report_ids,
    }


# ---- reads -------------------------------------------------------------------------------


class BadCursor(ValueError):
    """The pagination cursor is not one this API issued."""


def encode_cursor(detected_at: datetime, incident_id: uuid.UUID) -> str:
    raw = orjson.dumps([detected_at.isoformat(), str(incident_id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, iid = orjson.loads(raw)
        when = datetime.fromisoformat(ts)
        if when.tzinfo is None:
            raise ValueError("naive timestamp")
        return when, uuid.UUID(iid)
    except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
        raise BadCursor("cursor is malformed; use the next_cursor of a previous page") from exc


async def list_incidents(
    conn: AsyncConnection,
    *,
    status: str | None = None,
    severity: str | None = None,
    category: str | None = None,
    stream_id: str | None = None,
    region: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first (detected_at, id), keyset-paginated; returns the page and the next cursor.
    ``since``/``until`` bound detected_at (since inclusive, until exclusive)."""
    q = sa.select(incidents)
    for col, val in (
        (incidents.c.status, status),
        (incidents.c.severity, severity),
        (incidents.c.category, category),
        (incidents.c.stream_id, stream_id),
        (incidents.c.region, region),
    ):
        if val is not None:
            q = q.where(col == val)
    if since is not None:
        q = q.where(incidents.c.detected_at >= since)
    if until is not None:
        q = q.where(incidents.c.detected_at < until)
    if cursor is not None:
        ts, iid = decode_cursor(cursor)
        q = q.where(
            sa.tuple_(incidents.c.detected_at, incidents.c.id)
            < sa.tuple_(
                sa.literal(ts, incidents.c.detected_at.type), sa.literal(iid, incidents.c.id.type)
            )
        )
    q = q.order_by(incidents.c.detected_at.desc(), incidents.c.id.desc()).limit(limit + 1)
    rows = [dict(r) for r in (await conn.execute(q)).mappings()]
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1]["detected_at"], rows[-1]["id"])
    return rows, next_cursor


async def get_incident(conn: AsyncConnection, *, incident_id: uuid.UUID) -> dict[str, Any] | None:
    row = (await conn.execute(sa.select(incidents).where(incidents.c.id == incident_id))).mappings().first()
    return dict(row) if row is not None else None


async def get_timeline(conn: AsyncConnection, *, incident_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await conn.execute(
        sa.select(incident_timeline)
        .where(incident_timeline.c.incident_id == incident_id)
        .order_by(incident_timeline.c.id)
    )
    return [dict(r) for r in rows.mappings()]


async def get_severity_history(conn: AsyncConnection, *, incident_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await conn.execute(
        sa.select(incident_severity.c.at, incident_severity.c.severity)
        .where(incident_severity.c.incident_id == incident_id)
        .order_by(incident_severity.c.id)
    )
    return [dict(r) for r in rows.mappings()]
