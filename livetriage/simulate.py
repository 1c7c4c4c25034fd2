"""Synthetic report traffic: skewed stream popularity, mixed sources, duplicates, malformed
records, and an optional spike (one stream suddenly mass-reported for one category).

``ReportFactory`` is pure and seeded (benchmarks and tests use it); ``simulate`` paces it
onto Kafka in real time.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from shared.kafka import open_producer
from shared.settings import Settings

log = logging.getLogger(__name__)

CATEGORY_MIX = {
    "spam": 30, "harassment": 18, "hate": 12, "nudity": 10, "other": 9, "violence": 7,
    "dangerous_acts": 5, "self_harm": 3, "animal_harm": 3, "violent_extremism": 2, "child_safety": 1,
}
REGIONS = ["US", "BR", "IN", "DE", "GB", "FR", "JP", "MX", "ID", "TR", "KR", "NG"]
LANGS = ["en", "pt", "hi", "de", "fr", "ja", "es", "id", "tr", "ko"]
MALFORMED = [
    b"{not json",
    b'{"report_id": 42}',
    b'{"report_id":"x","stream_id":"s","reported_at":"yesterday","category":"hate","source":"user"}',
    b'["a", "list"]',
    b"\xff\xfe\x00garbage",
]


@dataclass(frozen=True)
class Spike:
    """Mass reports against one stream: ``rate`` extra reports/s from ``start_s`` on."""

    stream_id: str = "stream-spike"
    category: str = "violence"
    start_s: float = 10.0
    duration_s: float = 60.0
    rate: float = 20.0


class ReportFactory:
    """Makes realistic report dicts (and sometimes bad bytes), reproducibly from a seed."""

    def __init__(self, streams: int = 1000, seed: int = 7, run_id: str | None = None) -> None:
        self.rng = random.Random(seed)
        self.run_id = run_id or uuid.UUID(int=self.rng.getrandbits(128)).hex[:8]
        self.streams = [f"stream-{i:06d}" for i in range(streams)]
        # Zipf-like popularity: a few streams draw most viewers and reports
        self.weights = [1.0 / (i + 1) ** 1.1 for i in range(streams)]
        self.viewers = {s: max(1, int(200_000 / (i + 1) ** 1.2)) for i, s in enumerate(self.streams)}
        self._cats = list(CATEGORY_MIX)
        self._cat_w = list(CATEGORY_MIX.values())
        self._seq = 0

    def report(self, at: datetime, stream_id: str | None = None, category: str | None = None) -> dict[str, Any]:
        rng = self.rng
        self._seq += 1
        stream = stream_id or rng.choices(self.streams, self.weights)[0]
        source = rng.choices(["user", "classifier", "moderator"], [90, 8, 2])[0]
        rep: dict[str, Any] = {
            "report_id": f"{self.run_id}-{self._seq}",
            "stream_id": stream,
            "reported_at": at.isoformat().replace("+00:00", "Z"),
            "category": category or rng.choices(self._cats, self._cat_w)[0],
            "source": source,
            "region": rng.choice(REGIONS),
            "viewer_count": self.viewers.get(stream, 5000),
            "language": rng.choice(LANGS),
        }
        if source == "user":
            rep["reporter_id"] = f"user-{rng.randrange(5_000_000)}"
        if source == "classifier":
            rep["classifier_score"] = round(rng.betavariate(2, 5), 3)
        if rng.random() < 0.2:
            rep["text"] = "reported from the viewer app"
        return rep

    def malformed(self) -> bytes:
        return self.rng.choice(MALFORMED)


def encode(report: dict[str, Any]) -> bytes:
    return orjson.dumps(report)


def traffic(
    factory: ReportFactory,
    *,
    rate: float,
    duration_s: float,
    start: datetime,
    duplicate_ratio: float = 0.02,
    malformed_ratio: float = 0.005,
    spike: Spike | None = None,
) -> Iterator[tuple[float, bytes, bytes]]:
    """(offset in seconds, key, value) in time order; event times follow the offsets."""
    rng = factory.rng
    events: list[tuple[float, str | None, str | None]] = []
    n = int(rate * duration_s)
    events += [(rng.uniform(0, duration_s), None, None) for _ in range(n)]
    if spike is not None:
        m = int(spike.rate * min(spike.duration_s, duration_s - spike.start_s))
        events += [
            (spike.start_s + rng.uniform(0, spike.duration_s), spike.stream_id, spike.category)
            for _ in range(max(0, m))
        ]
    events.sort(key=lambda e: e[0])
    previous: tuple[bytes, bytes] | None = None
    for t, stream, cat in events:
        if t > duration_s:
            break
        if rng.random() < malformed_ratio:
            yield t, b"garbage", factory.malformed()
            continue
        if previous is not None and rng.random() < duplicate_ratio:
            yield (t, *previous)  # a client retry: the same report again
            continue
        rep = factory.report(start + timedelta(seconds=t), stream, cat)
        key, value = rep["stream_id"].encode(), encode(rep)
        previous = (key, value)
        yield t, key, value


async def simulate(
    settings: Settings,
    *,
    rate: float,
    duration_s: float,
    streams: int,
    seed: int,
    spike: Spike | None,
    duplicate_ratio: float = 0.02,
    malformed_ratio: float = 0.005,
    progress: Callable[[float], None] | None = None,
) -> dict[str, int]:
    """Publish traffic in real time (event time = now); returns what was sent."""
    factory = ReportFactory(streams=streams, seed=seed)
    sent = {"reports": 0, "spike": 0}
    t0 = time.monotonic()
    start = datetime.now(UTC)
    async with open_producer(settings) as producer:
        pending: list[asyncio.Future[Any]] = []
        for offset, key, value in traffic(
            factory,
            rate=rate,
            duration_s=duration_s,
            start=start,
            duplicate_ratio=duplicate_ratio,
            malformed_ratio=malformed_ratio,
            spike=spike,
        ):
            ahead = offset - (time.monotonic() - t0)
            if ahead > 0.05:
                await asyncio.gather(*pending)
                pending.clear()
                await asyncio.sleep(ahead)  # pacing the real-time stream, not synchronisation
            pending.append(await producer.send(settings.reports_topic, value, key=key))
            sent["reports"] += 1
            if progress is not None:
                progress(offset)
            if spike is not None and key == spike.stream_id.encode():
                sent["spike"] += 1
        await asyncio.gather(*pending)
    return sent

