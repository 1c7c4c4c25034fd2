"""Session-scoped real infrastructure: a tansu broker and a PostgreSQL server.

PostgreSQL is the machine's server on 127.0.0.1:5432 when it answers (or ``DATABASE_URL``
pointing at a server where we may create databases), else a private embedded one. The
schema is migrated once into a template database; each test gets a fresh copy of it, its
own topics and its own consumer groups.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from livetriage.embedded import Tansu, free_port, start_postgres, with_database
from shared.db import migrate
from shared.kafka import ensure_topics
from shared.settings import Settings

# The machine may be busy (benchmarks, a second test run): judge properties, not speed.
hypothesis_settings.register_profile(
    "livetriage", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=200
)
hypothesis_settings.load_profile("livetriage")


def _local_pg_url() -> str | None:
    explicit = os.environ.get("LIVETRIAGE_TEST_DATABASE_URL")
    if explicit:
        return explicit
    with socket.socket() as s:
        s.settimeout(0.5)
        if s.connect_ex(("127.0.0.1", 5432)) == 0:
            return "postgresql://postgres@127.0.0.1:5432/postgres"
    return None


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    """A fresh tansu broker for the whole session."""
    tansu = Tansu(free_port())
    asyncio.run(tansu.start())
    yield tansu.bootstrap
    tansu.stop()


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    url = _local_pg_url()
    if url is not None:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="livetriage-pg-") as d:
        server = start_postgres(Path(d) / "pg")
        yield server.get_uri(database="postgres")
        server.cleanup()


# Keys every test database has (created in the template), one per scope.
ADMIN_KEY = "lt_tadmin01_" + "a" * 40
WRITE_KEY = "lt_twrite01_" + "w" * 40
READ_KEY = "lt_tread001_" + "r" * 40
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


async def _seed_keys(url: str) -> None:
    from datetime import UTC, datetime

    from services.notifier.auth import create_key
    from shared.settings import Settings as _S
    from shared.db import open_engine

    async with open_engine(_S(database_url=url)) as engine, engine.begin() as conn:
        now = datetime.now(UTC)
        for key, name, scope in ((ADMIN_KEY, "test-admin", "admin"), (WRITE_KEY, "test-writer", "write"),
                                 (READ_KEY, "test-reader", "read")):
            await create_key(conn, name=name, scopes=[scope], now=now, key=key)


@pytest.fixture(scope="session")
def template_db(pg_admin_url: str) -> Iterator[str]:
    """A migrated template database; tests clone it (CREATE DATABASE ... TEMPLATE)."""
    name = f"lt_tmpl_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(pg_admin_url, f'CREATE DATABASE "{name}"'))
    migrate(with_database(pg_admin_url, name))
    asyncio.run(_seed_keys(with_database(pg_admin_url, name)))
    yield name
    asyncio.run(_admin(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@asynccontextmanager
async def scratch_database(pg_admin_url: str, template_db: str) -> AsyncIterator[str]:
    """A fresh, migrated database (a copy of the template), dropped afterwards."""
    name = f"lt_test_{uuid.uuid4().hex[:10]}"
    await _admin(pg_admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    try:
        yield with_database(pg_admin_url, name)
    finally:
        await _admin(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest_asyncio.fixture
async def database_url(pg_admin_url: str, template_db: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    async with scratch_database(pg_admin_url, template_db) as url:
        yield url


def make_settings(broker: str, database_url: str, **overrides: object) -> Settings:
    """Settings with topics and groups of this test alone, tuned for fast group joins."""
    tag = uuid.uuid4().hex[:8]
    values: dict[str, object] = {
        "kafka_bootstrap_servers": broker,
        "database_url": database_url,
        "reports_topic": f"live.reports.{tag}",
        "clean_topic": f"triage.reports.{tag}",
        "signals_topic": f"triage.signals.{tag}",
        "trends_topic": f"triage.trends.{tag}",
        "dlq_topic": f"live.reports.dlq.{tag}",
        "actions_topic": f"moderation.actions.{tag}",
        "ingest_group": f"ingest-{tag}",
        "triage_group": f"triage-{tag}",
        "notifier_group": f"notifier-{tag}",
        "actions_group": f"actions-{tag}",
        "trend_group": f"trends-{tag}",
        "topic_partitions": 3,
        # tansu makes a joining member wait about half the session timeout
        "session_timeout_ms": 2000,
        "heartbeat_interval_ms": 200,
        "poll_timeout_ms": 100,
        "api_port": 0,
        "checkpoint_interval_s": 0.2,
        "idle_flush_s": 0,  # tests drive event time themselves
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest_asyncio.fixture
async def settings(broker: str, database_url: str) -> Settings:
    s = make_settings(broker, database_url)
    await ensure_topics(s)
    return s
