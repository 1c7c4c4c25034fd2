"""Incident persistence: async repository functions with keyword-only arguments.

``apply_signal`` is idempotent by ``signal_id``: a signal already recorded changes nothing,
so a redelivered batch is harmless. One open incident per dedup key is enforced by a partial
unique index, and the open incident is locked (``FOR UPDATE``) while a signal merges into it.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notifier.escalator import start_escalation
from services.notifier.incidents import Change, IncidentState, kind_of, merge, open_incident, reopen
from services.notifier.outbox import (
    cancel_if_never_paged,
    cancel_pending,
    enqueue,
    incident_payload,
    last_sent_at,
    unsent_trigger_refreshed,
)
from services.notifier.routing import Routing
from services.notifier.silence_store import held_by
from services.notifier.tables import (
    incident_rate,
    incident_severity,
    incident_signals,
    incident_timeline,
    incidents,
)
from shared.events import RateSeries, Severity, Signal

if TYPE_CHECKING:
    from services.notifier.metrics import NotifierMetrics

SYSTEM_ACTOR = "livetriage"


@dataclass(frozen=True, slots=True)
class Applied:
    """Outcome of applying one signal."""

    incident_id: uuid.UUID | None
    created: bool
    duplicate: bool
    notified: int = 0


async def apply_signal(
    conn: AsyncConnection, *, signal: Signal, now: datetime, routing: Routing | None = None,
    metrics: NotifierMetrics | None = None,
) -> Applied:
    """Merge ``signal`` into its open incident (or open one), and enqueue the notifications
    the change calls for, in the caller's transaction."""
    if signal.kind == "progress":
        out: list[Applied | None] = [None]
        await _extend_rates(conn, [signal], [0], out)
        assert out[0] is not None
        return out[0]
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
        if routing is not None and routing.flap_cooldown_s > 0 and signal.kind in ("spike", "trend"):
            reopened = await _continue_flap(conn, signal=signal, now=now, routing=routing, metrics=metrics)
            if reopened is not None:
                return reopened
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
                detected_event_at=signal.observed_at,
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
            return await apply_signal(conn, signal=signal, now=now, routing=routing, metrics=metrics)
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

    kinds = await _record(conn, signal=signal, incident_id=incident_id, change=change, now=now,
                          created=created)
    page = "trigger" if created else "resolve" if "resolved" in kinds else (
        "update" if "severity_raised" in kinds else None)
    notified = 0
    if page is not None and routing is not None:
        notified = await notify(conn, incident_id=incident_id, event=signal.signal_id, kind=page,
                                routing=routing, now=now, at=signal.observed_at, set_team=created,
                                metrics=metrics)
    return Applied(incident_id, created=created, duplicate=False, notified=notified)


async def _record(
    conn: AsyncConnection, *, signal: Signal, incident_id: uuid.UUID, change: Change, now: datetime,
    created: bool, detail: dict[str, Any] | None = None,
) -> set[str]:
    """What applying ``signal`` leaves behind besides the incident row: the signal itself (its
    id makes a redelivery a no-op), its chart points, the timeline entries of ``change``
    (each with ``detail`` added) and, for a new incident or a rise, a severity-history row.
    Returns the kinds of timeline entries."""
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
    if signal.rate is not None:
        await record_rate(conn, incident_id=incident_id, rate=signal.rate)
    if change.events:
        await conn.execute(
            incident_timeline.insert(),
            [
                {"incident_id": incident_id, "at": now, "kind": k, "actor": SYSTEM_ACTOR,
                 "detail": {**d, **(detail or {})}}
                for k, d in change.events
            ],
        )
    kinds = {k for k, _ in change.events}
    if created or "severity_raised" in kinds:
        await conn.execute(incident_severity.insert().values(
            incident_id=incident_id, at=now, severity=change.state.severity.value))
    return kinds


