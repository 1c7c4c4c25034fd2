"""Routes and models of silences and inhibit rules (Alertmanager semantics)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notifier import silence_store
from services.notifier.api.deps import get_conn, get_state
from services.notifier.api.schemas import ApiTime, Problem, QueryInt

router = APIRouter()
Conn = Annotated[AsyncConnection, Depends(get_conn)]
PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "Bad request (a body that is not UTF-8 JSON)"},
    404: {"model": Problem, "description": "Not found"},
    422: {"model": Problem, "description": "Invalid request"},
}
MAX_SILENCE = timedelta(days=30)

Value = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]
Values = Annotated[list[Value], Field(min_length=1, max_length=100)]
Field_ = Literal["category", "severity", "region", "stream_id", "kind", "team"]
Text = Annotated[str, StringConstraints(min_length=1, max_length=1000, strip_whitespace=True)]
Who = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]


class MatchersIn(BaseModel):
    """Allowed values per field; a field left out matches anything. At least one field."""

    model_config = ConfigDict(extra="forbid")
    category: Values | None = None
    severity: Values | None = None
    region: Values | None = None
    stream_id: Values | None = None
    kind: Values | None = None
    team: Values | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> MatchersIn:
        if not self.as_dict():
            raise ValueError("name at least one field (category, severity, region, stream_id, kind, team)")
        return self

    def as_dict(self) -> dict[str, list[str]]:
        return {k: sorted(set(v)) for k, v in self.model_dump(exclude_none=True).items()}


class SilenceIn(BaseModel):
    """Hold the pages of matching incidents from ``starts_at`` (default now) until ``ends_at``."""

    model_config = ConfigDict(extra="forbid")
    matchers: MatchersIn
    starts_at: ApiTime | None = None
    ends_at: ApiTime
    created_by: Who
    comment: Text

    @model_validator(mode="after")
    def _order(self) -> SilenceIn:
        if self.starts_at is not None:
            if self.ends_at <= self.starts_at:
                raise ValueError("ends_at must be after starts_at")
            if self.ends_at - self.starts_at > MAX_SILENCE:
                raise ValueError("a silence lasts at most 30 days")
        return self


class SilenceOut(BaseModel):
    id: uuid.UUID
    matchers: dict[str, list[str]]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    created_at: datetime
    expired_at: datetime | None
    state: Literal["pending", "active", "expired"]


def _silence_out(row: dict[str, Any], now: datetime) -> SilenceOut:
    ended = (row["expired_at"] is not None and row["expired_at"] <= now) or row["ends_at"] <= now
    state: Literal["pending", "active", "expired"] = (
        "expired" if ended else "active" if row["starts_at"] <= now else "pending")
    return SilenceOut(**row, state=state)


class InhibitRuleIn(BaseModel):
    """An open incident matching ``source_match`` holds the pages of incidents matching
    ``target_match`` that agree with it on every ``equal`` field."""

    model_config = ConfigDict(extra="forbid")
    source_match: MatchersIn
    target_match: MatchersIn
    equal: Annotated[list[Field_], Field(max_length=6)] = Field(default_factory=list)
    created_by: Who
    comment: Text

    @model_validator(mode="after")
    def _unique(self) -> InhibitRuleIn:
        if len(set(self.equal)) != len(self.equal):
            raise ValueError("equal names a field twice")
        return self


class InhibitRuleOut(BaseModel):
    id: uuid.UUID
    source_match: dict[str, list[str]]
    target_match: dict[str, list[str]]
    equal: list[str]
    created_by: str
    comment: str
    created_at: datetime


@router.post("/v1/silences", response_model=SilenceOut, status_code=201, tags=["silences"], responses=PROBLEMS)
async def create_silence(body: SilenceIn, request: Request) -> SilenceOut:
    """Create a silence. Pages of matching incidents are recorded on their timelines, not sent."""
    state = get_state(request)
    now = state.clock.now()
    starts_at = body.starts_at or now
    if body.ends_at <= now:
        raise HTTPException(422, "ends_at is in the past; the silence would never be active")
    if body.ends_at <= starts_at or body.ends_at - starts_at > MAX_SILENCE:
        raise HTTPException(422, "ends_at must be after starts_at, by at most 30 days")
    async with state.engine.begin() as conn:
        row = await silence_store.create_silence(
            conn, matchers=body.matchers.as_dict(), starts_at=starts_at, ends_at=body.ends_at,
            created_by=body.created_by, comment=body.comment, now=now)
    return _silence_out(row, now)


@router.get("/v1/silences", response_model=list[SilenceOut], tags=["silences"], responses=PROBLEMS)
async def list_silences(
    conn: Conn,
    request: Request,
    active: Annotated[bool, Query(description="Only silences in force now.")] = False,
    limit: Annotated[QueryInt, Query(ge=1, le=500)] = 200,
) -> list[SilenceOut]:
    """Silences, newest first."""
    now = get_state(request).clock.now()
    rows = await silence_store.list_silences(conn, now=now, active_only=active, limit=limit)
    return [_silence_out(r, now) for r in rows]


@router.get("/v1/silences/{silence_id}", response_model=SilenceOut, tags=["silences"], responses=PROBLEMS)
async def get_silence(silence_id: uuid.UUID, conn: Conn, request: Request) -> SilenceOut:
    row = await silence_store.get_silence(conn, silence_id=silence_id)
    if row is None:
        raise HTTPException(404, f"silence {silence_id} not found")
    return _silence_out(row, get_state(request).clock.now())


@router.delete("/v1/silences/{silence_id}", response_model=SilenceOut, tags=["silences"], responses=PROBLEMS)
async def expire_silence(silence_id: uuid.UUID, request: Request) -> SilenceOut:
    """Expire a silence now (idempotent). Open incidents it held are paged."""
    state = get_state(request)
    now = state.clock.now()
    async with state.engine.begin() as conn:
        row = await silence_store.expire_silence(conn, silence_id=silence_id, now=now, routing=state.routing)
    if row is None:
        raise HTTPException(404, f"silence {silence_id} not found")
    if state.on_enqueued is not None:
        state.on_enqueued()
    return _silence_out(row, now)


@router.post("/v1/inhibit-rules", response_model=InhibitRuleOut, status_code=201, tags=["silences"],
             responses=PROBLEMS)
async def create_inhibit_rule(body: InhibitRuleIn, request: Request) -> InhibitRuleOut:
    state = get_state(request)
    async with state.engine.begin() as conn:
        row = await silence_store.create_inhibit_rule(
            conn, source_match=body.source_match.as_dict(), target_match=body.target_match.as_dict(),
            equal=list(body.equal), created_by=body.created_by, comment=body.comment, now=state.clock.now())
    return InhibitRuleOut(**row)


@router.get("/v1/inhibit-rules", response_model=list[InhibitRuleOut], tags=["silences"], responses=PROBLEMS)
async def list_inhibit_rules(conn: Conn) -> list[InhibitRuleOut]:
    return [InhibitRuleOut(**r) for r in await silence_store.list_inhibit_rules(conn)]


@router.delete("/v1/inhibit-rules/{rule_id}", status_code=204, tags=["silences"], responses=PROBLEMS,
               response_class=Response)
async def delete_inhibit_rule(rule_id: uuid.UUID, request: Request) -> Response:
    async with get_state(request).engine.begin() as conn:
        if not await silence_store.delete_inhibit_rule(conn, rule_id=rule_id):
            raise HTTPException(404, f"inhibit rule {rule_id} not found")
    return Response(status_code=204)
