"""Notifier apply rate in a storm: signals/s through the real batch handler, against a raw
asyncpg insert of the same rows measured in the same run (the ceiling).

    python -m bench.notifier [--signals 60000] [--incidents 300] [--batch 5000]

The storm is what the outside replay saw: ~97% ``progress`` signals (a closed window of an
open spike, each with its chart points), the rest opens, severity rises and resolves of a few
hundred incidents. Each batch goes through ``SignalApplier.handle`` (JSON parse, apply in one
transaction, metrics) on a throwaway database on 127.0.0.1:5432.
The baseline inserts one row per signal (its id, kind, key and JSON payload) with asyncpg's
``executemany`` into a table of the same shape, one transaction per batch.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiokafka import ConsumerRecord
from prometheus_client import CollectorRegistry

from bench.pipeline import throwaway_database
from services.notifier.metrics import NotifierMetrics
from services.notifier.routing import Routing
from services.notifier.runner import SignalApplier
from shared.clock import SystemClock
from shared.db import migrate, open_engine
from shared.events import Category, RatePoint, RateSeries, Severity, Signal
from shared.settings import Settings

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def storm(n: int, incidents: int, seed: int) -> list[Signal]:
    rng = random.Random(seed)
    out: list[Signal] = []
    state: dict[int, int] = {}  # incident slot -> generation (a resolved key re-opens anew)
    for i in range(n):
        slot = rng.randrange(incidents)
        key = f"spike:stream-{slot}:hate"
        at = T0 + timedelta(seconds=i * 0.1)
        gen = state.get(slot)
        r = rng.random()
        if gen is None:
            kind, sev = "spike", "SEV3"
            state[slot] = gen = i
        elif r < 0.01:
            kind, sev = "spike", "SEV2"  # a rise
        elif r < 0.02:
            kind, sev = "resolve", "SEV3"
            del state[slot]
        else:
            kind, sev = "progress", "SEV3"
        hop = at.replace(microsecond=0) - timedelta(seconds=at.second % 10)
        out.append(Signal(
            signal_id=f"{kind}:{key}:{gen}:{i}", kind=kind, dedup_key=key,  # type: ignore[arg-type]
            stream_id=f"stream-{slot}", category=Category.hate, severity=Severity(sev), score=0.5,
            observed_at=at, window_start=at - timedelta(seconds=60), report_count=rng.randrange(5, 80),
            reason="benchmark spike", sample_report_ids=[f"r{i}"],
            rate=RateSeries(hop_s=10, window_s=60, baseline=3.0, upper=12.0,
                            points=[RatePoint(at=hop, count=rng.randrange(5, 80))]),
        ))
    return out


def records(signals: list[Signal], topic: str) -> list[ConsumerRecord]:  # type: ignore[type-arg]
    return [
        ConsumerRecord(topic, 0, i, 0, 0, s.dedup_key.encode(), v := s.model_dump_json().encode(),
                       None, 0, len(v), [])
        for i, s in enumerate(signals)
    ]


async def run_livetriage(url: str, signals: list[Signal], batch: int) -> float:
    s = Settings(database_url=url)
    recs = records(signals, s.signals_topic)
    async with open_engine(s) as engine:
        applier = SignalApplier(s, engine, None, NotifierMetrics(CollectorRegistry()),  # type: ignore[arg-type]
                                SystemClock(), routing=Routing())
        started = time.perf_counter()
        for i in range(0, len(recs), batch):
            await applier.handle(recs[i:i + batch])
        return time.perf_counter() - started


async def run_raw(url: str, signals: list[Signal], batch: int) -> float:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE raw_signals (signal_id text PRIMARY KEY, kind text NOT NULL, "
                           "dedup_key text NOT NULL, received_at timestamptz NOT NULL, payload jsonb NOT NULL)")
        rows: list[tuple[Any, ...]] = []
        started = time.perf_counter()
        now = datetime.now(UTC)
        for i in range(0, len(signals), batch):
            # the same parse as the handler: bytes in, a model out, then its row
            part = [Signal.model_validate_json(s.model_dump_json()) for s in signals[i:i + batch]]
            rows = [(s.signal_id, s.kind, s.dedup_key, now, s.model_dump_json()) for s in part]
            async with conn.transaction():
                await conn.executemany("INSERT INTO raw_signals VALUES ($1, $2, $3, $4, $5::jsonb)", rows)
        return time.perf_counter() - started
    finally:
        await conn.close()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--signals", type=int, default=60_000)
    ap.add_argument("--incidents", type=int, default=300)
    ap.add_argument("--batch", type=int, default=5000, help="records per batch (the notifier's default)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    signals = storm(args.signals, args.incidents, args.seed)
    kinds = {k: sum(1 for s in signals if s.kind == k) for k in ("spike", "progress", "resolve")}
    print(f"storm: {len(signals):,} signals ({kinds}), batches of {args.batch}")
    async with throwaway_database() as url_lt, throwaway_database() as url_raw:
        await asyncio.to_thread(migrate, url_lt)
        raw_s = await run_raw(url_raw, signals, args.batch)
        lt_s = await run_livetriage(url_lt, signals, args.batch)
    raw_rate, lt_rate = len(signals) / raw_s, len(signals) / lt_s
    print(f"raw asyncpg insert (baseline): {raw_rate:,.0f} signals/s")
    print(f"livetriage notifier:           {lt_rate:,.0f} signals/s  "
          f"({100 * lt_rate / raw_rate:.1f}% of the baseline; target >= 2,000/s)")


if __name__ == "__main__":
    asyncio.run(main())
