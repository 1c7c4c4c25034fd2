"""How late the event loop runs: the time a short timer fires after it was due.

A coroutine that computes without awaiting (a big batch, a long scan) holds every other task
of the process: heartbeats, commits, ``/metrics``. This is how that shows, in production as in
the benchmarks: ``livetriage_event_loop_lag_seconds`` (a histogram of each tick's lateness)
and ``livetriage_event_loop_lag_max_seconds`` (the worst since the process started).
"""

from __future__ import annotations

import asyncio
import weakref

from prometheus_client import CollectorRegistry, Gauge, Histogram

TICK_S = 0.05
_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, EventLoopLag] = weakref.WeakKeyDictionary()


class EventLoopLag:
    """The process's event-loop lag metrics; ``run`` measures them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.lag = Histogram(
            "livetriage_event_loop_lag_seconds", "How late a 50 ms timer of the event loop fired.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0), registry=registry,
        )
        self.worst = Gauge("livetriage_event_loop_lag_max_seconds",
                           "The event loop's worst lag since the process started.", registry=registry)
        self.worst_s = 0.0

    @classmethod
    def of(cls, registry: CollectorRegistry) -> EventLoopLag:
        """One per registry: the services of one process share one loop."""
        lag = _BY_REGISTRY.get(registry)
        if lag is None:
            lag = _BY_REGISTRY[registry] = cls(registry)
        return lag

    def observe(self, late_s: float) -> None:
        late_s = max(0.0, late_s)
        self.lag.observe(late_s)
        if late_s > self.worst_s:
            self.worst_s = late_s
            self.worst.set(late_s)

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: a timer every TICK_S, its lateness observed (a measurement, not a
        synchronisation)."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            due = loop.time() + TICK_S
            await asyncio.sleep(TICK_S)
            self.observe(loop.time() - due)
