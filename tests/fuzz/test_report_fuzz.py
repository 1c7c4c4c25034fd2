"""Fuzzing the report parser: whatever bytes arrive, ``parse_report`` returns a Report or a
Rejected with one of the known DLQ reasons, and the reason fits the fault."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from services.ingest.validate import REASONS, Rejected, canonical_json, parse_report
from shared.events import Category, Report

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
MAX_FUTURE = timedelta(minutes=5)
MAX_AGE = timedelta(hours=48)
LIMITS: dict[str, Any] = {"max_bytes": 16_384, "max_text_chars": 2_000, "now": NOW,
                          "max_future": MAX_FUTURE, "max_age": MAX_AGE}
ROOMY = {**LIMITS, "max_bytes": 64 * 1024 * 1024}  # the parser itself, not the size gate
GOOD: dict[str, Any] = {
    "report_id": "r-1",
    "stream_id": "s-1",
    "reported_at": "2026-11-23T10:00:00Z",
    "category": "violence",
    "source": "user",
}


def check(raw: bytes, **limits: Any) -> Report | Rejected:
    """Parse, and hold the properties every outcome must have."""
    out = parse_report(raw, **(limits or LIMITS))
    assert isinstance(out, Report | Rejected), out
    if isinstance(out, Rejected):
        assert out.reason in REASONS, out
        assert out.detail and len(out.detail) <= 500
    else:
        # what ingest publishes must parse again to the same report
        again = parse_report(canonical_json(out), **ROOMY)
        assert isinstance(again, Report) and canonical_json(again) == canonical_json(out)
    return out


def reason(raw: bytes, **limits: Any) -> str | None:
    out = check(raw, **limits)
    return out.reason if isinstance(out, Rejected) else None


def dumps(value: object) -> bytes:
    """The stdlib encoder: unlike orjson it writes integers of any size, as JSON allows."""
    return json.dumps(value, separators=(",", ":")).encode()


def with_field(name: str, value: object) -> bytes:
    return dumps({**GOOD, name: value})


json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30)
# valid JSON only: NaN and Infinity have their own test (they are rejected)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


# --- arbitrary input never raises ---------------------------------------------------------


@given(st.binary(max_size=4096))
@example(b"\x00")
@example(b"\xef\xbb\xbf{}")
@example(b"[" * 10_000)
def test_random_bytes(raw: bytes) -> None:
    check(raw)
    check(raw, **ROOMY)


@given(st.dictionaries(st.sampled_from([*GOOD, "text", "viewer_count", "classifier_score", "region",
                                        "language", "reporter_id", "schema_version", "extra"]),
                       json_values))
def test_random_objects(obj: dict[str, Any]) -> None:
    check(dumps(obj))


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=4))
def test_valid_report_with_random_extras_is_accepted(extra: dict[str, Any]) -> None:
    assume(not set(extra) & set(Report.model_fields))
    assume(b"\\u0000" not in dumps(extra))
    assert isinstance(check(dumps({**extra, **GOOD})), Report)


@given(st.binary(min_size=1, max_size=8).filter(lambda b: not _is_utf8(b)), st.sampled_from(list(GOOD)))
def test_invalid_utf8_inside_a_string_is_invalid_json(junk: bytes, field: str) -> None:
    raw = dumps({**GOOD, field: "@@"}).replace(b"@@", junk)
    assert reason(raw) == "invalid_json"


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@given(st.sampled_from([[], "x", 1, 1.5, None, True, False, [GOOD]]))
def test_json_that_is_not_an_object(value: object) -> None:
    assert reason(dumps(value)) == "not_an_object"


# --- size and shape ------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [300, 10_000])
@pytest.mark.parametrize("open_close", [(b"[", b"]"), (b'{"a":', b"}")])
def test_deep_nesting(depth: int, open_close: tuple[bytes, bytes]) -> None:
    opener, closer = open_close
    inner = b"1" if opener.startswith(b"{") else b""
    nested = opener * depth + inner + closer * depth
    assert reason(nested, **ROOMY) == "invalid_json"  # the parser's recursion limit, not a crash
    in_field = dumps(GOOD)[:-1] + b',"x":' + nested + b"}"
    assert reason(in_field, **ROOMY) == "invalid_json"
    assert reason(in_field) == ("oversized" if len(in_field) > LIMITS["max_bytes"] else "invalid_json")


@pytest.mark.parametrize("mb", [1, 5])
def test_huge_json(mb: int) -> None:
    blob = "y" * (mb * 1024 * 1024)
    assert reason(with_field("text", blob)) == "oversized"
    assert reason(with_field("text", blob), **ROOMY) == "text_too_long"
    assert reason(with_field("comment", blob)) == "oversized"
    # unknown fields are kept, and no length limit is the model's to impose on them
    assert reason(with_field("comment", blob), **ROOMY) is None
    many = dumps({**GOOD, **{f"k{i}": i for i in range(mb * 100_000)}})
    assert reason(many) == "oversized"
    assert reason(many, **ROOMY) is None


@given(st.integers(min_value=0, max_value=5000))
def test_text_length_limits(n: int) -> None:
    out = reason(with_field("text", "t" * n), **{**LIMITS, "max_text_chars": 500})
    # over the configured limit or the contract's own (2,000): text_too_long, as documented
    assert out == (None if n <= 500 else "text_too_long")
    assert reason(with_field("text", "t" * n)) == (None if n <= 2000 else "text_too_long")


@given(st.sampled_from(["report_id", "stream_id", "reporter_id"]), st.integers(129, 3000))
def test_oversized_identifiers(field: str, n: int) -> None:
    assert reason(with_field(field, "i" * n)) == "schema_violation"


# --- wrong types, per field ----------------------------------------------------------------

containers = st.lists(st.integers(), max_size=3) | st.dictionaries(st.text(max_size=3), st.integers(), max_size=3)
not_a_string = st.integers() | st.floats(allow_nan=False) | st.booleans() | containers
not_a_number = st.text(max_size=10).filter(lambda s: not _numeric(s)) | containers
WRONG: dict[str, st.SearchStrategy[Any]] = {
    "report_id": not_a_string | st.none(),
    "stream_id": not_a_string | st.none(),
    "source": not_a_string | st.none() | st.text(max_size=10).filter(lambda s: s not in ("user", "moderator", "classifier")),
    "reporter_id": not_a_string,
    "region": not_a_string | st.text(max_size=5).filter(lambda s: not (len(s) == 2 and s.isascii() and s.isupper() and s.isalpha())),
    "language": not_a_string,
    "text": not_a_string,
    "viewer_count": not_a_number | st.integers(max_value=-1) | st.integers(min_value=10_000_000_001),
    "classifier_score": not_a_number | st.floats(min_value=1.0001, max_value=1e300) | st.floats(max_value=-0.0001, min_value=-1e300),
    "reported_at": st.booleans() | containers | st.none() | st.text(max_size=12).filter(lambda s: not _numeric(s)),
    "category": not_a_string | st.none(),
}


def _numeric(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


@given(st.data(), st.sampled_from(sorted(WRONG)))
def test_wrong_type_is_a_schema_violation(data: st.DataObject, field: str) -> None:
    value = data.draw(WRONG[field], label=field)
    assert reason(with_field(field, value)) == "schema_violation", value


@given(st.sampled_from(list(GOOD)))
def test_missing_required_field_is_a_schema_violation(field: str) -> None:
    assert reason(dumps({k: v for k, v in GOOD.items() if k != field})) == "schema_violation"


@given(st.text(min_size=1, max_size=40).filter(lambda s: s not in set(Category)))
def test_unknown_category(name: str) -> None:
    assert reason(with_field("category", name)) == "unknown_category"


@given(st.integers() | st.text(max_size=5) | st.none(), st.text(min_size=1, max_size=10))
def test_unsupported_schema_version_wins_over_the_category(version: object, category: str) -> None:
    assume(version != 1 and category not in set(Category))
    raw = dumps({**GOOD, "schema_version": version, "category": category})
    assert reason(raw) == "unsupported_schema_version"


@given(st.sampled_from(["report_id", "stream_id", "reporter_id", "text", "language", "comment"]),
       st.text(max_size=5), st.text(max_size=5))
def test_nul_characters_are_rejected(field: str, before: str, after: str) -> None:
    """PostgreSQL cannot store U+0000: letting one through stalled ingest on the dedup claim."""
    assert reason(with_field(field, f"id{before}\x00{after}")) == "schema_violation"
    assert reason(dumps({**GOOD, "nested": {f"k\x00{before}": [1]}})) == "schema_violation"


@pytest.mark.parametrize("spelling", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("where", ["extra", "nested", "classifier_score"])
def test_non_finite_numbers_are_rejected(spelling: str, where: str) -> None:
    """The parser accepts NaN/Infinity, but they are not JSON: the clean copy turned them into
    null (found by hypothesis in CI: an extra ``"": Infinity`` did not survive a round trip)."""
    body = dumps(GOOD)[:-1]
    field = {"extra": f'"x":{spelling}', "nested": f'"x":{{"y":[1,{spelling}]}}',
             "classifier_score": f'"classifier_score":{spelling}'}[where]
    assert reason(body + b"," + field.encode() + b"}") == "schema_violation"


# --- event time ----------------------------------------------------------------------------

offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda m: timezone(timedelta(minutes=m)))


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets))
@example(datetime(1, 1, 2, tzinfo=timezone(timedelta(hours=14))))
@example(datetime(9999, 12, 30, 23, 59, tzinfo=timezone(-timedelta(hours=23, minutes=59))))
def test_event_time_anywhere(at: datetime) -> None:
    got = reason(with_field("reported_at", at.isoformat()))
    if at > NOW + MAX_FUTURE:
        assert got == "reported_at_in_future"
    elif at < NOW - MAX_AGE:
        assert got == "reported_at_too_old"
    else:
        assert got is None


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
def test_event_time_without_an_offset_is_a_schema_violation(at: datetime) -> None:
    assert reason(with_field("reported_at", at.isoformat())) == "schema_violation"


@pytest.mark.parametrize("bad", ["", "yesterday", "2026-13-01T00:00:00Z", "2026-11-23T25:00:00Z",
                                 "2026-11-23 10:00", "10:00:00Z", "2026-11-23T10:00:00+99:00",
                                 "99999-01-01T00:00:00Z", "1e400", None, True, [], {}])
def test_bad_event_time(bad: object) -> None:
    assert reason(with_field("reported_at", bad)) == "schema_violation"


def test_absent_event_time() -> None:
    assert reason(dumps({k: v for k, v in GOOD.items() if k != "reported_at"})) == "schema_violation"


@pytest.mark.parametrize("at", [4102444800, 0, 1e30, 1795000000.5, "4102444800", "0", "1e9", "-1"])
def test_numeric_event_times_are_schema_violations(at: object) -> None:
    # pydantic's lax mode read epoch numbers (and numeric strings) as times; the contract says
    # an RFC 3339 string
    assert reason(with_field("reported_at", at)) == "schema_violation"


@given(st.integers(min_value=0, max_value=10_000_000_000))
def test_counts_are_not_coerced(n: int) -> None:
    assert reason(with_field("viewer_count", n)) is None
    for spelled in (str(n), float(n), n % 2 == 1):
        assert reason(with_field("viewer_count", spelled)) == "schema_violation", spelled


@given(st.floats(min_value=1, max_value=9.999), st.sampled_from(["e", "E", "e+", "E+"]),
       st.integers(min_value=309, max_value=100_000), st.booleans())
def test_numbers_beyond_a_double_are_rejected(mantissa: float, e: str, exp: int, negative: bool) -> None:
    """They parse as +-Infinity, which the clean copy turned into null."""
    literal = f"{'-' if negative else ''}{mantissa:.3f}{e}{exp}".encode()
    assert abs(float(literal)) == float("inf")
    assert reason(dumps(GOOD)[:-1] + b',"x":{"y":[' + literal + b"]}}") == "schema_violation"


# --- the atheris harness -------------------------------------------------------------------


@pytest.mark.fuzz
def test_atheris_harness_runs_clean(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    harness = Path(__file__).with_name("atheris_report.py")
    proc = subprocess.run(
        [sys.executable, str(harness), "-runs=3000", "-seed=1", "-max_len=4096", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "Done 3000 runs" in proc.stderr, proc.stderr[-2000:]
