"""Routes of the incidents API."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notifier import outbox, store
from services.notifier import stats as stats_mod
from services.notifier.api.deps import ApiState, get_conn, get_state
from services.notifier.api.schemas import (
    TIME_RANGE,
    ActionIn,
    ApiTime,
    Health,
    IncidentOut,
    IncidentPage,
    NoteIn,
    NotificationOut,
    OnCall,
    Problem,
    QueryInt,
    RateOut,
    RatePointOut,
    ReassignIn,
    SeverityChange,
    Sort,
    StatsOut,
    Status,
    TeamOnCall,
    TimelineEntry,
    Urgency,
)
from services.notifier.oncall import who_is_on_call
from shared.db import ping
from shared.events import Category, Severity

router = APIRouter()
PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "Bad request"},
    404: {"model": Problem, "description": "Not found"},
    422: {"model": Problem, "description": "Invalid parameters"},
}
Conn = Annotated[AsyncConnection, Depends(get_conn)]
INCIDENT_FIELDS = tuple(IncidentOut.model_fields)  # every one is a column of incidents
JSON_FIELDS = store.json_columns(INCIDENT_FIELDS)


@router.get("/v1/incidents", response_model=IncidentPage, tags=["incidents"], responses=PROBLEMS)
async def list_incidents(
    conn: Conn,
    request: Request,
    status: Status | None = None,
    severity: Severity | None = None,
    urgency: Annotated[Urgency | None, Query(description="high: paged; low: recorded only.")] = None,
    category: Category | None = None,
    stream_id: Annotated[str | None, Query(max_length=128)] = None,
    region: Annotated[str | None, Query(pattern=r"^[A-Z]{2}$")] = None,
    since: Annotated[ApiTime | None, Query(description=f"detected_at >= since; {TIME_RANGE}")] = None,
    until: Annotated[ApiTime | None, Query(description=f"detected_at < until; {TIME_RANGE}")] = None,
    sort: Annotated[
        Sort,
        Query(description="-detected_at: newest first; detected_at: oldest first; "
                          "severity: SEV1 first, newest first within a severity."),
    ] = "-detected_at",
    limit: Annotated[QueryInt, Query(ge=1, le=200, description="Page size.")] = 50,
    cursor: Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page "
                                                                     "(same filters and sort).")] = None,
) -> Response:
    """Incidents, newest first unless ``sort`` says otherwise, with keyset pagination."""
    state = get_state(request)
    try:
        rows, next_cursor = await store.list_incidents(
            conn,
            status=status,
            severity=severity.value if severity else None,
            urgency=urgency,
            category=category.value if category else None,
            stream_id=stream_id,
            region=region,
            since=since,
            until=until,
            sort=sort,
            limit=min(limit, state.settings.page_size_max),
            cursor=cursor,
            columns=INCIDENT_FIELDS,
        )
    except store.BadCursor as exc:
        raise HTTPException(400, str(exc)) from exc
    # The hot path of the console and of automation: rows (exactly IncidentOut's fields, JSON
    # columns as text) straight to JSON with orjson, which renders what IncidentOut does (a
    # test holds them equal) at a fifth of the cost. default=str: asyncpg's own UUID type.
    for r in rows:
        for name in JSON_FIELDS:
            r[name] = orjson.Fragment(r[name])
    body = orjson.dumps({"items": rows, "next_cursor": next_cursor}, option=orjson.OPT_UTC_Z, default=str)
    return Response(body, media_type="application/json")


@router.get("/v1/incidents/{incident_id}", response_model=IncidentOut, tags=["incidents"], responses=PROBLEMS)
async def get_incident(incident_id: uuid.UUID, conn: Conn) -> Response:
    row = await store.get_incident(conn, incident_id=incident_id)
    if row is None:
        raise HTTPException(404, f"incident {incident_id} not found")
    return Response(IncidentOut.model_validate(row).model_dump_json(), media_type="application/json")


@router.get(
    "/v1/incidents/{incident_id}/timeline",
    response_model=list[TimelineEntry],
    tags=["incidents"],
    responses=PROBLEMS,
)
async def get_timeline(incident_id: uuid.UUID, conn: Conn) -> list[TimelineEntry]:
    if await store.get_incident(conn, incident_id=incident_id) is None:
        raise HTTPException(404, f"incident {incident_id} not found")
    return [TimelineEntry.model_validate(r) for r in await store.get_timeline(conn, incident_id=incident_id)]


@router.get("/v1/incidents/{incident_id}/rate", response_model=RateOut, tags=["incidents"], responses=PROBLEMS)
async def get_rate(incident_id: uuid.UUID, conn: Conn) -> RateOut:
    """Report rate per hop around the spike (for critical reports: empty)."""
    if await store.get_incident(conn, incident_id=incident_id) is None:
        raise HTTPException(404, f"incident {incident_id} not found")
    rows = await store.get_rate(conn, incident_id=incident_id)
    if not rows:
        return RateOut(hop_s=None, baseline_per_minute=None, upper_per_minute=None, points=[])
    last = rows[-1]  # the baseline is frozen during a spike: the latest row says it
    return RateOut(
        hop_s=last["hop_s"],
        baseline_per_minute=round(last["baseline"] * 60 / last["window_s"], 3),
        upper_per_minute=round(last["upper"] * 60 / last["window_s"], 3),
        points=[RatePointOut(at=r["at"], count=r["count"], per_minute=round(r["count"] * 60 / r["hop_s"], 3))
                for r in rows],
    )


async def _act(
    request: Request, incident_id: uuid.UUID, action: str, actor: str | None, note: str | None
) -> IncidentOut:
    state = get_state(request)
    actor = actor or request.state.principal.name
    try:
        async with state.engine.begin() as conn:
            row = await store.act(conn, incident_id=incident_id, action=action, actor=actor,
                                  now=state.clock.now(), routing=state.routing, note=note)
    except store.IncidentConflict as exc:
        raise HTTPException(409, str(exc)) from exc
    if row is None:
        raise HTTPException(404, f"incident {incident_id} not found")
    if state.on_enqueued is not None:
        state.on_enqueued()
    return IncidentOut.model_validate(row)


ACTION_PROBLEMS: dict[int | str, dict[str, Any]] = {**PROBLEMS, 409: {"model": Problem, "description": "Not in a state for this"}}


@router.post("/v1/incidents/{incident_id}/acknowledge", response_model=IncidentOut, tags=["incidents"],
             responses=ACTION_PROBLEMS)
async def acknowledge_incident(incident_id: uuid.UUID, body: ActionIn, request: Request) -> IncidentOut:
    """Acknowledge: stops escalation and tells the channels (PagerDuty acknowledge)."""
    return await _act(request, incident_id, "acknowledge", body.actor, body.note)


@router.post("/v1/incidents/{incident_id}/resolve", response_model=IncidentOut, tags=["incidents"],
             responses=ACTION_PROBLEMS)
async def resolve_incident(incident_id: uuid.UUID, body: ActionIn, request: Request) -> IncidentOut:
    """Resolve by hand; the channels get a resolve."""
    return await _act(request, incident_id, "resolve", body.actor, body.note)


@router.post("/v1/incidents/{incident_id}/notes", response_model=IncidentOut, tags=["incidents"],
             responses=ACTION_PROBLEMS)
async def add_note(incident_id: uuid.UUID, body: NoteIn, request: Request) -> IncidentOut:
    """Add a note to the incident's timeline."""
    return await _act(request, incident_id, "note", body.actor, body.text)


