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
