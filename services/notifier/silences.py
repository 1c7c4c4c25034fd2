"""Silences and inhibition, Alertmanager semantics. Pure: rows in, decisions out.

A *matcher set* maps a field (category, severity, region, stream_id, kind, team) to the
list of values it allows; a field it does not name matches anything, a field it names
matches only an incident whose value is in the list (a missing value matches nothing).

A *silence* holds the pages of matching incidents while it is active:
``starts_at <= now < ends_at`` and not expired by hand.

An *inhibit rule* holds the pages of a target incident (matching ``target_match``) while
some other OPEN incident matches ``source_match`` and agrees with the target on every
field named in ``equal`` (both missing counts as agreeing, as in Alertmanager). An
incident never inhibits itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

MATCH_FIELDS = ("category", "severity", "region", "stream_id", "kind", "team")

Matchers = Mapping[str, Sequence[str]]


def _value(attrs: Mapping[str, Any], field: str) -> str | None:
    v = attrs.get(field)
    if v is None:
        return None
    return str(getattr(v, "value", v))  # enums compare by their value


def matches(matchers: Matchers, attrs: Mapping[str, Any]) -> bool:
    """Every named field's value is one of the allowed values."""
    for field, allowed in matchers.items():
        if field not in MATCH_FIELDS:
            return False  # an unknown field can never be satisfied: fail closed, never silence all
        v = _value(attrs, field)
        if v is None or v not in allowed:
            return False
    return True


def is_active(silence: Mapping[str, Any], now: datetime) -> bool:
    """Active from ``starts_at`` (inclusive) to ``ends_at`` (exclusive), unless expired."""
    expired_at = silence.get("expired_at")
    if expired_at is not None and expired_at <= now:
        return False
    return bool(silence["starts_at"] <= now < silence["ends_at"])


def silencing(
    silences: Iterable[Mapping[str, Any]], attrs: Mapping[str, Any], now: datetime
) -> Mapping[str, Any] | None:
    """The first active silence matching the incident, if any (earliest ``starts_at``, then id)."""
    hits = [s for s in silences if is_active(s, now) and matches(s["matchers"], attrs)]
    if not hits:
        return None
    return min(hits, key=lambda s: (s["starts_at"], str(s["id"])))


def inhibits(rule: Mapping[str, Any], source: Mapping[str, Any], target: Mapping[str, Any]) -> bool:
    """Does open incident ``source`` inhibit ``target`` under ``rule``?"""
    if source.get("id") is not None and source.get("id") == target.get("id"):
        return False
    if source.get("status") == "resolved":
        return False
    if not matches(rule["target_match"], target) or not matches(rule["source_match"], source):
        return False
    return all(_value(source, f) == _value(target, f) for f in rule["equal"])


def inhibiting(
    rules: Iterable[Mapping[str, Any]], target: Mapping[str, Any], sources: Iterable[Mapping[str, Any]]
) -> tuple[Mapping[str, Any], Mapping[str, Any]] | None:
    """The first (rule, source incident) that inhibits ``target``, if any."""
    srcs = list(sources)
    for rule in rules:
        if not matches(rule["target_match"], target):
            continue
        for src in srcs:
            if inhibits(rule, src, target):
                return rule, src
    return None