async def _continue_flap(
    conn: AsyncConnection, *, signal: Signal, now: datetime, routing: Routing,
    metrics: NotifierMetrics | None,
) -> Applied | None:
    """A key that opens again within the cool-down of its incident resolving by itself
    continues that incident, or None if there is none to continue. Its resolve page, held
    for the cool-down, is cancelled: the person paged for the first burst is not paged again.
    If that page has gone out already (the cool-down passed on the wall clock in a catch-up),
    the incident re-opens with a trigger page of its own, so no receiver is left believing
    it resolved."""
    since = signal.observed_at - timedelta(seconds=routing.flap_cooldown_s)
    prev = (
        await conn.execute(
            sa.select(incidents)
            .where(incidents.c.dedup_key == signal.dedup_key, incidents.c.status == "resolved",
                   incidents.c.resolved_how == "auto", incidents.c.resolved_at >= since,
                   incidents.c.resolved_at <= signal.observed_at)
            .order_by(incidents.c.resolved_at.desc())
            .limit(1)
            .with_for_update()
        )
    ).mappings().first()
    if prev is None:
        return None
    incident_id = prev["id"]
    state = _state_of(prev)
    change = reopen(state, signal)
    if prev["acknowledged_at"] is not None:
        change.state.status = "acknowledged"  # someone already owns it
    try:
        async with conn.begin_nested():  # another notifier may have opened the key meanwhile
            await conn.execute(
                incidents.update().where(incidents.c.id == incident_id).values(
                    updated_at=now, resolved_by=None, resolved_how=None, **_state_columns(change.state)))
    except sa.exc.IntegrityError:
        return await apply_signal(conn, signal=signal, now=now, routing=routing, metrics=metrics)
    held_back = await cancel_pending(conn, incident_id=incident_id, kind="resolve")
    await _record(conn, signal=signal, incident_id=incident_id, change=change, now=now, created=False,
                  detail={"resolve_page": "cancelled" if held_back else "already sent"})
    notified = 0
    if not held_back:
        notified = await notify(conn, incident_id=incident_id, event=signal.signal_id, kind="trigger",
                                routing=routing, now=now, at=signal.observed_at, metrics=metrics)
    if metrics is not None and held_back:
        metrics.pages_held.labels("flap").inc()
    return Applied(incident_id, created=False, duplicate=False, notified=notified)


async def apply_signals(
    conn: AsyncConnection, *, signals: list[Signal], now: datetime, routing: Routing | None = None,
    metrics: NotifierMetrics | None = None,
) -> list[Applied]:
    """``apply_signal`` for a batch, in the caller's transaction, with the same outcome.

    ``progress`` signals (a closed window of an open spike: nine in ten in a storm) are
    applied together, two statements for all of them, instead of two each. Their effect
    (later ``last_signal_at``, larger chart counts) commutes with everything except a change
    of which incident is open for their key, so a key's waiting progress is applied first
    only before its resolve, or before a signal that may open an incident."""
    out: list[Applied | None] = [None] * len(signals)
    waiting: dict[str, list[int]] = {}  # dedup key -> its progress signals not applied yet
    known_open: set[str] = set()  # keys with an incident open, as of this point in the batch
    for i, sig in enumerate(signals):
        key = sig.dedup_key
        if sig.kind == "progress":
            waiting.setdefault(key, []).append(i)
            continue
        if key in waiting and (sig.kind == "resolve" or key not in known_open):
            await _extend_rates(conn, signals, waiting.pop(key), out)
        out[i] = res = await apply_signal(conn, signal=sig, now=now, routing=routing, metrics=metrics)
        if sig.kind == "resolve":
            known_open.discard(key)
        elif res.incident_id is not None and not res.duplicate:
            known_open.add(key)
    if waiting:
        await _extend_rates(conn, signals, [i for idx in waiting.values() for i in idx], out)
    return [a for a in out if a is not None]


# Constant statements over arrays (unnest): compiled and prepared once, whatever the batch.
_TOUCH_OPEN = sa.text(
    "UPDATE incidents AS i SET last_signal_at = greatest(i.last_signal_at, v.at) "
    "FROM unnest(CAST(:keys AS text[]), CAST(:ats AS timestamptz[])) AS v(key, at) "
    "WHERE i.dedup_key = v.key AND i.status <> 'resolved' RETURNING i.id, i.dedup_key"
)
_UPSERT_RATE = sa.text(
    "INSERT INTO incident_rate (incident_id, at, count, hop_s, window_s, baseline, upper) "
    "SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:ats AS timestamptz[]), CAST(:counts AS int[]), "
    "CAST(:hops AS int[]), CAST(:windows AS int[]), CAST(:baselines AS float8[]), CAST(:uppers AS float8[])) "
    "ON CONFLICT (incident_id, at) DO UPDATE SET count = greatest(incident_rate.count, excluded.count)"
)


