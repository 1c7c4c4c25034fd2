"""The ``livetriage`` command: up, ingest, triage, notifier, migrate, simulate, backtest, schema."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from livetriage.client import add_parsers as add_client_parsers
from livetriage.client import run_client
from livetriage.embedded import embedded_broker, embedded_postgres_url
from livetriage.runtime import ROLES, serve_until_stopped, start_services
from shared.db import migrate
from shared.errors import ConfigError, LivetriageError
from shared.events import report_json_schema
from shared.kafka import ensure_topics, wait_for_broker
from shared.logs import configure_logging
from shared.settings import Settings

T = TypeVar("T")

log = logging.getLogger("livetriage")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine on uvloop where it is installed (less CPU per request and
    per batch), else on the stdlib loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return asyncio.run(main)
    return uvloop.run(main)


async def _wait_for_broker(settings: Settings) -> None:
    """``wait_for_broker`` without aiokafka's ERROR line per refused connect (five a second
    for the whole wait): when it gives up, its one line says it all."""
    client_log = logging.getLogger("aiokafka")
    level = client_log.level
    client_log.setLevel(logging.CRITICAL)
    try:
        await wait_for_broker(settings)
    finally:
        client_log.setLevel(level)


def _install_stop(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def _prepare(settings: Settings) -> None:
    """Topics exist and the schema is migrated."""
    await _wait_for_broker(settings)
    await ensure_topics(settings)
    await asyncio.to_thread(migrate, settings.require_database())


async def reset_triage_state(settings: Settings) -> None:
    from services.triage.state import TriageStore
    from shared.db import open_engine

    async with open_engine(settings) as engine:
        for group in (settings.triage_group, settings.trend_group):
            await TriageStore(engine, group).reset()


async def first_admin_key(settings: Settings) -> str | None:
    """Without a bootstrap key and with no keys yet, create one admin key to hand out."""
    if settings.bootstrap_api_key is not None:
        return None
    from services.notifier.auth import any_keys, create_key
    from shared.clock import SystemClock
    from shared.db import open_engine

    async with open_engine(settings) as engine, engine.begin() as conn:
        if await any_keys(conn):
            return None
        key, _ = await create_key(conn, name="admin", scopes=["admin"], now=SystemClock().now())
        return key


async def cmd_keys(settings: Settings, args: argparse.Namespace) -> None:
    from services.notifier.auth import create_key, list_keys, revoke_key
    from shared.clock import SystemClock
    from shared.db import open_engine

    async with open_engine(settings) as engine, engine.begin() as conn:
        now = SystemClock().now()
        if args.keys_command == "create":
            try:
                key, _ = await create_key(conn, name=args.name, scopes=args.scopes.split(","), now=now)
            except ValueError as exc:
                raise ConfigError(str(exc)) from exc
            print(f"{key}\n(shown once: store it now)")
        elif args.keys_command == "revoke":
            if not await revoke_key(conn, prefix=args.prefix, now=now):
                raise ConfigError(f"no active key with prefix {args.prefix}")
            print(f"revoked {args.prefix}")
        else:
            for k in await list_keys(conn):
                state = "revoked" if k["revoked_at"] else "active"
                print(f"{k['prefix']}  {k['name']:<20} {','.join(k['scopes']):<18} {state}")


async def cmd_up(settings: Settings) -> None:
    stop = asyncio.Event()
    _install_stop(stop)
    async with AsyncExitStack() as stack:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        updates: dict[str, str] = {}
        if not settings.kafka_bootstrap_servers:
            updates["kafka_bootstrap_servers"] = await stack.enter_async_context(
                embedded_broker(settings.data_dir, settings.embedded_kafka_port)
            )
        if not settings.database_url:
            updates["database_url"] = await stack.enter_async_context(
                embedded_postgres_url(settings.data_dir)
            )
        settings = settings.model_copy(update=updates)
        await _prepare(settings)
        if "kafka_bootstrap_servers" in updates:
            # a fresh embedded broker starts empty: checkpointed offsets no longer apply
            await reset_triage_state(settings)
        first_key = await first_admin_key(settings)
        async with start_services(settings, ROLES, stop) as running:
            if first_key:
                print(f"Created the first admin API key (shown once, keep it):\n  {first_key}", flush=True)
            print(
                f"livetriage is up\n"
                f"  API      http://{settings.api_host}:{running.api_port}/v1/incidents\n"
                f"  docs     http://{settings.api_host}:{running.api_port}/docs\n"
                f"  metrics  http://{settings.api_host}:{running.api_port}/metrics\n"
                f"  broker   {settings.kafka_bootstrap_servers}"
                f"{' (embedded tansu)' if 'kafka_bootstrap_servers' in updates else ''}\n"
                f"  database {'embedded PostgreSQL in ' + str(settings.data_dir / 'pg') if 'database_url' in updates else 'DATABASE_URL'}\n"
                f"Try: livetriage simulate --spike   (Ctrl-C stops)",
                flush=True,
            )
            await serve_until_stopped(running, stop)
    print("livetriage stopped", flush=True)


async def cmd_service(settings: Settings, role: str) -> None:
    settings.require_kafka()
    settings.require_database()
    stop = asyncio.Event()
    _install_stop(stop)
    await _wait_for_broker(settings)
    await ensure_topics(settings)
    async with start_services(settings, [role], stop) as running:
        if settings.metrics_port and role != "notifier":
            from prometheus_client import start_http_server

            start_http_server(settings.metrics_port, registry=running.registry)
        log.info("%s running", role)
        await serve_until_stopped(running, stop)


async def cmd_simulate(settings: Settings, args: argparse.Namespace) -> None:
    from livetriage.simulate import Spike, simulate

    settings.require_kafka()
    await _wait_for_broker(settings)
    await ensure_topics(settings)
    spike = (
        Spike(stream_id=args.spike_stream, category=args.spike_category, start_s=args.spike_at,
              duration_s=args.spike_duration, rate=args.spike_rate)
        if args.spike
        else None
    )
    from tqdm import tqdm

    with tqdm(total=round(args.duration), unit="s", desc="simulate", disable=not sys.stderr.isatty()) as bar:

        def advance(offset_s: float) -> None:
            if offset_s >= bar.n + 1:
                bar.update(int(offset_s) - bar.n)

        sent = await simulate(
            settings, rate=args.rate, duration_s=args.duration, streams=args.streams, seed=args.seed,
            spike=spike, duplicate_ratio=args.duplicates, malformed_ratio=args.malformed, progress=advance,
        )
    print(f"sent {sent['reports']} records ({sent['spike']} to the spike stream)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="livetriage", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run everything in one process (embeds a broker and a database if unset)")
    for role in ROLES:
        sub.add_parser(role, help=f"run the {role} service alone (scale out with more instances)")
    sub.add_parser("migrate", help="apply database migrations")
    sim = sub.add_parser("simulate", help="publish synthetic reports")
    sim.add_argument("--rate", type=float, default=200.0, help="reports per second (default 200)")
    sim.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    sim.add_argument("--streams", type=int, default=2000)
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--duplicates", type=float, default=0.02, help="share of resent reports")
    sim.add_argument("--malformed", type=float, default=0.005, help="share of malformed records")
    sim.add_argument("--spike", action="store_true", help="inject a spike on one stream")
    sim.add_argument("--spike-stream", default="stream-spike")
    sim.add_argument("--spike-category", default="violence")
    sim.add_argument("--spike-at", type=float, default=5.0, help="seconds after start")
    sim.add_argument("--spike-duration", type=float, default=30.0)
    sim.add_argument("--spike-rate", type=float, default=20.0, help="extra reports/s on the stream")
    keys = sub.add_parser("keys", help="manage API keys (needs DATABASE_URL)")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    kc = ksub.add_parser("create", help="create a key and print it once")
    kc.add_argument("--name", required=True)
    kc.add_argument("--scopes", default="read", help="comma-separated: read, write, admin")
    kr = ksub.add_parser("revoke", help="revoke a key by its prefix")
    kr.add_argument("prefix")
    ksub.add_parser("list", help="list keys (prefixes, names, scopes)")
    add_client_parsers(sub)
    from livetriage.backtest.command import add_parser as add_backtest_parser

    add_backtest_parser(sub)
    sch = sub.add_parser("schema", help="print the report contract as JSON Schema")
    sch.add_argument("--out", type=Path, default=None)
    return p


def _one_line(exc: BaseException) -> str:
    """What the operator reads: one line, though YAML and driver errors span several."""
    text = str(exc).split("(Background on this error", 1)[0]
    return " ".join(text.split()) or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"livetriage: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        match args.command:
            case "up":
                run(cmd_up(settings))
            case "migrate":
                migrate(settings.require_database())
                print("database migrated")
            case "simulate":
                run(cmd_simulate(settings, args))
            case "backtest":
                from livetriage.backtest.command import cmd_backtest

                return run(cmd_backtest(settings, args))
            case "keys":
                settings.require_database()
                run(cmd_keys(settings, args))
            case "incidents" | "oncall" | "silences" | "report":
                return run_client(args)
            case "schema":
                text = json.dumps(report_json_schema(), indent=2) + "\n"
                if args.out:
                    args.out.write_text(text)
                else:
                    sys.stdout.write(text)
            case role:
                run(cmd_service(settings, role))
    except ConfigError as exc:
        print(f"livetriage: configuration error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except LivetriageError as exc:
        print(f"livetriage: {_one_line(exc)}", file=sys.stderr)
        return 1
    except (OSError, SQLAlchemyError) as exc:  # migrate, keys: the database is down or refuses us
        print(f"livetriage: database unreachable: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
