"""The floor under any multi-process pipeline on this broker: a relay that does nothing.

``bench.pipeline`` compares livetriage with a one-process reference loop that reads the topic
and counts panes. livetriage, as production runs it, is a chain of processes joined by topics:
ingest reads every report and writes it again, triage reads it back. This is that chain with
no logic at all, as two processes:

- ``relay``: a group consumer reads the reports topic and produces every record, unchanged,
  to a second topic (acks=all, the services' producer settings, a producer batch per partition
  as ingest publishes), committing each batch after its acks, as
  ``shared.kafka.consume_batches`` does;
- ``count``: the reference loop (``bench.pipeline.PaneCounter``) on the relayed topic.

Its rate, and the CPU it costs per report across both processes and the broker, bound what a
chain that also validates, de-duplicates and scores can reach on the same machine. Both
processes stay up after their work until their stdin closes, so that their CPU time can still
be read from /proc.

    python -m bench.relay relay|count BOOTSTRAP SRC [DST] N GROUP   (run by bench.pipeline)
"""

from __future__ import annotations

import asyncio
import sys
import time

from aiokafka import AIOKafkaProducer

from bench.pipeline import PaneCounter, plain_consumer
from shared.publish import KeyedBatches

POLL_MS = 200
MAX_RECORDS = 5000  # as Settings.batch_max_records


async def relay(bootstrap: str, src: str, dst: str, n: int, group: str) -> None:
    consumer = plain_consumer(bootstrap, src, group)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                max_batch_size=256 * 1024)  # as shared.kafka.open_producer
    await consumer.start()
    await producer.start()
    try:
        parts = len(await producer.partitions_for(dst))
        done = 0
        while done < n:
            batches = await consumer.getmany(timeout_ms=POLL_MS, max_records=MAX_RECORDS)
            # published as ingest publishes (shared.publish: a producer batch per partition)
            out = KeyedBatches(producer, dst, parts)
            for recs in batches.values():
                for r in recs:
                    await out.add(r.key, r.value, timestamp_ms=r.timestamp)
            await out.flush()
            if out.records and not done:
                print(f"first {time.time():.6f}", flush=True)  # noqa: T201 - read by bench.pipeline
            if out.records:
                await asyncio.gather(*out.futures)
                await consumer.commit()
                done += out.records
    finally:
        await producer.stop()
        await consumer.stop()


async def count(bootstrap: str, src: str, n: int, group: str) -> None:
    consumer = plain_consumer(bootstrap, src, group)
    await consumer.start()
    counter = PaneCounter()
    try:
        done = 0
        while done < n:
            batches = await consumer.getmany(timeout_ms=POLL_MS, max_records=MAX_RECORDS)
            for recs in batches.values():
                counter.count(recs)  # the reference's own counting
                done += len(recs)
            if batches:
                await consumer.commit()
        counter.advance(final=True)
        print(f"done {time.time():.6f} windows {counter.windows}", flush=True)  # noqa: T201 - read by bench.pipeline
    finally:
        await consumer.stop()


def main(argv: list[str]) -> int:
    role, bootstrap = argv[0], argv[1]
    try:
        _run(role, bootstrap, argv)
    finally:
        sys.stdin.read()  # until the bench has read our CPU time
    return 0


def _run(role: str, bootstrap: str, argv: list[str]) -> None:
    if role == "relay":
        asyncio.run(relay(bootstrap, argv[2], argv[3], int(argv[4]), argv[5]))
    elif role == "count":
        asyncio.run(count(bootstrap, argv[2], int(argv[3]), argv[4]))
    else:
        raise SystemExit(f"unknown role {role!r}: relay or count")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
