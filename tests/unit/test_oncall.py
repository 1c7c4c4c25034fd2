"""On-call schedules, escalation policies and their routing-file validation (pure)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.notifier.escalation import EscalationPolicy, Level, next_step, resolve_targets
from services.notifier.oncall import Override, Rotation, Schedule, parse_length, who_is_on_call
from services.notifier.routing import load_routing
from shared.errors import ConfigError

CET = timezone(timedelta(hours=1))


def weekly() -> Rotation:
    return Rotation.model_validate({"people": ["amy", "bo", "cy"], "start": "2026-11-02",
                                    "handoff_time": "09:00", "tz": "+01:00", "length": "1 week"})


def test_rotation_hands_off_exactly_at_the_handoff_time() -> None:
    s = Schedule(rotations=[weekly()])
    first = datetime(2026, 11, 2, 9, 0, tzinfo=CET)  # 08:00 UTC
    assert who_is_on_call(s, first - timedelta(microseconds=1)) is None  # not started
    assert who_is_on_call(s, first) == "amy"
    assert who_is_on_call(s, first + timedelta(weeks=1) - timedelta(microseconds=1)) == "amy"
    assert who_is_on_call(s, first + timedelta(weeks=1)) == "bo"
    assert who_is_on_call(s, datetime(2026, 11, 16, 8, 0, tzinfo=UTC)) == "cy"  # same instant in UTC
    assert who_is_on_call(s, datetime(2026, 11, 16, 7, 59, tzinfo=UTC)) == "bo"
    assert who_is_on_call(s, first + timedelta(weeks=3)) == "amy"  # wraps around
    assert weekly().next_handoff(first + timedelta(days=2)) == first + timedelta(weeks=1)
    assert weekly().next_handoff(first) == first + timedelta(weeks=1)


def test_override_wins_only_inside_its_window() -> None:
    start = datetime(2026, 11, 3, 18, 0, tzinfo=UTC)
    s = Schedule(rotations=[weekly()],
                 overrides=[Override(person="dee", start=start, end=start + timedelta(hours=15))])
    assert who_is_on_call(s, start - timedelta(seconds=1)) == "amy"
    assert who_is_on_call(s, start) == "dee"
    assert who_is_on_call(s, start + timedelta(hours=15) - timedelta(seconds=1)) == "dee"
    assert who_is_on_call(s, start + timedelta(hours=15)) == "amy"


def test_later_layer_wins_once_started() -> None:
    late = Rotation(people=["zed"], start=date(2026, 11, 10), length=parse_length("1d"))
    s = Schedule(rotations=[weekly(), late])
    assert who_is_on_call(s, datetime(2026, 11, 10, 8, 59, tzinfo=UTC)) == "bo"  # week 2
    assert who_is_on_call(s, datetime(2026, 11, 10, 9, 0, tzinfo=UTC)) == "zed"


@pytest.mark.parametrize("bad", [
    {"people": [], "start": "2026-11-02"},
    {"people": ["a"], "start": "2026-11-02", "length": "fortnight"},
    {"people": ["a"], "start": "2026-11-02", "length": "0 days"},
    {"people": ["a"], "start": "2026-11-02", "tz": "Mars/Olympus"},
    {"people": ["a"], "start": "2026-11-02", "handoff_time": 570},  # YAML's unquoted 9:30
])
def test_bad_rotations_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Rotation.model_validate(bad)


def test_override_must_end_after_start_and_be_aware() -> None:
    with pytest.raises(ValidationError):
        Override.model_validate({"person": "a", "start": "2026-11-02T10:00:00Z", "end": "2026-11-02T09:00:00Z"})
    with pytest.raises(ValidationError):
        Override.model_validate({"person": "a", "start": "2026-11-02T10:00:00", "end": "2026-11-02T11:00:00"})


@given(
    people=st.lists(st.text(min_size=1, max_size=3), min_size=1, max_size=5),
    length_h=st.integers(1, 24 * 14),
    offset_min=st.integers(-14 * 60, 14 * 60),
    t=st.integers(0, 3 * 365 * 24 * 3600),
)
def test_rotation_properties(people: list[str], length_h: int, offset_min: int, t: int) -> None:
    r = Rotation(people=people, start=date(2026, 1, 1), length=timedelta(hours=length_h),
                 tz=timezone(timedelta(minutes=offset_min)))
    at = r.epoch + timedelta(seconds=t)
    who = r.on_call(at)
    assert who == people[(t // (length_h * 3600)) % len(people)]
    nxt = r.next_handoff(at)
    assert at < nxt <= at + r.length
    assert r.on_call(nxt - timedelta(microseconds=1)) == who  # constant until the hand-off
    assert r.on_call(nxt) == people[((t // (length_h * 3600)) + 1) % len(people)]


def test_named_zone_hands_off_at_local_time_across_daylight_saving() -> None:
    # Berlin moves to CEST on 2026-03-29: the 09:00 hand-off moves from 08:00 to 07:00 UTC
    berlin = Rotation(people=["a", "b", "c"], start=date(2026, 3, 27), length="1 day", tz="Europe/Berlin")
    fixed = Rotation(people=["a", "b", "c"], start=date(2026, 3, 27), length="1 day", tz="+01:00")
    z = lambda s: datetime.fromisoformat(s).replace(tzinfo=UTC)  # noqa: E731
    assert berlin.on_call(z("2026-03-27T07:59:59")) is None
    assert berlin.on_call(z("2026-03-27T08:00:00")) == "a"
    assert berlin.on_call(z("2026-03-28T08:00:00")) == "b"
    assert berlin.on_call(z("2026-03-29T06:59:59")) == "b"
    assert berlin.on_call(z("2026-03-29T07:00:00")) == "c"  # 09:00 CEST
    assert fixed.on_call(z("2026-03-29T07:30:00")) == "b"  # a fixed offset does not move
    assert berlin.next_handoff(z("2026-03-28T12:00:00")) == z("2026-03-29T07:00:00")
    assert berlin.next_handoff(z("2026-03-01T00:00:00")) == z("2026-03-27T08:00:00")
    # and back to CET on 2026-10-25
    assert berlin.next_handoff(z("2026-10-24T12:00:00")) == z("2026-10-25T08:00:00")


@given(
    people=st.lists(st.text(min_size=1, max_size=3), min_size=1, max_size=4),
    length_d=st.integers(1, 14),
    t=st.integers(0, 2 * 365 * 24 * 3600),
)
def test_named_zone_rotation_properties(people: list[str], length_d: int, t: int) -> None:
    r = Rotation(people=people, start=date(2026, 1, 1), length=timedelta(days=length_d), tz="America/New_York")
    at = r.epoch + timedelta(seconds=t)
    who = r.on_call(at)
    nxt = r.next_handoff(at)
    assert at < nxt <= at + r.length + timedelta(hours=1)
    assert r.on_call(nxt - timedelta(microseconds=1)) == who
    assert r.on_call(nxt) == people[(people.index(who) + 1) % len(people)] or len(set(people)) < len(people)
    local = nxt.astimezone(r.tz)
    assert (local.hour, local.minute) == (9, 0)  # always at the local hand-off time


T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def policy(repeat: int = 0) -> EscalationPolicy:
    return EscalationPolicy(levels=[Level(targets=["schedule:tns"], ack_timeout_minutes=5),
                                    Level(targets=["lead", "schedule:tns"], ack_timeout_minutes=10)],
                            repeat=repeat)


def test_next_step_walks_the_levels_then_stops() -> None:
    p = policy()
    s1 = next_step(p, 0, T0)
    assert s1 is not None and (s1.level, s1.policy_level, s1.targets) == (1, 1, ["schedule:tns"])
    assert s1.next_escalation_at == T0 + timedelta(minutes=5)
    s2 = next_step(p, 1, T0)
    assert s2 is not None and (s2.level, s2.targets, s2.next_escalation_at) == (2, ["lead", "schedule:tns"], None)
    assert next_step(p, 2, T0) is None


def test_repeat_runs_the_levels_again() -> None:
    p = policy(repeat=2)
    steps, level = [], 0
    while (s := next_step(p, level, T0)) is not None:
        steps.append((s.level, s.policy_level, s.next_escalation_at is None))
        level = s.level
    assert steps == [(1, 1, False), (2, 2, False), (3, 1, False), (4, 2, False), (5, 1, False), (6, 2, True)]
    with pytest.raises(ValueError):
        next_step(p, -1, T0)


def test_resolve_targets_uses_the_schedule_and_dedups() -> None:
    scheds = {"tns": Schedule(rotations=[Rotation(people=["lead", "amy"], start=date(2026, 11, 23),
                                                  handoff_time="12:00", length="1 day")])}  # type: ignore[arg-type]
    assert resolve_targets(["lead", "schedule:tns"], scheds, T0) == ["lead"]
    assert resolve_targets(["lead", "schedule:tns"], scheds, T0 + timedelta(days=1)) == ["lead", "amy"]
    assert resolve_targets(["schedule:tns"], scheds, T0 - timedelta(seconds=1)) == ["schedule:tns"]  # nobody yet
    assert resolve_targets(["schedule:nope"], scheds, T0) == ["schedule:nope"]


ROUTING = """
channels:
  chat: {type: slack, url: "http://127.0.0.1:9/slack"}
