"""Silence matching and inhibition (pure)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.notifier.silences import inhibiting, inhibits, is_active, matches, silencing
from shared.events import Category

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def inc(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {"id": uuid.uuid4(), "status": "triggered", "kind": "spike", "category": "violence",
                               "severity": "SEV2", "region": "DE", "stream_id": "s1", "team": "live-ops"}
    base.update(kw)
    return base


def silence(matchers: dict[str, list[str]], start: int = -10, end: int = 10, **kw: object) -> dict[str, object]:
    return {"id": uuid.uuid4(), "matchers": matchers, "starts_at": T0 + timedelta(minutes=start),
            "ends_at": T0 + timedelta(minutes=end), "expired_at": None, **kw}


def test_matchers_every_named_field_must_allow_the_value() -> None:
    i = inc()
    assert matches({}, i)
    assert matches({"category": ["violence", "hate"]}, i)
    assert matches({"category": ["violence"], "region": ["DE"], "team": ["live-ops"]}, i)
    assert not matches({"category": ["violence"], "region": ["BR"]}, i)
    assert not matches({"stream_id": ["s1"]}, inc(stream_id=None))  # missing value matches nothing
    assert not matches({"colour": ["red"]}, i)  # unknown field never matches (fails closed)
    assert matches({"category": ["violence"]}, inc(category=Category.violence))  # enums by value


def test_silence_is_active_in_its_half_open_window_until_expired() -> None:
    s = silence({"category": ["violence"]}, start=0, end=10)
    assert is_active(s, T0)
    assert not is_active(s, T0 - timedelta(seconds=1))
    assert not is_active(s, T0 + timedelta(minutes=10))
    assert is_active(s, T0 + timedelta(minutes=10) - timedelta(microseconds=1))
    expired = {**s, "expired_at": T0 + timedelta(minutes=5)}
    assert is_active(expired, T0 + timedelta(minutes=4)) and not is_active(expired, T0 + timedelta(minutes=5))


def test_silencing_picks_an_active_matching_silence() -> None:
    i = inc()
    other = silence({"category": ["spam"]})
    later = silence({"region": ["DE"]}, start=20, end=30)
    hit = silence({"category": ["violence"], "severity": ["SEV2", "SEV3"]})
    assert silencing([other, later, hit], i, T0) is hit
    assert silencing([other, later], i, T0) is None
    assert silencing([other, later], i, T0 + timedelta(minutes=25)) is later


RULE = {"id": uuid.uuid4(), "source_match": {"kind": ["trend"]}, "target_match": {"kind": ["spike"]},
        "equal": ["category"]}


def test_inhibition_needs_source_target_and_equal_fields() -> None:
    trend = inc(kind="trend", stream_id=None)
    spike = inc(kind="spike")
    assert inhibits(RULE, trend, spike)
    assert not inhibits(RULE, inc(kind="trend", category="hate"), spike)  # differs on an equal field
    assert not inhibits(RULE, {**trend, "status": "resolved"}, spike)  # only open sources inhibit
    assert not inhibits(RULE, spike, trend)  # direction matters
    assert not inhibits({**RULE, "target_match": {"kind": ["spike", "trend"]}, "source_match": {}}, spike, spike)
    both_missing = {**RULE, "equal": ["category", "region"]}
    assert inhibits(both_missing, {**trend, "region": None}, {**spike, "region": None})
    assert not inhibits(both_missing, {**trend, "region": None}, spike)


def test_inhibiting_finds_the_rule_and_the_source() -> None:
    trend = inc(kind="trend", stream_id=None)
    spike = inc(kind="spike")
    unrelated = {"id": uuid.uuid4(), "source_match": {"category": ["spam"]}, "target_match": {}, "equal": []}
    assert inhibiting([unrelated, RULE], spike, [spike, trend]) == (RULE, trend)
    assert inhibiting([unrelated, RULE], spike, [spike]) is None
