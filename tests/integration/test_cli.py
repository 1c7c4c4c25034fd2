"""The ``livetriage`` command as a newcomer runs it: separate processes, real signals."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import httpx
import pytest

from livetriage.embedded import free_port
from tests.helpers import eventually

pytestmark = pytest.mark.integration
CLI = [sys.executable, "-m", "livetriage.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("LIVETRIAGE_") and k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")}
    env.update(extra)
    return env


async def start_up(env: dict[str, str], cwd: Path) -> tuple[asyncio.subprocess.Process, int, list[str]]:
    proc = await asyncio.create_subprocess_exec(
        *CLI, "up", env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert proc.stdout is not None
    lines: list[str] = []

    async def until_up() -> int:
        port = None
        while True:
            line = (await proc.stdout.readline()).decode()  # type: ignore[union-attr]
            if not line:
                raise AssertionError("livetriage up exited:\n" + "".join(lines))
            lines.append(line)
            m = re.search(r"API\s+http://127\.0\.0\.1:(\d+)/", line)
            if m:
                port = int(m.group(1))
            if "Ctrl-C stops" in line:  # the last line of the banner
                assert port is not None, "".join(lines)
                return port

    port = await asyncio.wait_for(until_up(), timeout=60)
    return proc, port, lines


async def stop_gracefully(proc: asyncio.subprocess.Process, lines: list[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    rest, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    lines.append(rest.decode())
    out = "".join(lines)
    assert proc.returncode == 0, out
    assert "livetriage stopped" in out


async def test_up_embedded_then_simulate_a_spike(tmp_path: Path) -> None:
    """The README's first command: no broker, no database configured."""
    kafka_port = free_port()
    env = clean_env(
        LIVETRIAGE_DATA_DIR=str(tmp_path / "data"),
        LIVETRIAGE_EMBEDDED_KAFKA_PORT=str(kafka_port),
        LIVETRIAGE_API_PORT="0",
        LIVETRIAGE_SESSION_TIMEOUT_MS="2000",
        LIVETRIAGE_HEARTBEAT_INTERVAL_MS="200",
    )
    proc, port, lines = await start_up(env, tmp_path)
    try:
        assert "embedded tansu" in "".join(lines)
        banner = "".join(lines)
        key_match = re.search(r"API key \(shown once, keep it\):\n\s+(lt_\S+)", banner)
        assert key_match, banner
        auth = {"Authorization": f"Bearer {key_match.group(1)}"}
        sim = await asyncio.create_subprocess_exec(
            *CLI, "simulate", "--rate", "50", "--duration", "4", "--spike", "--spike-at", "0",
            "--spike-rate", "30", "--spike-duration", "4",
            env={**env, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_port}"},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(sim.communicate(), timeout=60)
        assert sim.returncode == 0, out.decode()
        assert re.search(r"sent \d+ records \(\d+ to the spike stream\)", out.decode())
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=auth) as http:

            async def spike_incident() -> list:  # type: ignore[type-arg]
                r = await http.get("/v1/incidents", params={"stream_id": "stream-spike"})
                return r.json()["items"]

            items = await eventually(spike_incident, timeout=30, what="spike incident")
            assert items[0]["category"] == "violence"
            assert (await http.get("/readyz")).json()["status"] == "ok"
    finally:
        if proc.returncode is None:
            await stop_gracefully(proc, lines)
    # the embedded broker went away with us
    from livetriage.embedded import port_open

    assert not port_open(kafka_port)


async def test_up_uses_configured_broker_and_database(broker: str, database_url: str, tmp_path: Path) -> None:
    env = clean_env(
        KAFKA_BOOTSTRAP_SERVERS=broker,
        DATABASE_URL=database_url,
        LIVETRIAGE_API_PORT="0",
        LIVETRIAGE_REPORTS_TOPIC=f"r.{tmp_path.name}",
        LIVETRIAGE_DATA_DIR=str(tmp_path / "unused"),
    )
    proc, port, lines = await start_up(env, tmp_path)
    try:
        out = "".join(lines)
        assert f"broker   {broker}\n" in out and "embedded" not in out
        assert not (tmp_path / "unused" / "pg").exists()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/healthz")).status_code == 200
    finally:
        await stop_gracefully(proc, lines)


@pytest.mark.parametrize("role", ["ingest", "notifier"])
async def test_service_without_configuration_fails_with_one_line(role: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *CLI, role, env=clean_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 2
    assert err.decode().startswith("livetriage: configuration error: KAFKA_BOOTSTRAP_SERVERS is not set")
    assert "Traceback" not in err.decode()


async def test_invalid_setting_is_reported() -> None:
    proc = await asyncio.create_subprocess_exec(
        *CLI, "migrate", env=clean_env(LIVETRIAGE_API_PORT="eighty"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 2 and "api_port" in err.decode() and "Traceback" not in err.decode()


async def test_keys_cli_creates_lists_and_revokes(database_url: str) -> None:
    env = clean_env(DATABASE_URL=database_url)

    async def cli(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *CLI, "keys", *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
        return proc.returncode or 0, out.decode(), err.decode()

    code, out, _ = await cli("create", "--name", "grafana", "--scopes", "read")
    assert code == 0
    key = out.split()[0]
    assert re.fullmatch(r"lt_[0-9a-f]{8}_\S{40,}", key)
    prefix = key.split("_")[1]
    code, out, _ = await cli("list")
    assert code == 0 and re.search(rf"{prefix}\s+grafana\s+read\s+active", out)
    assert key not in out  # never shown again
    code, out, _ = await cli("revoke", prefix)
    assert code == 0
    code, out, _ = await cli("list")
    assert re.search(rf"{prefix}\s+grafana\s+read\s+revoked", out)
    code, _, err = await cli("create", "--name", "x", "--scopes", "root")
    assert code == 2 and "scopes must be" in err