async def _extend_rates(
    conn: AsyncConnection, signals: list[Signal], where: list[int], out: list[Applied | None]
) -> None:
    """Progress signals (the ones at ``where``; a window closed during a spike): add their
    counts to their open incidents' charts, one upsert for all the points, and move each
    incident's ``last_signal_at`` on, one UPDATE for all of them: the spike is still on, so a
    long spike must not auto-resolve as quiet."""
    latest: dict[str, datetime] = {}
    for i in where:
        sig = signals[i]
        if sig.dedup_key not in latest or sig.observed_at > latest[sig.dedup_key]:
            latest[sig.dedup_key] = sig.observed_at
    rows = await conn.execute(_TOUCH_OPEN, {"keys": list(latest), "ats": list(latest.values())})
    open_ids = {key: iid for iid, key in rows.all()}
    points: dict[tuple[uuid.UUID, datetime], tuple[Any, ...]] = {}
    for i in where:
        sig = signals[i]
        iid = open_ids.get(sig.dedup_key)
        if iid is None or sig.rate is None:
            continue
        r = sig.rate
        for p in r.points:
            k = (iid, p.at)
            if k not in points or p.count > points[k][2]:  # a row once per statement
                points[k] = (iid, p.at, p.count, r.hop_s, r.window_s, r.baseline, r.upper)
    await _upsert_rate(conn, list(points.values()))
    for i in where:
        out[i] = Applied(open_ids.get(signals[i].dedup_key), created=False, duplicate=False)


async def record_rate(conn: AsyncConnection, *, incident_id: uuid.UUID, rate: RateSeries) -> None:
    """Idempotent by (incident, hop): a pane's count only grows (the opening signal saw the
    pane still filling), so the larger count recorded for a hop stands."""
    await _upsert_rate(conn, [(incident_id, p.at, p.count, rate.hop_s, rate.window_s, rate.baseline, rate.upper)
                              for p in rate.points])


async def _upsert_rate(conn: AsyncConnection, rows: list[tuple[Any, ...]]) -> None:
    """Chart points as (incident_id, at, count, hop_s, window_s, baseline, upper), one
    (incident, at) at most once: ``_UPSERT_RATE`` takes them as columns."""
    if rows:
        cols = zip(*rows, strict=True)
        await conn.execute(_UPSERT_RATE, dict(zip(
            ("ids", "ats", "counts", "hops", "windows", "baselines", "uppers"), map(list, cols), strict=True)))


