"""The consumer-lag gauge on a real broker: positive while records wait, zero once read."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from shared.kafka import ConsumerLag, open_consumer
from shared.settings import Settings
from tests.helpers import eventually, publish

pytestmark = pytest.mark.integration


def lag_of(registry: CollectorRegistry, group: str) -> float:
    return sum(s.value for m in registry.collect() if m.name == "livetriage_consumer_lag"
               for s in m.samples if s.labels["group"] == group)


async def test_lag_counts_what_is_left_then_drains(settings: Settings) -> None:
    topic = settings.reports_topic
    await publish(settings, topic, [(b"k", b"x%d" % i) for i in range(60)])
    registry = CollectorRegistry()
    lag = ConsumerLag.of(registry)
    assert ConsumerLag.of(registry) is lag  # one gauge per registry
    async with open_consumer(settings, [topic], "lag-test") as consumer:
        got = 0
        while got == 0:
            got = sum(len(v) for v in (await consumer.getmany(timeout_ms=500, max_records=10)).values())
        await lag.observe(consumer, "lag-test")
        assert 0 < lag_of(registry, "lag-test") <= 60 - got

        async def drained() -> bool:
            await consumer.getmany(timeout_ms=200, max_records=100)
            lag._next.clear()  # observe now, not in a second
            await lag.observe(consumer, "lag-test")
            return lag_of(registry, "lag-test") == 0

        await eventually(drained, timeout=20, what="lag back to zero")
