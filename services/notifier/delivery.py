"""The delivery worker: sends due notifications from the outbox, records every attempt.

Each batch is claimed with row locks held for the duration of its HTTP calls, so two workers
(or two notifier instances) never send the same notification at once. A crash mid-send
leaves the row pending: it is sent again with the same Idempotency-Key (and PagerDuty's
dedup_key), never under a new one. A channel that is down delays pages; after
``max_attempts`` a notification is marked dead, visible in the API and in metrics.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from services.notifier.channels.base import Channel, Outcome, classify
from services.notifier.channels.pagerduty import PagerDuty
from services.notifier.channels.slack import Slack
from services.notifier.channels.webhook import Webhook
from services.notifier.metrics import NotifierMetrics
from services.notifier.outbox import RetryPolicy, claim, settle
from services.notifier.routing import PagerDutyChannel, Routing, SlackChannel
from shared.clock import Clock
from shared.errors import retryable_types

log = logging.getLogger(__name__)


def build_channels(routing: Routing) -> dict[str, Channel]:
    out: dict[str, Channel] = {}
    for name, cfg in routing.channels.items():
        if isinstance(cfg, PagerDutyChannel):
            out[name] = PagerDuty(name, cfg)
        elif isinstance(cfg, SlackChannel):
            out[name] = Slack(name, cfg)
        else:
            out[name] = Webhook(name, cfg)
    return out


class Deliverer:
    """Drains the outbox into the channels."""

    def __init__(
        self,
        engine: AsyncEngine,
        channels: dict[str, Channel],
        http: httpx.AsyncClient,
        clock: Clock,
        metrics: NotifierMetrics,
        *,
        policy: RetryPolicy,
        batch: int = 20,
        idle_poll_s: float = 0.5,
        seed: int | None = None,
    ) -> None:
        self.engine = engine
        self.channels = channels
        self.http = http
        self.clock = clock
        self.m = metrics
        self.policy = policy
        self.batch = batch
        self.idle_poll_s = idle_poll_s
        self.rng = random.Random(seed)
        self.wake = asyncio.Event()  # poked when something was enqueued

    async def _send(self, n: dict[str, Any]) -> tuple[dict[str, Any], Outcome, float]:
        started = time.perf_counter()
        channel = self.channels.get(n["channel"])
        if channel is None:
            return n, Outcome(False, False, None, f"channel {n['channel']!r} is not configured"), 0.0
        try:
            resp = await self.http.send(channel.request(n))
            outcome = classify(resp, None)
        except httpx.HTTPError as exc:
            outcome = classify(None, exc)
        return n, outcome, (time.perf_counter() - started) * 1000

    async def deliver_due(self) -> int:
        """Send one batch of due notifications; returns how many were attempted."""
        settled: list[tuple[dict[str, Any], str]] = []
        async with self.engine.begin() as conn:
            due = await claim(conn, now=self.clock.now(), limit=self.batch)
            if not due:
                return 0
            results = await asyncio.gather(*(self._send(n) for n in due))
            now = self.clock.now()
            for n, outcome, ms in results:
                status = await settle(conn, notification=n, outcome=outcome, now=now, duration_ms=ms,
                                      policy=self.policy, rng=self.rng)
                settled.append((n, status))
                if status == "dead":
                    log.error("notification %s to %s is dead: %s", n["key"], n["channel"], outcome.error,
                              extra={"incident_id": str(n["incident_id"]), "notification_key": n["key"]})
        # counted once the statuses are committed: a failed commit sends the batch again
        for n, status in settled:
            self.m.notifications.labels(n["channel"], status).inc()
            if status == "sent":
                self.m.delivery_latency.observe(max(0.0, (now - n["created_at"]).total_seconds()))
        return len(due)

    async def run(self, stop: asyncio.Event) -> None:
        retryable = retryable_types()
        while not stop.is_set():
            try:
                sent = await self.deliver_due()
            except retryable as exc:
                log.warning("delivery paused: %r", exc)
                sent = 0
            if sent:
                continue
            self.wake.clear()
            waits = [asyncio.create_task(stop.wait()), asyncio.create_task(self.wake.wait())]
            await asyncio.wait(waits, timeout=self.idle_poll_s, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
