"""Database plumbing: URL normalisation, the async engine, migrations.

The schema is owned by Alembic (``shared/migrations``); ``migrate`` applies it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.errors import ConfigError, RetryableError
from shared.settings import Settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def async_url(url: str) -> str:
    """Accept postgres://, postgresql:// or postgresql+asyncpg:// and return the asyncpg form."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError with the URL in it
        raise ConfigError(f"DATABASE_URL is not a valid URL: {exc}") from exc
    if parsed.drivername in ("postgres", "postgresql", "postgresql+asyncpg"):
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise ConfigError(f"DATABASE_URL must be a PostgreSQL URL, not {parsed.drivername}")


def _json_dumps(value: object) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def create_engine(settings: Settings, **kw: object) -> AsyncEngine:
    return create_async_engine(
        async_url(settings.require_database()),
        pool_size=10,
        max_overflow=5,
        # no pre-ping: it costs a round trip per checkout; a dead connection fails one
        # attempt, which the runners retry and the API reports, then the pool replaces it
        pool_pre_ping=False,
        pool_recycle=1800,
        # JSONB in and out through orjson: the stdlib json codec was a tenth of an API request
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
        **kw,
    )


@asynccontextmanager
async def open_engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine disposed when the block exits."""
    engine = create_engine(settings)
    try:
        yield engine
    finally:
        await engine.dispose()


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def wait_for_database(engine: AsyncEngine, timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    last: Exception | None = None
    while asyncio.get_running_loop().time() < deadline:
        try:
            await ping(engine)
            return
        except (OSError, Exception) as exc:  # noqa: BLE001  (asyncpg raises several unrelated types)
            last = exc
            await asyncio.sleep(0.2)  # retry pacing, not synchronisation
    raise RetryableError(f"database unreachable: {last}")


def alembic_config(url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", async_url(url).replace("%", "%%"))
    return cfg


def migrate(url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (blocking; Alembic drives its own event loop)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)
