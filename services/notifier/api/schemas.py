"""HTTP models of the incidents API."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from shared.events import Category, Severity

Status = Literal["triggered", "acknowledged", "resolved"]
Sort = Literal["-detected_at", "detected_at", "severity"]
Urgency = Literal["high", "low"]

# The instants the API accepts, after applying the offset: years 1970 to 9000 in UTC. Wider
# ones overflow date arithmetic (0001-01-01 minus 7 days) or PostgreSQL's and asyncpg's
# conversion to UTC (9999-12-31T23:59:59-23:59 is in year 10000). store.decode_cursor
# holds cursors to the same range.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9001, 1, 1, tzinfo=UTC)  # exclusive
TIME_RANGE = "between 1970-01-01T00:00:00Z and 9000-12-31T23:59:59Z"


def _in_range(value: datetime) -> datetime:
    if not EARLIEST <= value < LATEST:  # comparing aware datetimes cannot overflow
        raise ValueError(f"must be {TIME_RANGE} (after applying its UTC offset)")
    return value


ApiTime = Annotated[AwareDatetime, AfterValidator(_in_range)]
"""An RFC 3339 time with an offset, within [EARLIEST, LATEST)."""

_DIGITS = re.compile(r"-?[0-9]{1,12}")


def _digits_only(value: object) -> object:
    """A query integer is written in digits: not `` 5`` or ``5.0``, which lax parsing took."""
    if isinstance(value, str) and not _DIGITS.fullmatch(value):
        raise ValueError("must be a whole number written in digits, e.g. 50")
    return value


QueryInt = Annotated[int, BeforeValidator(_digits_only)]


class FactorOut(BaseModel):
    name: str
    value: float | str
    contribution: float


class IncidentOut(BaseModel):
    """An incident as the API returns it."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    dedup_key: str
    kind: str
    status: Status
    severity: Severity
    urgency: Urgency = Field("high", description="high: paged; low: recorded, not paged (its "
                                                  "severity is below its route's high_urgency_from).")
    category: Category
    stream_id: str | None
    region: str | None
    score: float
    reason: str = Field(description="Why it was raised, in one sentence.")
    started_at: datetime = Field(description="Event time of the surge's first report (for a critical "
                                             "report, of that report).")
    detected_event_at: datetime = Field(description="Event time of the report that decided it; "
                                                    "minus started_at, the detection delay.")
    detected_at: datetime = Field(description="When the notifier recorded it (wall clock).")
    updated_at: datetime
    last_signal_at: datetime
    resolved_at: datetime | None
    report_count: int
    signal_count: int
    factors: list[FactorOut]
    sample_report_ids: list[str]
    team: str | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_by: str | None = None
    resolved_how: str | None = None
    assignee: str | None = None
    escalation_level: int = 0
    first_action_at: datetime | None = None
    time_to_action_s: float | None = None


class IncidentPage(BaseModel):
    """One page of incidents, newest first; pass ``next_cursor`` back as ``cursor``."""

    items: list[IncidentOut]
    next_cursor: str | None


class RatePointOut(BaseModel):
    at: datetime = Field(description="Start of the hop.")
    count: int = Field(description="Reports in the hop.")
    per_minute: float


class RateOut(BaseModel):
    """The incident's report rate per hop, with the learned baseline and the level it took to
    open a spike, both per minute: enough to draw the chart with its baseline band."""

    hop_s: int | None
    baseline_per_minute: float | None
    upper_per_minute: float | None
    points: list[RatePointOut]


class TimelineEntry(BaseModel):
    at: datetime
    kind: str
    actor: str
    detail: dict[str, Any]


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[dict[str, Any]] | None = None


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)


Actor = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]


class ActionIn(BaseModel):
    """Who acts on the incident, and an optional note for the timeline."""

    model_config = ConfigDict(extra="forbid")
    actor: Actor | None = Field(None, description="Defaults to the name of the API key.")
    note: Annotated[str, StringConstraints(max_length=4000)] | None = None


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actor: Actor | None = Field(None, description="Defaults to the name of the API key.")
    text: Annotated[str, StringConstraints(min_length=1, max_length=4000)]


class NotificationOut(BaseModel):
    """One notification of the outbox and where its delivery stands."""

    id: int
    key: str
    channel: str
    kind: str
    status: Literal["pending", "sent", "dead", "cancelled"]
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    sent_at: datetime | None
    last_error: str | None


class TeamOnCall(BaseModel):
    """Who carries the pager for one team (None: nobody, the schedule has not started)."""

    team: str
    person: str | None
    next_handoff_at: datetime | None = Field(None, description="The next hand-off of its rotations.")


class OnCall(BaseModel):
    """Who is on call now, per team with a schedule in the routing file."""

    at: datetime
    teams: list[TeamOnCall]


class ReassignIn(BaseModel):
    """Who takes the incident over."""

    model_config = ConfigDict(extra="forbid")
    actor: Actor | None = Field(None, description="Defaults to the name of the API key.")
    assignee: Actor


class SeverityChange(BaseModel):
    at: datetime
    severity: Severity


class SlaRow(BaseModel):
    severity: Severity
    category: Category
    incidents: int
    acknowledged_within_sla: int
    actioned_within_sla: int
    ack_share: float
    action_share: float


class StatsOut(BaseModel):
    """Program figures over [since, until)."""

    since: datetime
    until: datetime
    incidents: int
    by: dict[Literal["category", "severity", "status", "urgency"], dict[str, int]]
    mtta_s: float | None = Field(description="Mean time to acknowledge, seconds.")
    mttr_s: float | None = Field(description="Mean time to resolve, seconds.")
    time_to_action_p50_s: float | None
    time_to_action_p90_s: float | None
    sla_targets_minutes: dict[Literal["acknowledge", "action"], dict[str, float]]
    sla: list[SlaRow]
