"""Event schemas, one pydantic model per topic.

``Report`` is the public contract (schema v1) that moderation tools, viewers and classifiers
publish to ``live.reports``; ``shared/report.schema.json`` is generated from it
(``livetriage schema``) and checked in. ``Signal`` is what triage emits to ``triage.signals``.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
)

SCHEMA_VERSION: Final = 1
MAX_TEXT_CHARS = 2_000

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]

_RFC3339_START = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}")


def _rfc3339_text(value: object) -> object:
    """The contract says an RFC 3339 string: not an epoch number (``0``, ``"1700000000"``),
    which pydantic's datetime parsing would otherwise read as seconds since 1970."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339_START.match(value):
        raise ValueError("must be an RFC 3339 timestamp string, e.g. 2026-11-23T10:00:00Z")
    return value


def _exactly_one(value: object) -> object:
    """``schema_version`` is the integer 1: not ``true`` or ``1.0``, which equal it in Python."""
    if type(value) is not int:
        raise ValueError("schema_version must be the integer 1")
    return value


EventTime = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text)]
# Strict: no bool -> int (true is not 1 viewer), no "500" -> 500, no 5.0 -> 5
Count = Annotated[int, Strict(), Field(ge=0, le=10_000_000_000)]
Score = Annotated[float, Strict(), Field(ge=0.0, le=1.0)]


class Category(StrEnum):
    """What a report says is wrong with a stream."""

    child_safety = "child_safety"
    violent_extremism = "violent_extremism"
    self_harm = "self_harm"
    violence = "violence"
    hate = "hate"
    harassment = "harassment"
    nudity = "nudity"
    dangerous_acts = "dangerous_acts"
    animal_harm = "animal_harm"
    spam = "spam"
    other = "other"


class Source(StrEnum):
    """Who filed the report; trust differs by source."""

    user = "user"
    moderator = "moderator"
    classifier = "classifier"


class Severity(StrEnum):
    """Incident severity, SEV1 the most urgent."""

    SEV1 = "SEV1"
    SEV2 = "SEV2"
    SEV3 = "SEV3"
    SEV4 = "SEV4"

    @property
    def rank(self) -> int:
        """1 for SEV1 ... 4 for SEV4: lower is more severe."""
        return int(self.value[-1])


class Report(BaseModel):
    """A report about a live stream (contract v1). Unknown fields are kept, not rejected."""

    model_config = ConfigDict(frozen=True, extra="allow", str_max_length=MAX_TEXT_CHARS)

    report_id: Identifier = Field(description="Idempotency key: the same id is one report.")
    stream_id: Identifier
    reported_at: EventTime = Field(description="Event time, RFC 3339 with an offset.")
    category: Category
    source: Source
    reporter_id: Identifier | None = None
    region: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = Field(
        default=None, description="ISO 3166-1 alpha-2 code of the reporter's region."
    )
    viewer_count: Count | None = None
    classifier_score: Score | None = None
    language: Annotated[str, StringConstraints(min_length=2, max_length=35)] | None = Field(
        default=None, description="BCP 47 language tag."
    )
    text: Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)] | None = None
    schema_version: Annotated[Literal[1], BeforeValidator(_exactly_one)] = SCHEMA_VERSION


class Factor(BaseModel):
    """One named input to a score, and how much it contributed."""

    model_config = ConfigDict(frozen=True)

    name: str
    value: float | str
    contribution: float


SignalKind = Literal["spike", "critical_report", "trend", "resolve", "progress"]
"""``progress``: a window closed while a spike is open; it only extends the incident's rate
series (no page, no timeline entry)."""


class RatePoint(BaseModel):
    """Reports counted in one hop of event time."""

    model_config = ConfigDict(frozen=True)

    at: datetime = Field(description="Start of the hop.")
    count: int = Field(ge=0)


class RateSeries(BaseModel):
    """The report rate around a spike and the baseline it was judged against: the incident chart."""

    model_config = ConfigDict(frozen=True)

    hop_s: int = Field(gt=0)
    window_s: int = Field(gt=0)
    baseline: float = Field(ge=0, description="Learned mean reports per window.")
    upper: float = Field(ge=0, description="Reports per window it took to open a spike.")
    points: list[RatePoint] = Field(default_factory=list, max_length=360)


class Signal(BaseModel):
    """An explainable triage decision: raise (or resolve) an incident for ``dedup_key``."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    signal_id: str = Field(description="Deterministic: the same decision has the same id.")
    kind: SignalKind
    dedup_key: str = Field(description="Incidents group on this key.")
    stream_id: str | None = None
    category: Category
    region: str | None = None
    severity: Severity
    score: float
    observed_at: datetime = Field(description="Event time of the report that decided it.")
    started_at: datetime | None = Field(None, description="Event time of the surge's first report.")
    window_start: datetime | None = None
    window_end: datetime | None = None
    report_count: int = Field(ge=0)
    reason: str = Field(description="One human sentence: why this fired.")
    factors: list[Factor] = Field(default_factory=list)
    sample_report_ids: list[str] = Field(default_factory=list, max_length=20)
    rate: RateSeries | None = Field(None, description="Per-hop counts for the incident chart.")


def report_json_schema() -> dict[str, Any]:
    """JSON Schema of the report contract, as published in ``shared/report.schema.json``."""
    schema = Report.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://livetriage.dev/schemas/report.v1.json"
    schema["additionalProperties"] = True
    return schema


ActionKind = Literal["stream_ended", "content_removed", "warning", "no_violation", "account_suspended"]
TERMINAL_ACTIONS: frozenset[str] = frozenset({"stream_ended", "content_removed", "account_suspended"})


class ModerationAction(BaseModel):
    """What a moderator (or an automated enforcer) did about a stream, on ``moderation.actions``.

    Idempotent by ``action_id``. A terminal action (stream ended, content removed, account
    suspended) resolves the stream's open incidents.
    """

    model_config = ConfigDict(frozen=True)

    action_id: Identifier = Field(description="Idempotency key: the same id is one action.")
    stream_id: Identifier
    action: ActionKind
    actor: Identifier = Field(description="Who acted: a moderator id or a system name.")
    acted_at: AwareDatetime = Field(description="When the action was taken, RFC 3339 with an offset.")