async def get_rate(conn: AsyncConnection, *, incident_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await conn.execute(
        sa.select(incident_rate).where(incident_rate.c.incident_id == incident_id).order_by(incident_rate.c.at)
    )
    return [dict(r) for r in rows.mappings()]


async def notify(
    conn: AsyncConnection,
    *,
    incident_id: uuid.UUID,
    event: str,
    kind: str,
    routing: Routing,
    now: datetime,
    at: datetime | None = None,
    set_team: bool = False,
    metrics: NotifierMetrics | None = None,
) -> int:
    """Route the incident as it is now and enqueue ``kind`` for each of the route's channels.

    ``at`` is the change's own event time (the signal's ``observed_at``; ``now`` for a
    person's action). The group wait runs on event time, from the incident's ``detected_event_at``:
    whether the notifier read the signals live or caught up on them after an outage in one
    batch, the same changes fold into the first page and the same pages go out."""
    row = await get_incident(conn, incident_id=incident_id)
    assert row is not None
    route = routing.route(row)
    if set_team or row.get("team") is None:
        await conn.execute(incidents.update().where(incidents.c.id == incident_id).values(team=route.team))
    first_page = set_team
    if set_team or row["urgency"] == "low":
        urgency = route.urgency(row["severity"])
        if urgency == "low" or kind not in ("trigger", "update"):
            # low urgency: on the record (console, API, weekly report), nobody paged
            if set_team:
                await conn.execute(incidents.update().where(incidents.c.id == incident_id)
                                   .values(urgency="low"))
                await conn.execute(incident_timeline.insert().values(
                    incident_id=incident_id, at=now, kind="low_urgency", actor=SYSTEM_ACTOR,
                    detail={"severity": row["severity"], "team": route.team,
                            "high_urgency_from": route.high_urgency_from.value, "event": event}))
                if metrics is not None:
                    metrics.pages_held.labels("low_urgency").inc()
            return 0
        if not set_team:  # a low-urgency incident rose into the route's high band: page it now
            await conn.execute(incidents.update().where(incidents.c.id == incident_id)
                               .values(urgency="high"))
            await conn.execute(incident_timeline.insert().values(
                incident_id=incident_id, at=now, kind="urgency_raised", actor=SYSTEM_ACTOR,
                detail={"severity": row["severity"], "event": event}))
            kind, first_page = "trigger", True
    held = await held_by(conn, incident={**row, "team": route.team}, now=now)
    if held is not None:  # a silence or an inhibition: record it, page nobody
        if held.silence_id is not None:
            await conn.execute(incidents.update().where(incidents.c.id == incident_id)
                               .values(silenced_by=held.silence_id))
        await conn.execute(incident_timeline.insert().values(
            incident_id=incident_id, at=now, kind=held.kind, actor=SYSTEM_ACTOR,
            detail={**held.detail, "kind": kind, "event": event},
        ))
        if metrics is not None:
            metrics.pages_held.labels(held.kind.removeprefix("page_")).inc()
        return 0
    at = at or now
    wait = timedelta(seconds=routing.group_wait_s)
    wait_ends = row["detected_event_at"] + wait  # on event time
    in_wait = at < wait_ends
    payload = incident_payload(row, route.team)
    if kind == "update":
        # A rise within the group wait folds into the first page if it has not gone out; a
        # later one folds into an update still waiting out its group interval.
        kinds = (("trigger",) if in_wait else ()) + (("update",) if routing.group_interval_s else ())
        if kinds and await unsent_trigger_refreshed(conn, incident_id=incident_id, payload=payload,
                                                    kinds=kinds):
            if metrics is not None:
                metrics.pages_held.labels("grouped").inc()
            return 0
    if kind == "resolve":
        if in_wait and route.resolved_in_group_wait == "record" and await cancel_if_never_paged(
                conn, incident_id=incident_id):
            await conn.execute(incident_timeline.insert().values(
                incident_id=incident_id, at=now, kind="page_cancelled", actor=SYSTEM_ACTOR,
                detail={"reason": "resolved within the group wait; the route records such "
                                  "incidents without paging (resolved_in_group_wait: record)",
                        "event": event}))
            if metrics is not None:
                metrics.pages_held.labels("group_wait").inc()
            return 0
        # A first page still waiting says the incident opened and resolved; the resolve
        # follows it on every channel (a channel hears an incident's changes in order).
        await unsent_trigger_refreshed(conn, incident_id=incident_id, payload=payload,
                                       kinds=("trigger", "update"))
    if first_page and route.escalation_policy is not None:  # its first page: page level 1, time level 2
        payload["targets"] = await start_escalation(conn, incident_id=incident_id, routing=routing,
                                                    policy_name=route.escalation_policy, now=now,
                                                    metrics=metrics)
    delay = timedelta(0)
    if kind == "resolve" and routing.flap_cooldown_s > 0 and row.get("resolved_how") == "auto":
        # held for the cool-down (event time): a burst in it continues the incident and
        # cancels this page (a catch-up, long past it, sends at once)
        delay = max(timedelta(0), at + timedelta(seconds=routing.flap_cooldown_s) - now)
    if kind == "trigger":
        # what is left of the wait: all of it live, none in a catch-up (event time long past)
        delay = min(wait, max(timedelta(0), wait_ends - now))
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


SORTS = ("-detected_at", "detected_at", "severity")
"""List orders: newest first (default), oldest first, most severe first (then newest)."""


def encode_cursor(row: dict[str, Any], sort: str = "-detected_at") -> str:
    """Where the next page starts: the last row's sort key. A default-order cursor stays
    ``[detected_at, id]`` so cursors handed out before sorting existed still work."""
    payload: list[Any] = [row["detected_at"].isoformat(), str(row["id"])]
    if sort != "-detected_at":
        payload.append(sort)
    if sort == "severity":
        payload.append(row["severity"])
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str = "-detected_at") -> tuple[datetime, uuid.UUID, str | None]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = orjson.loads(raw)
        if not isinstance(payload, list) or not 2 <= len(payload) <= 4:
            raise ValueError("not a cursor")
        ts, iid, *rest = payload
        when = datetime.fromisoformat(ts)
        if when.tzinfo is None:
            raise ValueError("naive timestamp")
        # the API's time range (api/schemas.py EARLIEST, LATEST): we never issue a cursor
        # outside it, and one far enough out overflows the conversion to UTC (a 500)
        if not datetime(1970, 1, 1, tzinfo=UTC) <= when < datetime(9001, 1, 1, tzinfo=UTC):
            raise ValueError("timestamp out of range")
        key = uuid.UUID(iid)
        cursor_sort = rest[0] if rest else "-detected_at"
        sev = rest[1] if len(rest) > 1 else None
    except (ValueError, TypeError, AttributeError, orjson.JSONDecodeError) as exc:
        raise BadCursor("cursor is malformed; use the next_cursor of a previous page") from exc
    if cursor_sort != sort:
        raise BadCursor(f"cursor was issued for sort={cursor_sort}, not sort={sort}")
    if sort == "severity" and sev not in ("SEV1", "SEV2", "SEV3", "SEV4"):
        raise BadCursor("cursor is malformed; use the next_cursor of a previous page")
    return when, key, sev


