"""Publishing many keyed records at once, a producer batch per partition.

``AIOKafkaProducer.send`` costs ~24 µs of CPU a record on this machine (a future, a
partitioner call and an accumulator lookup each), against ~8 µs for the same records appended
to a ``BatchBuilder`` per partition and handed over with ``send_batch`` (measured against
tansu, 100,000 records of a report's size): for ingest, which republishes every report, that
was the largest single cost. Partitions are chosen as the producer's default partitioner
chooses them for a keyed record (murmur2 of the key, as Java clients do), so a stream lands on
the partition any other producer would send it to, and records keep their order per partition.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

Headers = Sequence[tuple[str, bytes]]


_HASHES: dict[bytes, int] = {}
_HASHES_MAX = 100_000  # keys remembered (streams repeat: aiokafka's murmur2 is pure Python)


def key_hash(key: bytes) -> int:
    """murmur2 of a key as the default partitioner takes it, remembered for recent keys."""
    h = _HASHES.get(key)
    if h is None:
        if len(_HASHES) >= _HASHES_MAX:
            _HASHES.clear()
        h = _HASHES[key] = murmur2(key) & 0x7FFFFFFF
    return h


def partition_of(key: bytes, partitions: int) -> int:
    """The partition the default partitioner picks for a keyed record."""
    return key_hash(key) % partitions


class KeyedBatches:
    """Records for one topic, gathered into one open batch per partition.

    ``await add(...)`` appends (handing a full batch to the producer first); ``await flush()``
    hands over the rest; ``futures`` are settled when the broker acknowledged each batch.
    Owns nothing: the producer belongs to the caller."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, partitions: int) -> None:
        self._producer = producer
        self._topic = topic
        self._n = partitions
        self._open: dict[int, object] = {}
        self.futures: list[asyncio.Future[object]] = []
        self.records = 0

    async def add(self, key: bytes, value: bytes, *, timestamp_ms: int | None = None,
                  headers: Headers = ()) -> None:
        p = key_hash(key) % self._n
        batch = self._open.get(p)
        if batch is None:
            batch = self._open[p] = self._producer.create_batch()
        if batch.append(key=key, value=value, timestamp=timestamp_ms, headers=headers) is None:  # type: ignore[attr-defined]
            # full: send it, start the next (an empty batch takes any one record the
            # producer's own size checks would have let through)
            await self._send(p, batch)
            batch = self._open[p] = self._producer.create_batch()
            if batch.append(key=key, value=value, timestamp=timestamp_ms, headers=headers) is None:
                raise ValueError(f"a record of {len(value)} bytes does not fit an empty batch")
        self.records += 1

    async def flush(self) -> None:
        """Hand every open batch to the producer (in partition order)."""
        open_, self._open = self._open, {}
        for p in sorted(open_):
            await self._send(p, open_[p])

    async def _send(self, partition: int, batch: object) -> None:
        batch.close()  # type: ignore[attr-defined]
        fut = await self._producer.send_batch(batch, self._topic, partition=partition)
        self.futures.append(fut)