@router.post("/v1/incidents/{incident_id}/reassign", response_model=IncidentOut, tags=["incidents"],
             responses=ACTION_PROBLEMS)
async def reassign_incident(incident_id: uuid.UUID, body: ReassignIn, request: Request) -> IncidentOut:
    """Give the incident to someone else (recorded on the timeline)."""
    return await _act(request, incident_id, "reassign", body.actor, body.assignee)


@router.get("/v1/incidents/{incident_id}/severity", response_model=list[SeverityChange],
            tags=["incidents"], responses=PROBLEMS)
async def severity_history(incident_id: uuid.UUID, conn: Conn) -> list[SeverityChange]:
    """Every severity the incident has had, and when."""
    if await store.get_incident(conn, incident_id=incident_id) is None:
        raise HTTPException(404, f"incident {incident_id} not found")
    return [SeverityChange.model_validate(r) for r in await store.get_severity_history(conn, incident_id=incident_id)]


@router.get("/v1/incidents/{incident_id}/notifications", response_model=list[NotificationOut],
            tags=["incidents"], responses=PROBLEMS)
async def incident_notifications(incident_id: uuid.UUID, conn: Conn) -> list[NotificationOut]:
    """Every page sent or pending for the incident, with its delivery state."""
    if await store.get_incident(conn, incident_id=incident_id) is None:
        raise HTTPException(404, f"incident {incident_id} not found")
    rows = await outbox.for_incident(conn, incident_id=incident_id)
    return [NotificationOut.model_validate(r) for r in rows]


