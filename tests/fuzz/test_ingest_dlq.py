"""The fuzz corpus through a real broker: ingest dead-letters every malformed record with a
reason, publishes every valid one, and keeps running."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from livetriage.runtime import start_services
from services.ingest.validate import REASONS, Rejected, parse_report
from shared.kafka import DLQ_KEEP_BYTES, DLQ_MAX_BYTES
from shared.settings import Settings
from tests.helpers import encode_reports, eventually, read_topic, report

pytestmark = pytest.mark.integration

Item = tuple[bytes | None, bytes | None]


def malformed_corpus(now: datetime) -> list[Item]:
    """About 200 bad records, a handful per fault of the fuzz tests, deterministic."""
    rnd = random.Random(20261123)
    good = report(at=now)
    out: list[bytes | None] = []
    out += [rnd.randbytes(rnd.randint(1, 300)) for _ in range(30)]  # random bytes
    for i in range(15):  # invalid UTF-8 inside a string
        out.append(orjson.dumps({**good, "stream_id": "@@", "n": i}).replace(b"@@", b"\xff\xc0" + bytes([0x80 + i])))
    out += [b"[" * 10_000 + b"]" * 10_000, b"[" * 300 + b"]" * 300, b'{"a":' * 1000 + b"1" + b"}" * 1000]
    out += [orjson.dumps({**good, "blob": "z" * n}) for n in (20_000, 200_000, 900_000)]  # huge
    wrong: list[tuple[str, Any]] = [
        ("report_id", 42), ("report_id", None), ("report_id", ["a"]), ("stream_id", {"a": 1}),
        ("stream_id", 1.5), ("source", "robot"), ("source", 3), ("region", "Germany"), ("region", 49),
        ("viewer_count", -1), ("viewer_count", "many"), ("viewer_count", [1]), ("viewer_count", 1e20),
        ("classifier_score", 1.5), ("classifier_score", "high"), ("classifier_score", {}),
        ("language", 7), ("language", "x"), ("text", 12), ("text", ["t"]), ("reporter_id", False),
        ("category", 5), ("category", None), ("category", ["violence"]), ("report_id", ""),
        ("stream_id", "   "), ("report_id", "r" * 129),
    ]
    for field, value in wrong:  # wrong types per field, twice over with other ids
        for _ in range(2):
            out.append(orjson.dumps({**report(at=now), field: value}))
    bad_times: list[Any] = ["", "yesterday", "2026-13-01T00:00:00Z", "2026-11-23T10:00:00",
                            "2026-11-23", None, True, [], {}, "99999-01-01T00:00:00Z"]
    out += [orjson.dumps({**report(at=now), "reported_at": t}) for t in bad_times]
    out += [orjson.dumps({k: v for k, v in report(at=now).items() if k != "reported_at"}) for _ in range(5)]
    far = [timedelta(days=d) for d in (1, 30, 365, 3650, 700_000)] + [timedelta(hours=1)]
    out += [orjson.dumps(report(at=now + d)) for d in far]  # future
    out += [orjson.dumps(report(at=now - d)) for d in far[1:-1] + [timedelta(days=3)]]  # past
    out += [orjson.dumps(report(at=datetime(1, 1, 1, tzinfo=UTC))),
            orjson.dumps(report(at=datetime(9999, 12, 31, tzinfo=UTC)))]
    out += [orjson.dumps(report(category=c, at=now)) for c in
            ("bogus", "VIOLENCE", "violence ", "csam", "", "é", "spam2", "other" * 30, "null", "0") * 2]
    out += [orjson.dumps(report(at=now, text="x" * n)) for n in (2001, 5000, 15_000, 20_000)]  # text
    out += [orjson.dumps(report(at=now, schema_version=v)) for v in (2, 0, "1", "v1", None)]
    out += [orjson.dumps(v) for v in ([], [good], "report", 1, 1.5, None, True)] + [b"  ", b"nul"]
    out += [orjson.dumps(report(at=now, report_id=f"r\x00{i}")) for i in range(3)]  # stalled ingest
    out += [orjson.dumps(report(at=now, stream_id="s\x00")), orjson.dumps({**report(at=now), "c": {"\x00": 1}})]
    out += [b"", b"", None]  # empty and tombstone
    return [(b"k", v) for v in out]


async def publish_big(settings: Settings, items: list[Item]) -> list[Item]:
    """Publish, with room for records over 1 MB; returns what the broker accepted."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all",
                                max_request_size=8 * 1024 * 1024)
    await producer.start()
    accepted: list[Item] = []
    try:
        for key, value in items:
            try:
                await (await producer.send(settings.reports_topic, value, key=key))
            except KafkaError:
                continue  # over the broker's limit: not a case for ingest then
            accepted.append((key, value))
    finally:
        await producer.stop()
    return accepted


