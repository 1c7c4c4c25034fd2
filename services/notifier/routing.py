"""Routing: which team and which channels an incident pages. Pure, loaded from YAML.

```yaml
channels:
  pd-tns:   {type: pagerduty, url: https://events.pagerduty.com/v2/enqueue, routing_key: R0UT1NGKEY}
  slack-ops: {type: slack, url: https://hooks.slack.com/services/T/B/X}
  audit:    {type: webhook, url: https://audit.example/hook, secret: s3cret}
routes:                      # first match wins
  - match: {category: [child_safety, violent_extremism]}
    team: child-safety
    channels: [pd-tns, slack-ops]
  - match: {severity: [SEV1, SEV2], region: [BR]}
    team: latam
    channels: [pd-tns]
default:
  team: live-ops
  channels: [slack-ops]
```

A match lists allowed values per field (category, severity, region, stream_id, kind); a
missing field matches anything. Validation happens at start with messages that name the
offending path, so a bad file stops the notifier with one clear line.

Secrets need not be in the file: ``routing_key: ${PD_ROUTING_KEY}`` takes the value from the
environment (``${VAR:-default}``, ``$${`` for a literal), see ``services.notifier.envsubst``.

Optional on-call keys: ``schedules`` (per team, see ``services.notifier.oncall``),
``escalation_policies`` (see ``services.notifier.escalation``) and, on a route,
``escalation_policy: <name>``: incidents on that route page its levels until acknowledged,
and ``high_urgency_from: SEV2``: only incidents of that severity or worse page (high
urgency); the others are recorded as low urgency, and page if they rise into it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, model_validator

from services.notifier.envsubst import UnsetVariable, expand
from services.notifier.escalation import EscalationPolicy
from services.notifier.oncall import Schedule
from shared.errors import ConfigError
from shared.events import Severity

MATCH_FIELDS = ("category", "severity", "region", "stream_id", "kind")


class PagerDutyChannel(BaseModel):
    """PagerDuty Events API v2."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["pagerduty"]
    url: HttpUrl = HttpUrl("https://events.pagerduty.com/v2/enqueue")
    routing_key: Annotated[str, Field(min_length=1)]


class SlackChannel(BaseModel):
    """A Slack-compatible incoming webhook."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["slack"]
    url: HttpUrl


class WebhookChannel(BaseModel):
    """A generic JSON webhook, signed with HMAC-SHA256."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["webhook"]
    url: HttpUrl
    secret: Annotated[str, Field(min_length=8)]


ChannelConfig = Annotated[PagerDutyChannel | SlackChannel | WebhookChannel, Field(discriminator="type")]


class Match(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    category: list[str] | None = None
    severity: list[str] | None = None
    region: list[str] | None = None
    stream_id: list[str] | None = None
    kind: list[str] | None = None

    def matches(self, attrs: dict[str, Any]) -> bool:
        for f in MATCH_FIELDS:
            allowed = getattr(self, f)
            if allowed is not None and attrs.get(f) not in allowed:
                return False
        return True


class Route(BaseModel):
    """Where matching incidents go."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    match: Match = Field(default_factory=Match)
    team: Annotated[str, Field(min_length=1)]
    channels: list[str] = Field(default_factory=list)
    escalation_policy: str | None = None  # a name under escalation_policies
    # An incident that resolves (on its own event time) within the group wait, before its
    # first page went out: "page" sends that page, saying it opened and resolved, and the
    # resolve; "record" pages nobody and says so on the timeline (only with a group wait).
    resolved_in_group_wait: Literal["page", "record"] = "page"
    # Urgency: incidents of this severity or worse are high urgency and page; the rest are
    # low urgency, recorded (console, API, weekly report) and paged only if their severity
    # rises into the band. The default pages every severity: a route drops pages only when
    # its file says so.
    high_urgency_from: Severity = Severity.SEV4

    def urgency(self, severity: str) -> str:
        """``high`` or ``low`` for an incident of ``severity`` on this route."""
        return "high" if Severity(severity).rank <= self.high_urgency_from.rank else "low"


class Routing(BaseModel):
    """The whole routing file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    channels: dict[str, ChannelConfig] = Field(default_factory=dict)
    routes: list[Route] = Field(default_factory=list)
    default: Route = Field(default_factory=lambda: Route(team="live-ops"))
    # Alertmanager's group wait: a new incident's first page waits this long, so a flap that
    # resolves at once pages nobody and a severity rise in the meantime goes out in one page
    group_wait_s: float = Field(0.0, ge=0, le=3600)
    # ... and later changes (a severity rise) page at most once per group interval
    group_interval_s: float = Field(0.0, ge=0, le=86400)
    # flap handling: a spike or trend that opens again on the same key within this long (event
    # time) of its incident resolving by itself continues that incident (one page; the
    # timeline shows each burst), and the resolve page waits this long to see whether it
    # does (Alertmanager users ask for this; 0 = every burst is an incident of its own)
    flap_cooldown_s: float = Field(900.0, ge=0, le=86400)
    # an open incident with no new signal for this long resolves itself (0 = never)
    auto_resolve_after_s: float = Field(0.0, ge=0)
    # Alertmanager's repeat interval: a triggered, unacknowledged incident without an
    # escalation policy is paged again this long after its last page (0 = never)
    repeat_interval_s: float = Field(0.0, ge=0)
    schedules: dict[str, Schedule] = Field(default_factory=dict)  # keyed by team
    escalation_policies: dict[str, EscalationPolicy] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _channels_exist(self) -> Routing:
        for i, r in enumerate([*self.routes, self.default]):
            for c in r.channels:
                if c not in self.channels:
                    where = f"routes[{i}]" if i < len(self.routes) else "default"
                    raise ValueError(f"{where} names unknown channel {c!r}")
        return self

    @model_validator(mode="after")
    def _record_only_needs_a_wait(self) -> Routing:
        for i, r in enumerate([*self.routes, self.default]):
            if r.resolved_in_group_wait == "record" and self.group_wait_s <= 0:
                where = f"routes[{i}]" if i < len(self.routes) else "default"
                raise ValueError(f"{where}: resolved_in_group_wait: record needs group_wait_s > 0 "
                                 "(with no wait every incident is paged)")
        return self

    @model_validator(mode="after")
    def _escalation_names_exist(self) -> Routing:
        for i, r in enumerate([*self.routes, self.default]):
            if r.escalation_policy is not None and r.escalation_policy not in self.escalation_policies:
                where = f"routes[{i}]" if i < len(self.routes) else "default"
                raise ValueError(f"{where} names unknown escalation policy {r.escalation_policy!r}")
        for name, policy in self.escalation_policies.items():
            for s in sorted(policy.schedules() - set(self.schedules)):
                raise ValueError(f"escalation_policies.{name} names unknown schedule {s!r}")
        return self

    def route(self, attrs: dict[str, Any]) -> Route:
        """The first route whose match fits, else the default."""
        for r in self.routes:
            if r.match.matches(attrs):
                return r
        return self.default


def load_routing(path: Path | None, env: Mapping[str, str] | None = None) -> Routing:
    """Read and validate the routing file; no file means the default route, no channels.
    ``${VAR}`` in its values are filled from ``env`` (the process environment by default)."""
    if path is None:
        return Routing()
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"routing file {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"routing file {path} is not valid YAML: {exc}") from exc
    try:
        data = expand(data or {}, os.environ if env is None else env)
    except UnsetVariable as exc:
        raise ConfigError(f"routing file {path}: {exc}") from exc
    try:
        return Routing.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "<root>"
        raise ConfigError(f"routing file {path}: {loc}: {first['msg']}") from exc
