"""Runs livetriage services in this process: owns the clients, the tasks and shutdown.

``run_services`` opens every shared resource with ``async with`` (producer, DB engine),
starts one task per role plus the HTTP API, and on ``stop`` lets each runner finish its
batch and commit before the resources close.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import httpx
import uvicorn
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ingest.metrics import IngestMetrics
from services.ingest.runner import run_ingest
from services.notifier.actions import run_actions
from services.notifier.api.app import create_app
from services.notifier.api.deps import ApiState
from services.notifier.auth import ensure_key
from services.notifier.delivery import Deliverer, build_channels
from services.notifier.escalator import Escalator
from services.notifier.metrics import NotifierMetrics, StateSampler
from services.notifier.outbox import RetryPolicy
from services.notifier.routing import Routing, load_routing
from services.notifier.runner import run_notifier
from services.triage.metrics import TriageMetrics
from services.triage.runner import run_triage
from shared.clock import Clock, SystemClock
from shared.db import open_engine, wait_for_database
from shared.kafka import open_producer
from shared.looplag import EventLoopLag
from shared.settings import Settings

log = logging.getLogger(__name__)

ROLES = ("ingest", "triage", "notifier")


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handlers: our stop event drives shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Running:
    """Handles of a running set of services, for tests and benchmarks."""

    settings: Settings
    registry: CollectorRegistry
    ingest: IngestMetrics | None = None
    triage: TriageMetrics | None = None
    notifier: NotifierMetrics | None = None
    api_port: int | None = None
    deliverer: Deliverer | None = None
    escalator: Escalator | None = None
    state_sampler: StateSampler | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


@asynccontextmanager
async def start_services(
    settings: Settings,
    roles: Iterable[str],
    stop: asyncio.Event,
    *,
    api: bool = True,
    registry: CollectorRegistry | None = None,
    clock: Clock | None = None,
    routing: Routing | None = None,
) -> AsyncIterator[Running]:
    """Start ``roles`` (and the API with the notifier); on exit, stop and drain them.
    ``routing``: the notifier's, else the settings' routing file."""
    roles = set(roles)
    unknown = roles - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {unknown}")
    registry = registry or CollectorRegistry()
    running = Running(settings=settings, registry=registry)
    async with AsyncExitStack() as stack:
        producer = await stack.enter_async_context(open_producer(settings))
        engine = None
        if roles & {"ingest", "triage", "notifier"}:
            engine = await stack.enter_async_context(open_engine(settings))
            await wait_for_database(engine)
        if "ingest" in roles:
            assert engine is not None
            running.ingest = IngestMetrics(registry)
            running.tasks.append(
                asyncio.create_task(
                    run_ingest(settings, producer=producer, engine=engine, metrics=running.ingest, stop=stop),
                    name="ingest",
                )
            )
        if "triage" in roles:
            assert engine is not None
            running.triage = TriageMetrics(registry)
            running.tasks.append(
                asyncio.create_task(
                    run_triage(
                        settings, producer=producer, engine=engine, metrics=running.triage, stop=stop
                    ),
                    name="triage",
                )
            )
        server: uvicorn.Server | None = None
        if "notifier" in roles:
            assert engine is not None
            running.notifier = NotifierMetrics(registry)
            routing = routing or load_routing(settings.routing_file)
            if settings.bootstrap_api_key is not None:
                await ensure_bootstrap_key(engine, settings.bootstrap_api_key.get_secret_value())
            http = await stack.enter_async_context(
                httpx.AsyncClient(timeout=settings.delivery_timeout_s, follow_redirects=False)
            )
            deliverer = Deliverer(
                engine, build_channels(routing), http, clock or SystemClock(), running.notifier,
                policy=RetryPolicy(settings.delivery_max_attempts, settings.delivery_backoff_base_s,
                                   settings.delivery_backoff_cap_s),
            )
            running.deliverer = deliverer
            running.tasks.append(asyncio.create_task(deliverer.run(stop), name="delivery"))
            running.escalator = Escalator(engine, routing, clock or SystemClock(), on_enqueued=deliverer.wake.set,
                                          metrics=running.notifier)
            running.tasks.append(asyncio.create_task(running.escalator.run(stop), name="escalation"))
            running.state_sampler = StateSampler(engine, running.notifier, clock or SystemClock())
            running.tasks.append(asyncio.create_task(running.state_sampler.run(stop), name="state-gauges"))
            running.tasks.append(
                asyncio.create_task(
                    run_notifier(
                        settings,
                        engine=engine,
                        producer=producer,
                        metrics=running.notifier,
                        clock=clock or SystemClock(),
                        stop=stop,
                        routing=routing,
                        on_enqueued=deliverer.wake.set,
                    ),
                    name="notifier",
                )
            )
            running.tasks.append(
                asyncio.create_task(
                    run_actions(settings, engine=engine, producer=producer, clock=clock or SystemClock(),
                                stop=stop, routing=routing, on_enqueued=deliverer.wake.set,
                                metrics=running.notifier),
                    name="actions",
                )
            )
            if api:
                app = create_app(
                    ApiState(
                        settings=settings,
                        engine=engine,
                        registry=registry,
                        broker_check=producer.client.fetch_all_metadata,
                        routing=routing,
                        clock=clock or SystemClock(),
                        on_enqueued=deliverer.wake.set,
                    )
                )
                server = _EmbeddedServer(
                    uvicorn.Config(
                        app,
                        host=settings.api_host,
                        port=settings.api_port,
                        log_level="warning",
                        lifespan="off",
                        access_log=False,
                    )
                )
                running.tasks.append(asyncio.create_task(server.serve(), name="api"))
                while not server.started:
                    if running.tasks[-1].done():
                        running.tasks[-1].result()  # bind failure: raise it
                        raise RuntimeError("API server exited at start")
                    await asyncio.sleep(0.02)  # uvicorn exposes no start event
                running.api_port = server.servers[0].sockets[0].getsockname()[1]
        # one per process (per registry): how long any of its tasks held the event loop
        running.tasks.append(asyncio.create_task(EventLoopLag.of(registry).run(stop), name="loop-lag"))
        try:
            yield running
        finally:
            stop.set()
            if server is not None:
                server.should_exit = True
            results = await asyncio.gather(*running.tasks, return_exceptions=True)
            for task, res in zip(running.tasks, results, strict=True):
                if isinstance(res, BaseException) and not isinstance(res, asyncio.CancelledError):
                    log.error("%s ended with %r", task.get_name(), res)


async def ensure_bootstrap_key(engine: AsyncEngine, key: str) -> None:
    from shared.errors import ConfigError

    try:
        async with engine.begin() as conn:
            if await ensure_key(conn, key=key, name="bootstrap", now=SystemClock().now()):
                log.info("bootstrap API key created")
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


# gen0 every 50,000 net allocations (default 700), gen1 every 20 of those, a full pass at most
# every 100 gen1 passes (and, as always, only once the old heap grew by a quarter)
STREAMING_GC_THRESHOLDS = (50_000, 20, 100)


def freeze_startup_heap(*, streaming: bool = False) -> None:
    """Move everything built at start-up (modules, app, routes, pools) out of the collector's
    reach. Without it a full collection walks all of it: measured 75-100 ms pauses that
    stalled every in-flight API request (p99 of a list page 101 ms -> 44 ms with it).

    ``streaming`` (a process running ingest or triage) also spaces the collector out: window
    state is hundreds of thousands of long-lived objects, and with the default thresholds
    full passes over it took 23% of triage's time (bench.triage: 12 in 2.2 s of 9.8 s; the
    stage went from 18% of the ceiling to 28% with the freeze and 33% with these thresholds).
    The hot paths make no reference cycles, so garbage is freed by reference counting."""
    gc.collect()
    gc.freeze()
    if streaming:
        gc.set_threshold(*STREAMING_GC_THRESHOLDS)


async def serve_until_stopped(running: Running, stop: asyncio.Event) -> None:
    """Wait until ``stop`` is set or a service dies (which stops the rest)."""
    freeze_startup_heap(streaming=running.ingest is not None or running.triage is not None)
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stopper, *running.tasks], return_when=asyncio.FIRST_COMPLETED)
    if stopper not in done:
        stopper.cancel()
        for t in done:
            exc = t.exception()
            if exc is not None:
                log.error("service %s failed: %r; shutting down", t.get_name(), exc)
                stop.set()
                raise exc
        stop.set()
