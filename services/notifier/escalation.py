"""Escalation policies: who is paged, and when the next level is, while nobody acknowledges.
Pure, no I/O (the worker that applies them is ``services.notifier.escalator``).

```yaml
escalation_policies:
  tns-critical:
    levels:
      - {targets: ["schedule:child-safety"], ack_timeout_minutes: 5}
      - {targets: [lead-lee, "schedule:live-ops"], ack_timeout_minutes: 10}
    repeat: 1            # run the levels once more after the last one, then stop
```

Steps are numbered from 1 and keep counting through repeats: with two levels and
``repeat: 1`` steps 1..4 page levels 1, 2, 1, 2. Step 1 is paged when the incident opens;
step ``k`` is paged ``ack_timeout_minutes`` of step ``k - 1`` later, unless acknowledged.
After the last step there is nothing more to page (``next_escalation_at`` is None).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from services.notifier.oncall import Schedule, who_is_on_call

SCHEDULE_PREFIX = "schedule:"


class Level(BaseModel):
    """Who one level pages, and how long they have to acknowledge."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    targets: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]
    ack_timeout_minutes: Annotated[float, Field(gt=0)]


class EscalationPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    levels: Annotated[list[Level], Field(min_length=1)]
    repeat: Annotated[int, Field(ge=0, le=100)] = 0

    @property
    def total_steps(self) -> int:
        return len(self.levels) * (self.repeat + 1)

    def schedules(self) -> set[str]:
        """Schedule names the policy's targets refer to."""
        return {t[len(SCHEDULE_PREFIX):] for lv in self.levels for t in lv.targets
                if t.startswith(SCHEDULE_PREFIX)}


@dataclass(frozen=True, slots=True)
class Step:
    """The next escalation to perform."""

    targets: list[str]  # as configured ("schedule:<team>" not yet resolved)
    level: int  # the step number this becomes (1-based, counting through repeats)
    policy_level: int  # which of the policy's levels it is (1-based)
    next_escalation_at: datetime | None  # when the step after it is due; None if last


def next_step(policy: EscalationPolicy, level: int, now: datetime) -> Step | None:
    """Given that steps ``1..level`` were paged (0: none yet), the step to page at ``now``;
    None when the policy is exhausted."""
    if level < 0:
        raise ValueError("level must be >= 0")
    if level >= policy.total_steps:
        return None
    lv = policy.levels[level % len(policy.levels)]
    step = level + 1
    due = now + timedelta(minutes=lv.ack_timeout_minutes) if step < policy.total_steps else None
    return Step(list(lv.targets), step, level % len(policy.levels) + 1, due)


def resolve_targets(targets: list[str], schedules: dict[str, Schedule], at: datetime) -> list[str]:
    """Replace ``schedule:<team>`` by whoever is on call at ``at``; de-duplicated, in order.
    A schedule with nobody on call (or unknown) stays as written, so the page still names it."""
    out: list[str] = []
    for t in targets:
        person: str = t
        if t.startswith(SCHEDULE_PREFIX):
            sched = schedules.get(t[len(SCHEDULE_PREFIX):])
            person = (who_is_on_call(sched, at) if sched is not None else None) or t
        if person not in out:
            out.append(person)
    return out
