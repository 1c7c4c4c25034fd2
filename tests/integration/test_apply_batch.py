"""A batch of signals applied at once leaves the database as applying them one by one does."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from services.notifier.store import apply_signal, apply_signals
from shared.db import open_engine
from shared.events import Category, RatePoint, RateSeries, Severity, Signal
from shared.settings import Settings
from tests.conftest import scratch_database

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def storm(seed: int, n: int = 400) -> list[Signal]:
    """Spikes on a few streams opening, growing, re-opening after a resolve, and mostly
    progress signals (some for keys with nothing open, some repeating a hop)."""
    rng = random.Random(seed)
    out: list[Signal] = []
    opened: dict[str, int] = {}
    for i in range(n):
        stream = f"s{rng.randrange(6)}"
        key = f"spike:{stream}:hate"
        at = T0 + timedelta(seconds=10 * i)
        r = rng.random()
        if key not in opened or r < 0.05:
            kind, sev = "spike", rng.choice(["SEV3", "SEV2", "SEV1"])
            opened.setdefault(key, i)
        elif r < 0.1:
            kind, sev = "resolve", "SEV3"
            opened.pop(key)
        else:
            kind, sev = "progress", "SEV3"
        hop = T0 + timedelta(seconds=10 * rng.randrange(max(1, i)))
        out.append(Signal(
            signal_id=f"{kind}:{key}:{i}", kind=kind, dedup_key=key, stream_id=stream,  # type: ignore[arg-type]
            category=Category.hate, severity=Severity(sev), score=0.5, observed_at=at, window_start=at,
            report_count=rng.randrange(1, 50), reason="test",
            rate=RateSeries(hop_s=10, window_s=60, baseline=2.0, upper=9.0,
                            points=[RatePoint(at=hop, count=rng.randrange(100)),
                                    RatePoint(at=hop + timedelta(seconds=10), count=rng.randrange(100))]),
        ))
    return out


async def snapshot(url: str) -> dict[str, Any]:
    async with open_engine(Settings(database_url=url)) as engine, engine.connect() as conn:
        inc = (await conn.execute(sa.text(
            "SELECT dedup_key, status, severity, last_signal_at, report_count, signal_count, resolved_at, "
            "detected_event_at FROM incidents ORDER BY dedup_key, detected_event_at"))).all()
        rate = (await conn.execute(sa.text(
            "SELECT i.dedup_key, i.detected_event_at, r.at, r.count FROM incident_rate r "
            "JOIN incidents i ON i.id = r.incident_id ORDER BY 1, 2, 3"))).all()
        sigs = (await conn.execute(sa.text("SELECT signal_id FROM incident_signals ORDER BY 1"))).all()
    return {"incidents": inc, "rate": rate, "signals": sigs}


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_batch_applies_as_one_by_one_does(pg_admin_url: str, template_db: str, seed: int) -> None:
    signals = storm(seed)
    now = T0 + timedelta(hours=2)
    async with scratch_database(pg_admin_url, template_db) as one, \
            scratch_database(pg_admin_url, template_db) as many:
        async with open_engine(Settings(database_url=one)) as engine:
            for sig in signals:
                async with engine.begin() as conn:
                    await apply_signal(conn, signal=sig, now=now)
        async with open_engine(Settings(database_url=many)) as engine:
            for start in range(0, len(signals), 97):  # batches that split the runs anywhere
                async with engine.begin() as conn:
                    applied = await apply_signals(conn, signals=signals[start:start + 97], now=now)
                assert len(applied) == len(signals[start:start + 97])
        expected, got = await snapshot(one), await snapshot(many)
    assert expected["rate"], "the storm charted nothing: the test would prove nothing"
    assert any(r[1] == "resolved" for r in expected["incidents"])
    assert got == expected
