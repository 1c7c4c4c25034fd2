"""Report validation: raw bytes in, a ``Report`` or a ``Rejected`` with a bounded reason out.

Pure: no I/O. The reason codes are a closed set so they can label metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import ValidationError

from shared.events import Report

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
        return _classify(exc)
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


def _classify(exc: ValidationError) -> Rejected:
    errors = exc.errors(include_url=False, include_input=False)
    detail = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in errors[:5]
    )[:500]
    kinds = {(e["type"], e["loc"][:1]) for e in errors}
    if any(t == "json_invalid" for t, _ in kinds):
        return Rejected("invalid_json", detail)
    if any(t == "model_type" and not loc for t, loc in kinds):
        return Rejected("not_an_object", detail)
    if ("enum", ("category",)) in kinds:
        return Rejected("unknown_category", detail)
    if ("literal_error", ("schema_version",)) in kinds:
        return Rejected("unsupported_schema_version", detail)
    return Rejected("schema_violation", detail)


def canonical_json(report: Report) -> bytes:
    """The clean form published downstream: compact, nulls dropped, unknown fields kept."""
    return report.model_dump_json(exclude_none=True).encode()
