"""JSON log lines carry the ids passed as ``extra`` so one incident can be followed."""

from __future__ import annotations

import logging
import uuid

import orjson

from shared.logs import JsonFormatter


def test_json_line_has_message_level_and_correlation_ids() -> None:
    iid = uuid.uuid4()
    record = logging.LogRecord("livetriage.notifier", logging.INFO, __file__, 1, "incident %s opened", (iid,), None)
    record.incident_id = iid
    record.signal_id = "spike:s1:hate:1"
    line = orjson.loads(JsonFormatter().format(record))
    assert line["msg"] == f"incident {iid} opened" and line["level"] == "INFO"
    assert line["logger"] == "livetriage.notifier" and line["ts"].endswith("+00:00")
    assert line["incident_id"] == str(iid) and line["signal_id"] == "spike:s1:hate:1"
    assert "args" not in line and "pathname" not in line  # only what the call added


def test_exceptions_are_one_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = JsonFormatter().format(record)
    assert "\n" not in text and "ValueError: boom" in orjson.loads(text)["exc"]


def _record(value: bytes | None, offset: int = 7) -> object:
    from aiokafka.structs import ConsumerRecord

    return ConsumerRecord("reports.raw", 2, offset, 0, 0, None, value, None, 0,
                          0 if value is None else len(value), [])


def test_dead_lettered_reports_are_logged_with_their_id(caplog: object) -> None:
    from services.ingest.runner import LOG_REJECTED_PER_BATCH, _log_rejected
    from services.ingest.validate import Rejected

    rejected = [(_record(b'{"report_id": "r-42", "category": "nope"}'), Rejected("unknown_category", "category: x")),
                (_record(b"\xff not json", 8), Rejected("invalid_json", "bad"))]
    rejected += [(_record(b"{}", 9 + i), Rejected("schema_violation", "x")) for i in range(LOG_REJECTED_PER_BATCH)]
    with caplog.at_level(logging.INFO, logger="services.ingest.runner"):  # type: ignore[attr-defined]
        _log_rejected(rejected)  # type: ignore[arg-type]
    recs = caplog.records  # type: ignore[attr-defined]
    line = orjson.loads(JsonFormatter().format(recs[0]))
    assert line["report_id"] == "r-42" and line["reason"] == "unknown_category"
    assert line["source"] == "reports.raw:2:7"
    assert recs[1].report_id is None and recs[1].reason == "invalid_json"
    assert len(recs) == LOG_REJECTED_PER_BATCH + 1  # the rest in one summary line
    assert recs[-1].getMessage().startswith(f"{len(rejected) - LOG_REJECTED_PER_BATCH} more reports")


def test_report_id_of_rejected_records() -> None:
    from services.ingest.runner import report_id_of

    assert report_id_of(b'{"report_id": "r-1"}') == "r-1"
    assert report_id_of(b'{"report_id": "a\\u0000b"}') == "a\\0b"
    assert report_id_of(b'{"report_id": 5}') is None
    assert report_id_of(b"[1]") is None and report_id_of(b"") is None and report_id_of(None) is None
    assert report_id_of(b"[" * 100_000) is None  # too deep for the parser: no id, no crash
