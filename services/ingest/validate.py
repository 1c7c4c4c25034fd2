"""Report validation: raw bytes in, a ``Report`` or a ``Rejected`` with a bounded reason out.

Pure: no I/O. The reason codes are a closed set so they can label metrics.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import ValidationError

from shared.events import MAX_TEXT_CHARS, Report

REASONS = (
    "empty",
    "oversized",
    "invalid_json",
    "not_an_object",
    "unknown_category",
    "unsupported_schema_version",
    "text_too_long",
    "schema_violation",
    "reported_at_in_future",
    "reported_at_too_old",
)


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why a report cannot be accepted: ``reason`` is one of REASONS, ``detail`` is for people."""

    reason: str
    detail: str


def parse_report(
    raw: bytes | None,
    *,
    max_bytes: int,
    max_text_chars: int,
    now: datetime | None = None,
    max_future: timedelta = timedelta(minutes=5),
    max_age: timedelta | None = None,
) -> Report | Rejected:
    """Validate one raw report against contract v1.

    With ``now``, event times are checked against it: a report from the future would drag a
    partition's event-time clock ahead and make every honest report late; one older than
    ``max_age`` (the dedup horizon) could no longer be recognised as a duplicate.
    """
    if not raw:
        return Rejected("empty", "the record has no value")
    if len(raw) > max_bytes:
        return Rejected("oversized", f"{len(raw)} bytes exceeds the limit of {max_bytes}")
    try:
        report = Report.model_validate_json(raw)
    except ValidationError as exc:
        return _classify(exc, max_text_chars)
    if b"\\u0000" in raw:  # cheap pre-filter: the escape is the only way JSON can carry NUL
        where = _first_path(report.model_dump(mode="python"), _has_nul)
        if where is not None:
            # PostgreSQL text and jsonb cannot store U+0000: such a report_id made the dedup
            # claim fail, which the batch loop retries as if the database were down, forever.
            return Rejected("schema_violation", f"{where}: contains a NUL character (U+0000)")
    # The parser reads NaN, Infinity (not JSON at all) and numbers beyond a double's range
    # (1e400) as floats that are not finite. The contract's own numbers are bounded (a score
    # in [0, 1], an integer count), so they can only hide in the unknown fields, which most
    # reports do not have: a walk of those, rather than a scan of every report's bytes.
    if report.model_extra or (report.classifier_score is not None and not math.isfinite(report.classifier_score)):
        where = _first_path({"classifier_score": report.classifier_score, **(report.model_extra or {})},
                            _not_finite)
        if where is not None:
            # downstream parsers reject NaN/Infinity, and the clean copy would turn them (and
            # 1e400, which parses as Infinity) into null
            return Rejected("schema_violation",
                            f"{where}: NaN, Infinity and numbers out of a double's range are not allowed")
    if report.text is not None and len(report.text) > max_text_chars:
        return Rejected("text_too_long", f"text has {len(report.text)} chars, limit {max_text_chars}")
    if now is not None:
        if report.reported_at > now + max_future:
            return Rejected(
                "reported_at_in_future",
                f"reported_at {report.reported_at.isoformat()} is more than {max_future} ahead of now",
            )
        if max_age is not None and report.reported_at < now - max_age:
            return Rejected(
                "reported_at_too_old",
                f"reported_at {report.reported_at.isoformat()} is older than {max_age}",
            )
    return report


def _classify(exc: ValidationError, max_text_chars: int) -> Rejected:
    errors = exc.errors(include_url=False)
    detail = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in errors[:5]
    )[:500]
    kinds = {(e["type"], e["loc"][:1]) for e in errors}
    if any(t == "json_invalid" for t, _ in kinds):
        return Rejected("invalid_json", detail)
    if any(t == "model_type" and not loc for t, loc in kinds):
        return Rejected("not_an_object", detail)
    # the version first: another version may well have other categories. Any error there
    # (not only literal_error: a huge integer fails earlier, as int_parsing_size)
    if any(loc == ("schema_version",) for _, loc in kinds):
        return Rejected("unsupported_schema_version", detail)
    # a category name this version does not know; a number, null or list is a broken producer
    if any(e["type"] == "enum" and e["loc"] == ("category",) and isinstance(e.get("input"), str)
           for e in errors):
        return Rejected("unknown_category", detail)
    # text over the contract's own limit: the documented reason, as for the configured one
    # (a report that is wrong in other ways too stays a schema violation, as it would be there)
    if errors and all(e["type"] == "string_too_long" and e["loc"] == ("text",) for e in errors):
        n = len(errors[0]["input"])
        return Rejected("text_too_long", f"text has {n} chars, limit {min(max_text_chars, MAX_TEXT_CHARS)}")
    return Rejected("schema_violation", detail)


def _has_nul(value: object) -> bool:
    return isinstance(value, str) and "\x00" in value


def _not_finite(value: object) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _first_path(value: object, bad: Callable[[object], bool], path: str = "") -> str | None:
    """The dotted path of the first value (or key) in ``value`` that is ``bad``."""
    if bad(value):
        return path or "<root>"
    if isinstance(value, dict):
        for k, v in value.items():
            here = f"{path}.{k}" if path else (str(k) or "\"\"")
            if bad(k):
                return here.replace("\x00", "\\0")
            found = _first_path(v, bad, here)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _first_path(v, bad, f"{path}.{i}" if path else str(i))
            if found is not None:
                return found
    return None


def canonical_json(report: Report) -> bytes:
    """The clean form published downstream: compact, nulls dropped, unknown fields kept."""
    return report.model_dump_json(exclude_none=True).encode()