def json_columns(names: tuple[str, ...]) -> tuple[str, ...]:
    """Which of these incident columns ``list_incidents(columns=...)`` returns as JSON text."""
    return tuple(n for n in names if isinstance(incidents.c[n].type, pg.JSONB))


async def list_incidents(
    conn: AsyncConnection,
    *,
    status: str | None = None,
    severity: str | None = None,
    urgency: str | None = None,
    category: str | None = None,
    stream_id: str | None = None,
    region: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    sort: str = "-detected_at",
    limit: int,
    cursor: str | None = None,
    columns: tuple[str, ...] | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page in ``sort`` order (ties broken by id), keyset-paginated; returns the page and
    the next cursor. ``since``/``until`` bound detected_at (since inclusive, until exclusive);
    ``columns`` narrows the rows to those columns (the sort keys are always included) and
    returns JSONB columns as JSON text."""
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}")
    c = incidents.c
    if columns is None:
        q = sa.select(incidents)
    else:
        # JSON columns come back as their text: a caller rendering JSON embeds it as it is
        wanted = dict.fromkeys((*columns, "id", "detected_at", "severity"))
        as_text = json_columns(tuple(wanted))
        q = sa.select(*(
            c[name].cast(sa.Text).label(name) if name in as_text else c[name]
            for name in wanted
        ))
    for col, val in (
        (c.status, status),
        (c.severity, severity),
        (c.urgency, urgency),
        (c.category, category),
        (c.stream_id, stream_id),
        (c.region, region),
    ):
        if val is not None:
            q = q.where(col == val)
    if since is not None:
        q = q.where(c.detected_at >= since)
    if until is not None:
        q = q.where(c.detected_at < until)
    if cursor is not None:
        ts, iid, sev = decode_cursor(cursor, sort)
        here = sa.tuple_(c.detected_at, c.id)
        there = sa.tuple_(sa.literal(ts, c.detected_at.type), sa.literal(iid, c.id.type))
        if sort == "detected_at":
            q = q.where(here > there)
        elif sort == "severity":
            # SEV1 < SEV2 < ... as text: most severe first, then newest first
            q = q.where(sa.or_(c.severity > sev, sa.and_(c.severity == sev, here < there)))
        else:
            q = q.where(here < there)
    if sort == "detected_at":
        order = [c.detected_at.asc(), c.id.asc()]
    elif sort == "severity":
        order = [c.severity.asc(), c.detected_at.desc(), c.id.desc()]
    else:
        order = [c.detected_at.desc(), c.id.desc()]
    q = q.order_by(*order).limit(limit + 1)
    result = await conn.execute(q)
    # a result, not a dict: iterating it yields rows, .keys() the column names
    names = tuple(str(k) for k in result.keys())  # noqa: SIM118  (plain str: SQLAlchemy hands out a subclass)
    rows = [dict(zip(names, r, strict=True)) for r in result]  # cheaper than RowMapping -> dict
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1], sort)
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