@router.get("/v1/oncall", response_model=OnCall, tags=["oncall"])
async def oncall_now(request: Request) -> OnCall:
    """Who is on call now for each team with a schedule (overrides included)."""
    state = get_state(request)
    now = state.clock.now()
    teams = []
    for team, schedule in sorted((state.routing.schedules if state.routing else {}).items()):
        handoffs = [r.next_handoff(now) for r in schedule.rotations]
        teams.append(TeamOnCall(team=team, person=who_is_on_call(schedule, now),
                                next_handoff_at=min(handoffs) if handoffs else None))
    return OnCall(at=now, teams=teams)


@router.get("/v1/stats", response_model=StatsOut, tags=["stats"], responses=PROBLEMS)
async def incident_stats(
    conn: Conn,
    request: Request,
    since: Annotated[ApiTime | None, Query(description=f"Default: 7 days before until; {TIME_RANGE}")] = None,
    until: Annotated[ApiTime | None, Query(description=f"Default: now; {TIME_RANGE}")] = None,
) -> dict[str, Any]:
    """Incidents by category, severity and status; MTTA, MTTR, time to action; SLA shares."""
    state = get_state(request)
    until = until or state.clock.now()
    since = since or until - timedelta(days=7)
    if since >= until:
        raise HTTPException(400, "since must be before until")
    if until - since > timedelta(days=366):
        raise HTTPException(400, "the range may span at most 366 days")
    return await stats_mod.stats(conn, since=since, until=until,
                                 sla_ack_minutes=state.settings.sla_ack_minutes,
                                 sla_action_minutes=state.settings.sla_action_minutes)


@router.get("/healthz", response_model=Health, tags=["ops"])
async def healthz() -> Health:
    """Liveness: the process serves requests."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, tags=["ops"], responses={503: {"model": Health}})
async def readyz(request: Request) -> Response:
    """Readiness: the database and the broker both answer."""
    state: ApiState = get_state(request)
    checks: dict[str, str] = {}

    async def check(name: str, probe) -> None:  # type: ignore[no-untyped-def]
        try:
            await asyncio.wait_for(probe(), timeout=2.0)
            checks[name] = "ok"
        except Exception as exc:  # noqa: BLE001  (any failure means not ready; say which)
            checks[name] = f"unavailable: {type(exc).__name__}"

    await asyncio.gather(check("database", lambda: ping(state.engine)), check("broker", state.broker_check))
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/metrics", tags=["ops"], response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this process."""
    return Response(generate_latest(get_state(request).registry), media_type=CONTENT_TYPE_LATEST)
