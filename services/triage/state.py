"""Triage state in Postgres: checkpoints (task snapshot + next offset + outbox) and baselines.

A checkpoint row is written in one transaction with the baselines evicted since the last
one, so what is on disk is always a state that some prefix of the partition produced.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.triage.detector import BaselineRow

SEP = "\x1f"  # joins the parts of a key; never in a stream id or category


def key_text(key: tuple[str, ...]) -> str:
    return SEP.join(key)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A partition's persisted state."""

    next_offset: int
    snapshot: dict[str, Any] | bytes  # bytes: already JSON (taken while the state stood still)
    outbox: dict[str, Any] | None


_UPSERT_CHECKPOINT = text(
    """
    INSERT INTO triage_checkpoints (group_id, topic, partition, next_offset, snapshot, outbox, updated_at)
    VALUES (:g, :t, :p, :o, :s, :x, now())
    ON CONFLICT (group_id, topic, partition) DO UPDATE
    SET next_offset = EXCLUDED.next_offset, snapshot = EXCLUDED.snapshot,
        outbox = EXCLUDED.outbox, updated_at = now()
    """
)
_UPSERT_BASELINES = text(
    """
    INSERT INTO triage_baselines (group_id, key, mean, var, n, closed_ms, recur)
    SELECT :g, k, m, v, n, c, r
    FROM unnest(CAST(:keys AS text[]), CAST(:means AS float8[]), CAST(:vars AS float8[]),
                CAST(:ns AS int[]), CAST(:closed AS bigint[]), CAST(:recur AS text[])) AS t(k, m, v, n, c, r)
    ON CONFLICT (group_id, key) DO UPDATE
    SET mean = EXCLUDED.mean, var = EXCLUDED.var, n = EXCLUDED.n, closed_ms = EXCLUDED.closed_ms,
        recur = EXCLUDED.recur
    """
)


class TriageStore:
    """Reads and writes triage state for one consumer group."""

    def __init__(self, engine: AsyncEngine, group_id: str) -> None:
        self._engine = engine
        self._group = group_id
        # False while the group has no stored baselines at all (a fresh system): then a
        # lookup for a new key can only come back empty and is skipped. Refreshed on every
        # restore (a partition's keys are only ever written by its current owner).
        self.maybe_has_rows = True
        # evicted baselines on their way to the table (a checkpoint being written in the
        # background): lookups see them first, so a key that comes back meanwhile resumes
        # its baseline instead of starting from the prior
        self._unsaved: dict[tuple[str, ...], BaselineRow] = {}

    def stage_evicted(self, evicted: Mapping[tuple[str, ...], BaselineRow]) -> None:
        """Make ``evicted`` visible to ``baselines`` before ``save`` has written them."""
        if evicted:
            self._unsaved.update(evicted)
            self.maybe_has_rows = True

    async def load(self, topic: str, partitions: Iterable[int]) -> dict[int, Checkpoint]:
        parts = list(partitions)
        if not parts:
            return {}
        async with self._engine.connect() as conn:
            self.maybe_has_rows = bool(await conn.scalar(
                text("SELECT EXISTS (SELECT 1 FROM triage_baselines WHERE group_id = :g)"),
                {"g": self._group}))
            rows = await conn.execute(
                text(
                    "SELECT partition, next_offset, snapshot, outbox FROM triage_checkpoints "
                    "WHERE group_id = :g AND topic = :t AND partition = ANY(CAST(:ps AS int[]))"
                ),
                {"g": self._group, "t": topic, "ps": parts},
            )
            return {
                p: Checkpoint(o, orjson.loads(s), orjson.loads(x) if x is not None else None)
                for p, o, s, x in rows
            }

    async def save(
        self,
        topic: str,
        checkpoints: Mapping[int, Checkpoint],
        evicted: Mapping[tuple[str, ...], BaselineRow],
    ) -> None:
        async with self._engine.begin() as conn:
            if evicted:
                self.maybe_has_rows = True
                keys = list(evicted)
                await conn.execute(
                    _UPSERT_BASELINES,
                    {
                        "g": self._group,
                        "keys": [key_text(k) for k in keys],
                        "means": [evicted[k][0] for k in keys],
                        "vars": [evicted[k][1] for k in keys],
                        "ns": [evicted[k][2] for k in keys],
                        "closed": [evicted[k][3] for k in keys],
                        "recur": [_recur_text(evicted[k]) for k in keys],
                    },
                )
            for p, cp in checkpoints.items():
                await conn.execute(
                    _UPSERT_CHECKPOINT,
                    {
                        "g": self._group, "t": topic, "p": p, "o": cp.next_offset,
                        "s": cp.snapshot if isinstance(cp.snapshot, bytes) else orjson.dumps(cp.snapshot),
                        "x": orjson.dumps(cp.outbox) if cp.outbox is not None else None,
                    },
                )
        unsaved = self._unsaved
        for k, row in evicted.items():  # on the table now (unless a newer row is on its way)
            if unsaved.get(k) == row:
                del unsaved[k]

    async def baselines(self, keys: Iterable[tuple[str, ...]]) -> dict[tuple[str, ...], BaselineRow]:
        if not self.maybe_has_rows:
            return {}
        keys = list(keys)
        unsaved = self._unsaved
        found = {k: unsaved[k] for k in keys if k in unsaved} if unsaved else {}
        wanted = {key_text(k): k for k in keys if k not in found}
        if not wanted:
            return found
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT key, mean, var, n, closed_ms, recur FROM triage_baselines "
                    "WHERE group_id = :g AND key = ANY(CAST(:ks AS text[]))"
                ),
                {"g": self._group, "ks": list(wanted)},
            )
            found.update((wanted[k], (m, v, n, c, orjson.loads(r) if r is not None else None))
                         for k, m, v, n, c, r in rows)
            return found

    async def forget(self, older_than_ms: int) -> int:
        """Drop baselines of keys silent since ``older_than_ms`` (event time)."""
        async with self._engine.begin() as conn:
            res = await conn.execute(
                text("DELETE FROM triage_baselines WHERE group_id = :g AND closed_ms < :c"),
                {"g": self._group, "c": older_than_ms},
            )
            return res.rowcount or 0

    async def reset(self) -> None:
        """Forget everything of this group (a fresh embedded broker has no offsets to match)."""
        async with self._engine.begin() as conn:
            await conn.execute(text("DELETE FROM triage_checkpoints WHERE group_id = :g"), {"g": self._group})
            await conn.execute(text("DELETE FROM triage_baselines WHERE group_id = :g"), {"g": self._group})


def _recur_text(row: BaselineRow) -> str | None:
    return orjson.dumps(row[4]).decode() if len(row) > 4 and row[4] is not None else None
