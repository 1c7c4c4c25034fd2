"""Run livetriage services as separate processes, as in production, and watch them from outside.

Shared by ``bench.backlog`` and ``bench.pipeline``:

- ``service_env`` turns a ``Settings`` into the environment a ``livetriage <role>`` process
  reads (``KAFKA_BOOTSTRAP_SERVERS``, ``DATABASE_URL``, ``LIVETRIAGE_*``);
- ``running_services`` starts ``livetriage ingest|triage|notifier`` as child processes, each
  serving Prometheus metrics on its own port (ingest and triage on ``LIVETRIAGE_METRICS_PORT``,
  the notifier on its API port), and stops them (SIGTERM, then SIGKILL) on exit;
- ``Service.scrape`` reads a process's /metrics, ``Service.peak_rss_kb`` its VmHWM;
- ``cpu_seconds`` reads a process's CPU time (user + system) from /proc, ``CpuMeter`` the CPU
  every process of the bench spent over a phase (services, broker, Postgres, the bench);
- ``running_receiver`` is a local HTTP server standing in for PagerDuty, Slack and webhooks
  (a copy of tests/receiver.py's idea: bench does not import tests);
- ``group_lag`` compares consumer groups' committed offsets with the topics' end offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from livetriage.embedded import free_port
from shared.settings import Settings

log = logging.getLogger("bench.procs")

# Settings fields a bench passes to every service process (besides the two conventional names)
PASSED_FIELDS = (
    "reports_topic", "clean_topic", "signals_topic", "trends_topic", "actions_topic", "dlq_topic",
    "ingest_group", "triage_group", "notifier_group", "trend_group", "actions_group",
    "session_timeout_ms", "heartbeat_interval_ms", "topic_partitions", "log_level",
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def service_env(settings: Settings, **extra: object) -> dict[str, str]:
    """The environment of a service process configured like ``settings`` (plus ``extra``
    settings fields, e.g. ``routing_file=...``, ``dedup_ttl_hours=72``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVETRIAGE_")}
    env["KAFKA_BOOTSTRAP_SERVERS"] = settings.require_kafka()
    env["DATABASE_URL"] = settings.require_database()
    for name in PASSED_FIELDS:
        env[f"LIVETRIAGE_{name.upper()}"] = str(getattr(settings, name))
    for name, value in extra.items():
        if value is not None:
            env[f"LIVETRIAGE_{name.upper()}"] = str(value)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def livetriage_command() -> list[str]:
    exe = Path(sys.executable).with_name("livetriage")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("livetriage")
    return [found] if found else [sys.executable, "-m", "livetriage.cli"]


@dataclass
class Service:
    role: str
    proc: subprocess.Popen[bytes]
    metrics_url: str
    log_path: Path
    peak_rss_kb: int = 0  # the highest VmHWM read so far (the kernel's own peak)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def read_rss(self) -> int:
        """VmHWM in kB (kept: /proc forgets it once the process is gone)."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_kb = max(self.peak_rss_kb, int(line.split()[1]))
                    break
        except (FileNotFoundError, ProcessLookupError):
            pass
        return self.peak_rss_kb

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (0.0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime


def named_cpu_seconds(comm: str, arg: str | None = None) -> float:
    """CPU seconds of every process whose name starts with ``comm`` (with ``arg`` in its
    command line, if given): Postgres is its server and its backends (an idle server's other
    databases add next to nothing), the broker the tansu listening on a given port."""
    out = 0.0
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if not (proc / "comm").read_text().startswith(comm):
                    continue
                if arg is not None and arg not in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    continue
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
            out += cpu_seconds(int(proc.name))
    return out


class CpuMeter:
    """CPU seconds each named party spent between ``start`` and ``stop``: the figure that
    shows whether a multi-process run is bound by the machine's cores or by waiting.

    Read before the processes exit (a backend that exits mid-phase takes its time with it;
    Postgres backends live as long as the services' pools)."""

    def __init__(self, pids: dict[str, int], broker: str) -> None:
        self.pids = pids
        self.broker_port = broker.rsplit(":", 1)[-1]
        self.spent: dict[str, float] = {}
        self._start: dict[str, float] = {}
        self._wall = 0.0
        self.wall_s = 0.0

    def _read(self) -> dict[str, float]:
        now = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        now["broker"] = named_cpu_seconds("tansu", f":{self.broker_port}")
        now["postgres"] = named_cpu_seconds("postgres")
        now["bench"] = cpu_seconds(os.getpid())
        return now

    def start(self) -> None:
        self._start, self._wall = self._read(), time.perf_counter()

    def stop(self) -> None:
        end, self.wall_s = self._read(), time.perf_counter() - self._wall
        self.spent = {k: max(0.0, end[k] - self._start.get(k, 0.0)) for k in end}

    def per_report_us(self, reports: int) -> dict[str, float]:
        return {k: v / reports * 1e6 for k, v in self.spent.items()} if reports else {}


def parse_metrics(text: str) -> Samples:
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


def of_role(samples: dict[str, Samples], role: str) -> Samples:
    """The samples of every instance of ``role`` ("triage", "triage#2", ...), summed: the
    counters of a service that runs as several instances are the sum of theirs."""
    out: Samples = {}
    for name, got in samples.items():
        if name.split("#", 1)[0] == role:
            for k, v in got.items():
                out[k] = out.get(k, 0.0) + v
    return out


def instances(role: str, n: int) -> list[str]:
    """Role names for ``n`` instances of ``role``: "triage", "triage#2", ..."""
    return [role] + [f"{role}#{i}" for i in range(2, n + 1)]


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (n, lab), v in samples.items():
        if n == name:
            key = dict(lab).get(label, "")
            out[key] = out.get(key, 0.0) + v
    return out


def loop_lag_metrics(samples: Samples) -> dict[str, float]:
    """The worst event-loop lag since the process started (``shared.looplag``), in seconds."""
    worst = [v for (n, _), v in samples.items() if n == "livetriage_event_loop_lag_max_seconds"]
    return {"worst_s": round(max(worst), 3)} if worst else {}


@dataclass
class Services:
    by_role: dict[str, Service]
    http: httpx.AsyncClient
    last: dict[str, Samples] = field(default_factory=dict)

    def __getitem__(self, role: str) -> Service:
        return self.by_role[role]

    def check_alive(self) -> None:
        for s in self.by_role.values():
            if not s.alive():
                raise RuntimeError(f"{s.role} (pid {s.pid}) exited with {s.proc.returncode}:\n{s.tail()}")

    async def scrape(self, role: str) -> Samples:
        svc = self.by_role[role]
        r = await self.http.get(svc.metrics_url)
        r.raise_for_status()
        self.last[role] = parse_metrics(r.text)
        return self.last[role]

    async def scrape_all(self) -> dict[str, Samples]:
        """Every service's metrics (and its VmHWM); a service that died raises."""
        self.check_alive()
        roles = list(self.by_role)
        got = await asyncio.gather(*(self.scrape(r) for r in roles), return_exceptions=True)
        for role, res in zip(roles, got, strict=True):
            self.by_role[role].read_rss()
            if isinstance(res, BaseException):
                self.check_alive()
                log.debug("scrape of %s failed: %r", role, res)  # keep its last samples
        return dict(self.last)


@contextlib.asynccontextmanager
async def running_services(
    settings: Settings,
    roles: Iterable[str],
    log_dir: Path,
    *,
    start_timeout_s: float = 60.0,
    stop_timeout_s: float = 20.0,
    **extra: object,
) -> AsyncIterator[Services]:
    """Start ``livetriage <role>`` for each role as a child process (``role#2`` is a second
    instance of ``role``, in the same consumer groups); yield once every one serves /metrics;
    SIGTERM them (SIGKILL after ``stop_timeout_s``) on exit."""
    started: dict[str, Service] = {}
    # no gzip: compressing every scrape costs the services CPU that the benches measure
    http = httpx.AsyncClient(timeout=5.0, headers={"Accept-Encoding": "identity"})
    try:
        for role in roles:
            port = free_port()
            fields: dict[str, object] = dict(extra)
            command = role.split("#", 1)[0]
            if command == "notifier":
                fields["api_port"] = port
                fields["api_host"] = "127.0.0.1"
                url = f"http://127.0.0.1:{port}/metrics"
            else:
                fields["metrics_port"] = port
                url = f"http://127.0.0.1:{port}/"
            log_path = log_dir / f"{role.replace('#', '-')}.log"
            with open(log_path, "ab") as out:
                proc = subprocess.Popen(
                    [*livetriage_command(), command], env=service_env(settings, **fields),
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True,  # a Ctrl-C to the bench must not skip our drain
                )
            started[role] = Service(role, proc, url, log_path)
        services = Services(started, http)
        deadline = time.monotonic() + start_timeout_s
        pending = set(started)
        while pending:
            services.check_alive()
            for role in list(pending):
                try:
                    await services.scrape(role)
                    pending.discard(role)
                except httpx.HTTPError:
                    pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"services {sorted(pending)} did not serve metrics in {start_timeout_s:.0f}s")
            if pending:
                await asyncio.sleep(0.2)  # polling a port with a deadline
        yield services
    finally:
        for svc in started.values():
            svc.read_rss()
            if svc.alive():
                with contextlib.suppress(ProcessLookupError):
                    svc.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + stop_timeout_s
        for svc in started.values():
            while svc.alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)  # waiting for a child to drain, with a deadline
            if svc.alive():
                log.warning("%s (pid %d) ignored SIGTERM for %.0fs; killing it", svc.role, svc.pid, stop_timeout_s)
                svc.proc.kill()
                svc.proc.wait(5)
        await http.aclose()


