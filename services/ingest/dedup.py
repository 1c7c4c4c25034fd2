"""Duplicate detection by ``report_id``, backed by Postgres so it survives restarts.

Each report_id is claimed by the first record (partition, offset) that carried it. A record
is "first" when the claim it finds is its own: that makes a redelivery of the same record
(after a crash between claim and publish) publish again, while a genuine duplicate — another
record with the same id — is dropped. Memory use is bounded: the claims live in the
database and are pruned after ``ttl``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import NamedTuple

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

_CLAIM = text(
    """
    WITH incoming AS (
        SELECT DISTINCT ON (report_id) report_id, p, o
        FROM unnest(CAST(:ids AS text[]), CAST(:parts AS int[]), CAST(:offs AS bigint[]))
             AS t(report_id, p, o)
        ORDER BY report_id, p, o
    ), ins AS (
        INSERT INTO ingest_dedup (report_id, src_partition, src_offset)
        SELECT report_id, p, o FROM incoming
        ON CONFLICT (report_id) DO NOTHING
        RETURNING report_id, src_partition, src_offset
    )
    SELECT report_id, src_partition, src_offset FROM ins
    UNION ALL
    SELECT d.report_id, d.src_partition, d.src_offset
    FROM ingest_dedup d JOIN incoming i USING (report_id)
    """
)

_PRUNE = text(
    """
    DELETE FROM ingest_dedup WHERE report_id IN (
        SELECT report_id FROM ingest_dedup WHERE first_seen < now() - CAST(:age AS interval)
        LIMIT :limit)
    """
)


class Origin(NamedTuple):
    """Where a record came from."""

    partition: int
    offset: int


class Deduplicator:
    """Claims report ids in Postgres; tells which records of a batch are first sightings."""

    def __init__(self, engine: AsyncEngine, ttl: timedelta) -> None:
        self._engine = engine
        self._ttl = ttl

    async def firsts(self, items: Sequence[tuple[str, Origin]]) -> set[Origin]:
        """Claim every id; return the origins of the records that own their id."""
        if not items:
            return set()
        async with self._engine.begin() as conn:
            rows = await conn.execute(
                _CLAIM,
                {
                    "ids": [rid for rid, _ in items],
                    "parts": [o.partition for _, o in items],
                    "offs": [o.offset for _, o in items],
                },
            )
            return {Origin(p, o) for _, p, o in rows}

    async def prune(self, limit: int = 10_000) -> int:
        """Forget claims older than the TTL; returns how many were removed."""
        async with self._engine.begin() as conn:
            res = await conn.execute(_PRUNE, {"age": self._ttl, "limit": limit})
            return res.rowcount or 0
