"""A misconfigured ``livetriage`` exits non-zero, in bounded time, with one line on stderr
and no traceback: a bad routing file, an unreachable broker, an unreachable database."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from livetriage.embedded import free_port
from tests.integration.test_cli import clean_env

pytestmark = pytest.mark.integration
CLI = [sys.executable, "-m", "livetriage.cli"]


async def fails_with_one_line(args: list[str], env: dict[str, str], *, within: float) -> str:
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        _, err_b = await asyncio.wait_for(proc.communicate(), timeout=within)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"livetriage {' '.join(args)} still running after {within}s") from None
    err = err_b.decode()
    assert proc.returncode not in (0, None), err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("livetriage: "), err
    assert time.monotonic() - started < within
    return lines[0]


@pytest.mark.parametrize(("text", "expect"), [
    ("routes: [\n  - {match: {category: [hate]\n", "not valid YAML"),
    ("channels: {}\nroutes: []\ndefault: {team: ops, channels: []}\nsurprise: 1\n", "surprise"),
    ("routes: [{match: {colour: [red]}, team: a, channels: []}]\n", "colour"),
])
async def test_bad_routing_file(broker: str, database_url: str, tmp_path: Path, text: str, expect: str) -> None:
    routing = tmp_path / "routing.yaml"
    routing.write_text(text)
    env = clean_env(KAFKA_BOOTSTRAP_SERVERS=broker, DATABASE_URL=database_url,
                    LIVETRIAGE_ROUTING_FILE=str(routing), LIVETRIAGE_API_PORT="0",
                    LIVETRIAGE_REPORTS_TOPIC=f"r.{tmp_path.name}")
    line = await fails_with_one_line(["notifier"], env, within=60)
    assert line.startswith("livetriage: configuration error: routing file") and expect in line, line


async def test_missing_routing_file(broker: str, database_url: str, tmp_path: Path) -> None:
    env = clean_env(KAFKA_BOOTSTRAP_SERVERS=broker, DATABASE_URL=database_url,
                    LIVETRIAGE_ROUTING_FILE=str(tmp_path / "nope.yaml"), LIVETRIAGE_API_PORT="0")
    line = await fails_with_one_line(["notifier"], env, within=60)
    assert "does not exist" in line


async def test_unreachable_broker(database_url: str) -> None:
    # no setting shortens the wait: wait_for_broker gives up after its own 30 s
    env = clean_env(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1", DATABASE_URL=database_url)
    line = await fails_with_one_line(["ingest"], env, within=75)
    assert "broker 127.0.0.1:1 unreachable" in line


@pytest.mark.parametrize("args", [["migrate"], ["keys", "list"]])
async def test_unreachable_database(args: list[str]) -> None:
    env = clean_env(DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/nope")
    line = await fails_with_one_line(args, env, within=60)
    assert "unreachable" in line or "refused" in line.lower(), line


async def test_database_url_that_is_not_postgres() -> None:
    line = await fails_with_one_line(["migrate"], clean_env(DATABASE_URL="mysql://u@h/db"), within=60)
    assert line.startswith("livetriage: configuration error: DATABASE_URL must be a PostgreSQL URL")