# ---- a local receiver for the notifier's channels ---------------------------------------------


@dataclass
class Received:
    path: str
    key: str  # the Idempotency-Key header: "<incident_id>:<event>:<kind>:<channel>"
    body: bytes
    at: float = field(default_factory=time.monotonic)


@dataclass
class Receiver:
    """Records every request it is sent and answers 202."""

    port: int = 0
    requests: list[Received] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: Request) -> JSONResponse:
        body = await request.body()
        self.requests.append(Received(request.url.path, request.headers.get("idempotency-key", ""), body))
        return JSONResponse({"status": "success"}, status_code=202)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def, override]
        yield


@contextlib.asynccontextmanager
async def running_receiver(timeout_s: float = 10.0) -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = Starlette(routes=[Route("/{path:path}", rec.handle, methods=["POST"])])
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off",
                                    access_log=False))
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if task.done():
            task.result()
        if time.monotonic() > deadline:
            raise TimeoutError("receiver did not start")
        await asyncio.sleep(0.01)  # uvicorn exposes no start event
    rec.port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield rec
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout_s)


def routing_yaml(receiver: Receiver) -> str:
    """PagerDuty for SEV1/SEV2, Slack for everything, a webhook for platform-wide trends:
    every channel type sees traffic; nothing depends on the wall clock (no group wait,
    repeats, escalation or auto-resolve)."""
    b = receiver.base
    return f"""\
channels:
  pd:      {{type: pagerduty, url: "{b}/pagerduty", routing_key: BENCHKEY}}
  slack:   {{type: slack, url: "{b}/slack"}}
  hook:    {{type: webhook, url: "{b}/webhook", secret: bench-secret-123}}
routes:
  - match: {{severity: [SEV1, SEV2]}}
    team: live-ops
    channels: [pd, slack, hook]
default:
  team: live-ops
  channels: [slack, hook]
"""


