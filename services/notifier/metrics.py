"""Prometheus metrics of the notifier service, and the sampler that refreshes its state gauges.

Counters are incremented where the thing happens (the runners, the delivery worker, the
escalator, ``store.notify``); those incremented inside a DB transaction may count again
when a failed batch is retried. The gauges describe the database (open incidents, the
outbox) and are refreshed every ``StateSampler.period_s`` by their own task.
"""

from __future__ import annotations

import asyncio
import itertools
import logging

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy.ext.asyncio import AsyncEngine

from services.notifier.tables import incidents, notifications
from shared.clock import Clock
from shared.kafka import ConsumerLag
from shared.looplag import EventLoopLag

log = logging.getLogger(__name__)

# seconds from a spike observed to its incident applied, and from a page queued to sent
# (the group wait and retries included): seconds to tens of minutes
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
SEVERITIES = ("SEV1", "SEV2", "SEV3", "SEV4")
OPEN_STATUSES = ("triggered", "acknowledged")
OUTBOX_STATUSES = ("pending", "dead")


class NotifierMetrics:
    """Signals applied, incidents opened, pages sent or held, escalations, actions, state."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.lag = ConsumerLag.of(registry)
        self.loop_lag = EventLoopLag.of(registry)
        self.signals = Counter(
            "livetriage_notifier_signals_consumed", "Signals consumed.", ["kind"], registry=registry
        )
        self.duplicates = Counter(
            "livetriage_notifier_signals_duplicate", "Signals already applied (redeliveries).",
            registry=registry,
        )
        self.invalid = Counter(
            "livetriage_notifier_signals_invalid", "Unreadable signals sent to the DLQ.", registry=registry
        )
        self.incidents_created = Counter(
            "livetriage_notifier_incidents_created", "Incidents opened.", ["severity"], registry=registry
        )
        self.notifications = Counter(
            "livetriage_notifier_notifications",
            "Delivery attempts by channel and resulting status: sent, pending (failed, a retry is "
            "scheduled) or dead (given up).",
            ["channel", "status"], registry=registry,
        )
        self.batch_seconds = Histogram(
            "livetriage_notifier_batch_seconds", "Time to apply one batch of signals.", registry=registry
        )
        self.signal_latency = Histogram(
            "livetriage_notifier_signal_latency_seconds",
            "From a signal's observed_at to its incident change committed.",
            buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.delivery_latency = Histogram(
            "livetriage_notifier_delivery_latency_seconds",
            "From a notification queued to sent (group wait and retries included).",
            buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.pages_held = Counter(
            "livetriage_notifier_pages_held",
            "Pages not sent: silenced, inhibited, group_wait (resolved before its first page went "
            "out, so nobody is paged) or grouped (folded into a page still waiting).",
            ["reason"], registry=registry,
        )
        self.escalations = Counter(
            "livetriage_notifier_escalations",
            "Escalation steps paged, by the policy's level (1 is paged when the incident opens).",
            ["level"], registry=registry,
        )
        self.escalation_repeats = Counter(
            "livetriage_notifier_escalation_repeats",
            "Escalation steps paged in a repeat of a policy's levels.", registry=registry,
        )
        self.repeats = Counter(
            "livetriage_notifier_pages_repeated",
            "Unacknowledged incidents paged again after the repeat interval.", registry=registry,
        )
        self.actions = Counter(
            "livetriage_notifier_actions_consumed", "Moderation actions consumed.", ["action"],
            registry=registry,
        )
        self.actions_duplicate = Counter(
            "livetriage_notifier_actions_duplicate", "Moderation actions already applied (redeliveries).",
            registry=registry,
        )
        self.actions_invalid = Counter(
            "livetriage_notifier_actions_invalid", "Unreadable moderation actions sent to the DLQ.",
            registry=registry,
        )
        self.resolved_by_action = Counter(
            "livetriage_notifier_incidents_resolved_by_action",
            "Incidents resolved by a terminal moderation action.", registry=registry,
        )
        self.incidents_open = Gauge(
            "livetriage_notifier_incidents_open", "Open incidents by severity and status.",
            ["severity", "status"], registry=registry,
        )
        self.outbox = Gauge(
            "livetriage_notifier_outbox_notifications", "Notifications in the outbox: pending or dead.",
            ["status"], registry=registry,
        )
        self.oldest_pending = Gauge(
            "livetriage_notifier_outbox_oldest_pending_seconds",
            "Age of the oldest pending notification (0 when none is pending).", registry=registry,
        )


class StateSampler:
    """Refreshes the state gauges from the database every ``period_s`` until stopped."""

    def __init__(self, engine: AsyncEngine, metrics: NotifierMetrics, clock: Clock, *,
                 period_s: float = 15.0) -> None:
        self.engine = engine
        self.m = metrics
        self.clock = clock
        self.period_s = period_s

    async def sample(self) -> None:
        """One refresh (tests call it directly)."""
        async with self.engine.connect() as conn:
            open_rows = (await conn.execute(
                sa.select(incidents.c.severity, incidents.c.status, sa.func.count())
                .where(incidents.c.status != "resolved")
                .group_by(incidents.c.severity, incidents.c.status)
            )).all()
            outbox_rows = (await conn.execute(
                sa.select(notifications.c.status, sa.func.count())
                .where(notifications.c.status.in_(OUTBOX_STATUSES))
                .group_by(notifications.c.status)
            )).all()
            oldest = await conn.scalar(
                sa.select(sa.func.min(notifications.c.created_at)).where(notifications.c.status == "pending")
            )
        # every combination is set, so a state nobody is in any more reads 0, not its last value
        counts = {(sev, st): 0 for sev, st in itertools.product(SEVERITIES, OPEN_STATUSES)}
        counts.update({(sev, st): n for sev, st, n in open_rows})
        for (sev, st), n in counts.items():
            self.m.incidents_open.labels(sev, st).set(n)
        outbox = dict.fromkeys(OUTBOX_STATUSES, 0) | {st: n for st, n in outbox_rows}
        for st, n in outbox.items():
            self.m.outbox.labels(st).set(n)
        age = 0.0 if oldest is None else max(0.0, (self.clock.now() - oldest).total_seconds())
        self.m.oldest_pending.set(age)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sample()
            except Exception as exc:  # noqa: BLE001
                # gauges are observability: a database error (of any of the types asyncpg and
                # SQLAlchemy raise) leaves them stale until the next period, it never stops
                # the notifier, whose service loop ends everything when one task ends
                log.warning("state gauges not refreshed: %r", exc)
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.period_s)
            except TimeoutError:
                pass
