"""The report contract: what is accepted, what goes to the DLQ and why."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ingest.validate import REASONS, Rejected, canonical_json, parse_report
from shared.events import Report, report_json_schema

LIMITS = {"max_bytes": 16_384, "max_text_chars": 2_000}
GOOD = {
    "report_id": "r-1",
    "stream_id": "s-1",
    "reported_at": "2026-11-23T10:00:00Z",
    "category": "violence",
    "source": "user",
}


def parse(obj: object) -> Report | Rejected:
    raw = obj if isinstance(obj, bytes) else orjson.dumps(obj)
    return parse_report(raw, **LIMITS)


def test_minimal_report_is_accepted() -> None:
    rep = parse(GOOD)
    assert isinstance(rep, Report)
    assert rep.category == "violence" and rep.schema_version == 1
    assert rep.reported_at.utcoffset() is not None


def test_unknown_fields_are_kept_in_the_clean_form() -> None:
    rep = parse({**GOOD, "client": {"app": "ios", "build": 42}})
    assert isinstance(rep, Report)
    clean = orjson.loads(canonical_json(rep))
    assert clean["client"] == {"app": "ios", "build": 42}
    assert "region" not in clean  # nulls dropped


def test_all_optional_fields() -> None:
    rep = parse(
        {**GOOD, "reporter_id": "u1", "region": "BR", "viewer_count": 10, "classifier_score": 0.5,
         "language": "pt-BR", "text": "hi", "schema_version": 1}
    )
    assert isinstance(rep, Report) and rep.region == "BR" and rep.classifier_score == 0.5


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (b"{nope", "invalid_json"),
        (b"\xff\xfe\xfd", "invalid_json"),
        (b"[1,2]", "not_an_object"),
        (b'"just a string"', "not_an_object"),
        ({**GOOD, "category": "bogus"}, "unknown_category"),
        ({**GOOD, "schema_version": 2}, "unsupported_schema_version"),
        ({k: v for k, v in GOOD.items() if k != "report_id"}, "schema_violation"),
        ({**GOOD, "reported_at": "2026-11-23T10:00:00"}, "schema_violation"),  # no offset
        ({**GOOD, "reported_at": "yesterday"}, "schema_violation"),
        ({**GOOD, "source": "robot"}, "schema_violation"),
        ({**GOOD, "region": "Germany"}, "schema_violation"),
        ({**GOOD, "viewer_count": -1}, "schema_violation"),
        ({**GOOD, "viewer_count": "many"}, "schema_violation"),
        ({**GOOD, "classifier_score": 1.5}, "schema_violation"),
        ({**GOOD, "report_id": ""}, "schema_violation"),
        ({**GOOD, "text": "x" * 2001}, "text_too_long"),  # the contract's limit: the documented reason
        ({**GOOD, "text": "x" * 2001, "viewer_count": -1}, "schema_violation"),
        ({**GOOD, "text": "x" * 17_000}, "oversized"),
        # strict types: nothing is coerced into the contract
        ({**GOOD, "viewer_count": True}, "schema_violation"),
        ({**GOOD, "viewer_count": "500"}, "schema_violation"),
        ({**GOOD, "viewer_count": 5.0}, "schema_violation"),
        ({**GOOD, "classifier_score": True}, "schema_violation"),
        ({**GOOD, "classifier_score": "0.5"}, "schema_violation"),
        ({**GOOD, "reported_at": 1_795_000_000}, "schema_violation"),  # epoch seconds, a number
        ({**GOOD, "reported_at": 1.795e9}, "schema_violation"),
        ({**GOOD, "reported_at": "1795000000"}, "schema_violation"),  # epoch seconds, as text
        ({**GOOD, "schema_version": True}, "unsupported_schema_version"),
        ({**GOOD, "schema_version": 1.0}, "unsupported_schema_version"),
        # parses as Infinity: the clean copy would have carried null
        (orjson.dumps(GOOD)[:-1] + b',"extra":1e400}', "schema_violation"),
        (orjson.dumps(GOOD)[:-1] + b',"extra":{"deep":[-1.5E+999]}}', "schema_violation"),
        (orjson.dumps(GOOD)[:-1] + b',"extra":' + b"9" * 400 + b'.0}', "schema_violation"),
    ],
)
def test_rejections_have_a_reason(raw: object, reason: str) -> None:
    out = parse(raw)
    assert isinstance(out, Rejected), out
    assert out.reason == reason
    assert out.reason in REASONS
    assert out.detail


def test_configured_text_limit_is_enforced() -> None:
    out = parse_report(orjson.dumps({**GOOD, "text": "x" * 50}), max_bytes=16_384, max_text_chars=10)
    assert isinstance(out, Rejected) and out.reason == "text_too_long"


def test_text_over_the_contract_limit_says_so() -> None:
    out = parse(orjson.dumps({**GOOD, "text": "x" * 2001}))
    assert isinstance(out, Rejected) and out.reason == "text_too_long"
    assert out.detail == "text has 2001 chars, limit 2000"


def test_strict_values_that_are_right_still_pass() -> None:
    rep = parse({**GOOD, "viewer_count": 0, "classifier_score": 1, "reported_at": "2026-11-23 10:00:00+02:00",
                 "extra": [1e300, -2.5e-300, 12345678901234567890]})
    assert isinstance(rep, Report), rep
    assert rep.viewer_count == 0 and rep.classifier_score == 1.0
    assert orjson.loads(canonical_json(rep))["extra"][0] == 1e300


@given(st.binary(max_size=300))
def test_random_bytes_never_raise(raw: bytes) -> None:
    out = parse_report(raw, **LIMITS)
    assert isinstance(out, Report | Rejected)
    if isinstance(out, Rejected):
        assert out.reason in REASONS


@given(st.dictionaries(st.sampled_from(list(GOOD) + ["viewer_count", "region", "x"]),
                       st.one_of(st.none(), st.integers(), st.text(max_size=20), st.floats())))
def test_random_objects_never_raise(obj: dict[str, object]) -> None:
    out = parse_report(json.dumps(obj).encode(), **LIMITS)
    assert isinstance(out, Report | Rejected)


def test_published_json_schema_matches_the_model() -> None:
    from pathlib import Path

    published = json.loads((Path(__file__).parents[2] / "shared" / "report.schema.json").read_text())
    assert published == report_json_schema(), "run: livetriage schema --out shared/report.schema.json"


def test_json_schema_agrees_with_the_validator() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(report_json_schema())
    assert validator.is_valid(GOOD)
    assert not validator.is_valid({**GOOD, "category": "bogus"})
    assert not validator.is_valid({k: v for k, v in GOOD.items() if k != "source"})
    assert validator.is_valid({**GOOD, "anything": "else"})


def test_event_times_far_from_now_are_rejected() -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    kw = {**LIMITS, "now": now, "max_future": timedelta(minutes=5), "max_age": timedelta(hours=48)}

    def at(delta: timedelta) -> Report | Rejected:
        return parse_report(orjson.dumps({**GOOD, "reported_at": (now + delta).isoformat()}), **kw)

    assert isinstance(at(timedelta(minutes=4)), Report)  # clock skew is tolerated
    assert isinstance(at(-timedelta(hours=47)), Report)
    future = at(timedelta(days=365))
    assert isinstance(future, Rejected) and future.reason == "reported_at_in_future"
    old = at(-timedelta(days=3))
    assert isinstance(old, Rejected) and old.reason == "reported_at_too_old"