# ---- consumer-group progress ------------------------------------------------------------------


class Offsets:
    """Committed offsets of groups vs end offsets of topics, from one admin and one
    group-less consumer kept open for the whole watch."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self._parts: dict[str, list[TopicPartition]] = {}

    async def __aenter__(self) -> Offsets:
        await self.admin.start()
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def _partitions(self, topic: str) -> list[TopicPartition]:
        if topic not in self._parts:
            parts = self.consumer.partitions_for_topic(topic)
            if not parts:
                await self.consumer._client.force_metadata_update()  # noqa: SLF001
                parts = self.consumer.partitions_for_topic(topic) or set()
            if not parts:
                return []
            self._parts[topic] = [TopicPartition(topic, p) for p in sorted(parts)]
        return self._parts[topic]

    async def ends(self, topic: str) -> int:
        parts = await self._partitions(topic)
        if not parts:
            return 0
        return sum((await self.consumer.end_offsets(parts)).values())

    async def lag(self, group: str, topic: str) -> tuple[int, int]:
        """(end offsets - committed offsets summed over the topic's partitions, end offsets)."""
        parts = await self._partitions(topic)
        if not parts:
            return 0, 0
        ends = await self.consumer.end_offsets(parts)
        committed = await self.admin.list_consumer_group_offsets(group, partitions=parts)
        lag = 0
        for tp in parts:
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else 0
            lag += max(0, ends[tp] - done)
        return lag, sum(ends.values())


def fmt_mb(kb: int) -> str:
    return f"{kb / 1024:,.0f} MB"
