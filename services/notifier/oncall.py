"""On-call schedules: who carries the pager for a team at a given instant. Pure, no I/O.

```yaml
schedules:
  child-safety:                 # keyed by team; "schedule:child-safety" in a policy
    rotations:                  # layers: a later layer that has started wins
      - people: [amy, bo, cy]
        start: 2026-11-02       # the first hand-off, at handoff_time in tz
        handoff_time: "09:00"
        tz: Europe/Berlin       # an IANA zone, "UTC", or a fixed offset "+HH:MM"
        length: 1 week          # "1 week", "2 days", "12 hours", "1w", "1d", "12h"
    overrides:                  # win over every rotation while they last (start <= t < end)
      - {person: dee, start: "2026-11-24T18:00:00Z", end: "2026-11-25T09:00:00Z"}
```

Rotations whose length is whole days hand off at ``handoff_time`` on the local calendar of
``tz``: with a named zone, 09:00 Europe/Berlin stays 09:00 across daylight-saving changes
(a shift spanning the change is an hour shorter or longer). Shorter lengths ("12 hours")
count elapsed time from the first hand-off. A fixed offset never moves.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

_UNITS = {
    "w": 604800, "week": 604800, "weeks": 604800,
    "d": 86400, "day": 86400, "days": 86400,
    "h": 3600, "hour": 3600, "hours": 3600,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
}
_LENGTH = re.compile(r"^\s*(\d+)\s*([a-z]+)\s*$")
_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


def parse_length(value: Any) -> timedelta:
    """``"1 week"``, ``"2 days"``, ``"12h"`` or a timedelta / seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        m = _LENGTH.match(value.lower())
        if m and m.group(2) in _UNITS:
            return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
    raise ValueError(f"rotation length {value!r} is not like '1 week', '2 days' or '12 hours'")


def parse_tz(value: Any) -> tzinfo:
    """``"UTC"`` / ``"Z"``, a fixed offset ``"+HH:MM"``, or an IANA zone ``"Europe/Berlin"``."""
    if isinstance(value, tzinfo):
        return value
    if isinstance(value, str):
        name = value.strip()
        if name.upper() in ("UTC", "Z", "GMT"):
            return UTC
        m = _OFFSET.match(name)
        if m:
            sign = -1 if m.group(1) == "-" else 1
            hours, minutes = int(m.group(2)), int(m.group(3))
            if hours < 24 and minutes < 60:
                return timezone(sign * timedelta(hours=hours, minutes=minutes))
        elif "/" in name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                pass
    raise ValueError(f"timezone {value!r} is not 'UTC', an offset like '+02:00' or a zone like 'Europe/Berlin'")


class Rotation(BaseModel):
    """People taking turns, handing off every ``length`` from ``start`` at ``handoff_time``."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    people: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]
    start: date
    handoff_time: time = time(9, 0)
    tz: tzinfo = UTC
    length: timedelta = timedelta(weeks=1)

    @field_validator("length", mode="before")
    @classmethod
    def _length(cls, v: Any) -> timedelta:
        d = parse_length(v)
        if d <= timedelta(0):
            raise ValueError("rotation length must be positive")
        return d

    @field_validator("tz", mode="before")
    @classmethod
    def _tz(cls, v: Any) -> tzinfo:
        return parse_tz(v)

    @field_validator("handoff_time", mode="before")
    @classmethod
    def _quoted_time(cls, v: Any) -> Any:
        if isinstance(v, int | float):  # YAML reads an unquoted 9:30 as sexagesimal 570
            # TRY004 asks for TypeError, but pydantic turns only ValueError into a validation error
            raise ValueError("handoff_time must be a quoted 'HH:MM'")  # noqa: TRY004
        return v

    @field_validator("handoff_time")
    @classmethod
    def _naive_time(cls, v: time) -> time:
        if v.tzinfo is not None:
            raise ValueError("handoff_time takes no offset; set tz")
        return v

    @property
    def epoch(self) -> datetime:
        """The first hand-off instant."""
        return self.handoff(0)

    def handoff(self, k: int) -> datetime:
        """The instant (UTC) of hand-off ``k``: on the local calendar for whole-day lengths."""
        days, rest = divmod(self.length, timedelta(days=1))
        if rest or k == 0:
            first = datetime.combine(self.start, self.handoff_time, tzinfo=self.tz).astimezone(UTC)
            return first + k * self.length
        return datetime.combine(self.start + k * days * timedelta(days=1), self.handoff_time,
                                tzinfo=self.tz).astimezone(UTC)

    def _period(self, at: datetime) -> int:
        """Index of the hand-off in force at ``at`` (-1 before the first)."""
        at = at.astimezone(UTC)  # compare instants, never wall times within one zone
        days, rest = divmod(self.length, timedelta(days=1))
        if rest:
            return (at - self.epoch) // self.length
        k = (at.astimezone(self.tz).date() - self.start).days // days
        while k >= 0 and self.handoff(k) > at:
            k -= 1
        while self.handoff(k + 1) <= at:
            k += 1
        return max(k, -1)

    def on_call(self, at: datetime) -> str | None:
        """Who this rotation puts on call at ``at``; None before it starts."""
        k = self._period(at)
        return None if k < 0 else self.people[k % len(self.people)]

    def next_handoff(self, at: datetime) -> datetime:
        """The first hand-off strictly after ``at``."""
        return self.handoff(max(self._period(at) + 1, 0))


class Override(BaseModel):
    """``person`` is on call from ``start`` (inclusive) to ``end`` (exclusive)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    person: Annotated[str, Field(min_length=1)]
    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _ordered(self) -> Override:
        if self.end <= self.start:
            raise ValueError("override end must be after its start")
        return self

    def covers(self, at: datetime) -> bool:
        return self.start <= at < self.end


class Schedule(BaseModel):
    """One team's schedule."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rotations: Annotated[list[Rotation], Field(min_length=1)]
    overrides: list[Override] = Field(default_factory=list)


def who_is_on_call(schedule: Schedule, at: datetime) -> str | None:
    """The person on call at ``at`` (an aware datetime). An override wins (the last listed,
    if several overlap); otherwise the last rotation that has started; None if none has."""
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    for o in reversed(schedule.overrides):
        if o.covers(at):
            return o.person
    for r in reversed(schedule.rotations):
        person = r.on_call(at)
        if person is not None:
            return person
    return None