schedules:
  tns:
    rotations: [{people: [amy, bo], start: 2026-11-02, handoff_time: "09:00", length: 1 day}]
    overrides: [{person: dee, start: "2026-11-24T00:00:00Z", end: "2026-11-25T00:00:00Z"}]
escalation_policies:
  crit:
    levels: [{targets: ["schedule:tns"], ack_timeout_minutes: 5}, {targets: [lead], ack_timeout_minutes: 5}]
    repeat: 1
routes:
  - {match: {severity: [SEV1]}, team: tns, channels: [chat], escalation_policy: crit}
default: {team: live-ops, channels: [chat]}
"""


def test_routing_file_with_schedules_and_policies(tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text(ROUTING)
    r = load_routing(f)
    assert r.route({"severity": "SEV1"}).escalation_policy == "crit"
    assert r.default.escalation_policy is None
    assert r.escalation_policies["crit"].total_steps == 4
    assert who_is_on_call(r.schedules["tns"], datetime(2026, 11, 24, 12, tzinfo=UTC)) == "dee"


@pytest.mark.parametrize(("change", "expected"), [
    (("escalation_policy: crit}", "escalation_policy: nope}"), "routes[0] names unknown escalation policy 'nope'"),
    (('targets: ["schedule:tns"]', 'targets: ["schedule:ghost"]'),
     "escalation_policies.crit names unknown schedule 'ghost'"),
    (("length: 1 day", "length: 1 fortnight"), "schedules.tns.rotations.0.length"),
    (("ack_timeout_minutes: 5}, {", "ack_timeout_minutes: 0}, {"), "escalation_policies.crit.levels.0"),
    (("default: {team: live-ops, channels: [chat]}", "default: {team: x, escalation_policy: zz}"),
     "default names unknown escalation policy 'zz'"),
])
def test_bad_oncall_config_fails_with_one_clear_line(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    f = tmp_path / "r.yaml"
    assert change[0] in ROUTING
    f.write_text(ROUTING.replace(*change))
    with pytest.raises(ConfigError) as err:
        load_routing(f)
    assert expected in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_the_readme_routing_examples_are_valid() -> None:
    """The README's routing snippets (channels first, then schedules and policies) load."""
    import re

    import yaml

    from services.notifier.routing import Routing

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", readme, re.S)]
    merged = {k: v for b in blocks if "channels" in b or "routes" in b for k, v in b.items()}
    assert {"channels", "schedules", "escalation_policies", "routes"} <= merged.keys()
    r = Routing.model_validate(merged)
    assert r.schedules["child-safety"].rotations[0].handoff(1).isoformat() == "2026-11-09T08:00:00+00:00"