async def test_fuzz_corpus_goes_to_the_dlq_and_ingest_keeps_running(settings: Settings) -> None:
    now = datetime.now(UTC)
    await run_corpus(settings, now, malformed_corpus(now), consume_timeout=60)


async def test_record_over_1mb_goes_to_the_dlq(settings: Settings) -> None:
    now = datetime.now(UTC)
    big = orjson.dumps({**report(at=now), "blob": "b" * 1_200_000})
    await run_corpus(settings, now, [(b"big", big)] + malformed_corpus(now)[:20], consume_timeout=15)


async def run_corpus(settings: Settings, now: datetime, corpus: list[Item], *, consume_timeout: float) -> None:
    valid = [report(f"s{i % 9}", "violence", at=now - timedelta(seconds=i)) for i in range(60)]
    limits: dict[str, Any] = {"max_bytes": settings.max_report_bytes, "max_text_chars": settings.max_text_chars,
                              "now": now, "max_future": timedelta(seconds=settings.max_future_skew_s),
                              "max_age": timedelta(hours=settings.dedup_ttl_hours)}
    for _, value in corpus:  # the corpus is all bad, by the parser's own verdict
        assert isinstance(parse_report(value, **limits), Rejected), value[:200] if value else value

    stop = asyncio.Event()
    async with start_services(settings, ["ingest"], stop, api=False) as running:
        mixed: list[Item] = []
        good = encode_reports(valid)
        for i, item in enumerate(corpus):  # interleaved, so bad and good share batches
            mixed.append(item)
            if i % 4 == 0 and good:
                mixed.append(good.pop())
        mixed += good
        sent = await publish_big(settings, mixed)
        assert len(sent) >= len([v for _, v in mixed if v is None or len(v) < 1_000_000]), \
            "the broker refused records under 1 MB"
        malformed = [v for _, v in sent if v not in {v for _, v in encode_reports(valid)}]
        total = len(sent)
        await eventually(lambda: running.ingest.consumed._value.get() == total, timeout=consume_timeout,
                         what=f"ingest consumed {total} records")

        clean = await read_topic(settings, settings.clean_topic, expect=len(valid), timeout=30)
        assert sorted(orjson.loads(r.value)["report_id"] for r in clean) == sorted(r["report_id"] for r in valid)

        dlq = await read_topic(settings, settings.dlq_topic, expect=len(malformed), timeout=60)
        # a record too big for a produce request is dead-lettered as its head, marked truncated
        cut = {v[:DLQ_KEEP_BYTES]: v for v in malformed if v is not None and len(v) > DLQ_MAX_BYTES}
        assert Counter(r.value or b"" for r in dlq) == Counter(
            (v[:DLQ_KEEP_BYTES] if v is not None and len(v) > DLQ_MAX_BYTES else v) or b"" for v in malformed)
        for r in dlq:
            headers = dict(r.headers)
            why = headers["dlq.reason"].decode()
            assert why in REASONS
            if r.value in cut:
                assert headers["dlq.truncated"] == b"true" and why == "oversized"
                assert int(headers["dlq.original_bytes"]) == len(cut[r.value])
                continue
            assert "dlq.truncated" not in headers
            expected = parse_report(r.value, **limits)
            assert isinstance(expected, Rejected) and why == expected.reason, (r.value or b"")[:200]
            assert headers["dlq.detail"] and headers["dlq.source.topic"].decode() == settings.reports_topic
        seen = Counter(dict(r.headers)["dlq.reason"].decode() for r in dlq)
        assert len(corpus) < 100 or set(seen) >= {"empty", "oversized", "invalid_json", "not_an_object", "unknown_category",
                             "unsupported_schema_version", "schema_violation", "reported_at_in_future",
                             "reported_at_too_old"}, seen

        (ingest,) = [t for t in running.tasks if t.get_name() == "ingest"]
        assert not ingest.done(), ingest
        assert running.ingest.published._value.get() == len(valid)
