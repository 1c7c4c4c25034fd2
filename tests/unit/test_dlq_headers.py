"""Dead-letter headers: a producer cannot put words in the DLQ's mouth."""

from __future__ import annotations

from aiokafka import ConsumerRecord

from shared.kafka import dlq_headers


def record(headers: list[tuple[str, bytes]]) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic="live.reports", partition=2, offset=41, timestamp=0, timestamp_type=0,
                          key=b"s-1", value=b"{}", checksum=None, serialized_key_size=3,
                          serialized_value_size=2, headers=headers)


def first(headers: list[tuple[str, bytes]], name: str) -> bytes:
    return next(v for k, v in headers if k == name)


def test_spoofed_dlq_headers_are_renamed_and_ours_are_the_only_ones() -> None:
    spoof = [("trace", b"t-1"), ("dlq.reason", b"empty"), ("dlq.source.offset", b"0"),
             ("dlq.source.topic", b"elsewhere"), ("dlq.truncated", b"true")]
    out = dlq_headers(record(spoof), "invalid_json", "bad")
    names = [k for k, _ in out]
    # exactly one of each of ours, whichever way a reader looks them up
    for name in ("dlq.reason", "dlq.detail", "dlq.source.topic", "dlq.source.partition", "dlq.source.offset"):
        assert names.count(name) == 1, name
    assert first(out, "dlq.reason") == dict(out)["dlq.reason"] == b"invalid_json"
    assert first(out, "dlq.source.offset") == b"41"
    assert first(out, "dlq.source.topic") == b"live.reports"
    assert "dlq.truncated" not in names  # only dlq_value says a copy was cut
    # the producer's values are kept, under a name that cannot be mistaken for ours
    assert [(k, v) for k, v in out if k.startswith("orig.")] == [
        ("orig.dlq.reason", b"empty"), ("orig.dlq.source.offset", b"0"),
        ("orig.dlq.source.topic", b"elsewhere"), ("orig.dlq.truncated", b"true")]
    assert first(out, "trace") == b"t-1" and names[0] == "trace"  # other headers untouched, in order


def test_no_headers() -> None:
    out = dlq_headers(record([]), "empty", "the record has no value")
    assert [k for k, _ in out] == ["dlq.reason", "dlq.detail", "dlq.source.topic", "dlq.source.partition",
                                   "dlq.source.offset"]
