"""Incidents API latency with a large store: p50/p99 of list, filtered list, deep page and get,
under concurrent requests, against a plain asyncpg SELECT of the same rows (the ceiling).

    python -m bench.api [--incidents 1000000] [--requests 400] [--concurrency 16]

Seeds N incidents (with two timeline entries each) by SQL into a throwaway database, serves
the real FastAPI app with uvicorn in a child process, and drives it from this one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg

from bench.pipeline import database_url
from bench.progress import Progress
from livetriage.embedded import free_port, port_open
from shared.db import migrate

KEY = "lt_benchapi_" + "k" * 40

SEED = """
INSERT INTO incidents (id, dedup_key, kind, status, severity, category, stream_id, region, score,
    reason, started_at, detected_event_at, detected_at, updated_at, last_signal_at, report_count, signal_count,
    factors, sample_report_ids, escalation_level)
SELECT md5(g::text || 'i')::uuid,
       'spike:stream-' || (g % 200000) || ':' || (ARRAY['child_safety','violent_extremism','self_harm',
            'violence','hate','harassment','nudity','dangerous_acts','animal_harm','spam','other'])[1 + g % 11]
            || ':' || g,
       (ARRAY['spike','spike','spike','critical_report','trend'])[1 + g % 5],
       CASE WHEN g % 20 = 0 THEN 'triggered' WHEN g % 20 = 1 THEN 'acknowledged' ELSE 'resolved' END,
       (ARRAY['SEV1','SEV2','SEV2','SEV3','SEV3','SEV3','SEV4','SEV4','SEV4','SEV4'])[1 + (g / 7) % 10],
       (ARRAY['child_safety','violent_extremism','self_harm','violence','hate','harassment','nudity',
              'dangerous_acts','animal_harm','spam','other'])[1 + g % 11],
       'stream-' || (g % 200000),
       (ARRAY['US','BR','IN','DE','GB','FR','JP','MX'])[1 + (g / 3) % 8],
       ((g % 1000) / 1000.0),
       'benchmark incident ' || g,
       now() - (g || ' seconds')::interval * 2.5,
       now() - (g || ' seconds')::interval * 2.5 + interval '12 seconds',
       now() - (g || ' seconds')::interval * 2.5 + interval '20 seconds',
       now() - (g || ' seconds')::interval * 2.5 + interval '40 seconds',
       now() - (g || ' seconds')::interval * 2.5 + interval '30 seconds',
       20 + g % 300, 1 + g % 4,
       '[{"name": "category_weight", "value": "hate", "contribution": 0.6}]'::jsonb,
       '["r1", "r2", "r3"]'::jsonb, 0
FROM generate_series(1, $1) AS g
"""

TIMELINE = """
INSERT INTO incident_timeline (incident_id, at, kind, actor, detail)
SELECT id, detected_at, k, 'livetriage', '{}'::jsonb
FROM incidents, unnest(ARRAY['triggered', 'signal_merged']) AS k
"""


def app_factory():  # type: ignore[no-untyped-def]
    """The real app (no Kafka: readiness is not benchmarked), one per uvicorn worker."""
    import os

    from prometheus_client import CollectorRegistry

    from services.notifier.api.app import create_app
    from services.notifier.api.deps import ApiState
    from shared.db import create_engine
    from shared.settings import Settings

    async def no_broker() -> None:
        return None

    from livetriage.runtime import freeze_startup_heap

    settings = Settings(database_url=os.environ["BENCH_API_DATABASE_URL"])
    app = create_app(ApiState(settings, create_engine(settings), CollectorRegistry(), no_broker))
    freeze_startup_heap()  # as `livetriage notifier` does once it has started
    return app


def serve(url: str, port: int, workers: int) -> None:
    """Child process: uvicorn with ``workers`` processes, as a deployment would run it."""
    import os

    import uvicorn

    os.environ["BENCH_API_DATABASE_URL"] = url
    uvicorn.run("bench.api:app_factory", factory=True, host="127.0.0.1", port=port, workers=workers,
                log_level="warning", access_log=False)


class KeepAlive:
    """A minimal HTTP/1.1 keep-alive GET client, one request in flight per connection. The
    load generator shares this machine's cores with the server and Postgres: httpx spent
    ~1.5 ms of CPU per request here, as much as the server, and so inflated what we measure."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def get(self, path: str, params: dict[str, Any] | None = None) -> tuple[int, bytes]:
        conn = self.idle.pop() if self.idle else await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = conn
        target = path + ("?" + urlencode(params) if params else "")
        writer.write(f"GET {target} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {KEY}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await reader.readexactly(length)
        self.idle.append(conn)
        return int(head[9:12]), body

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def drive(concurrency: int, n: int, call: Any) -> list[float]:
    """Run ``call(i)`` n times with ``concurrency`` in flight; latencies in ms."""
    lat: list[float] = []
    it = iter(range(n))

    async def worker() -> None:
        for i in it:
            t = time.perf_counter()
            await call(i)
            lat.append((time.perf_counter() - t) * 1000)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return lat


async def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"incidents": args.incidents}
    async with AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lt-bench-api-")))
        url, where = await database_url(stack, tmp)
        out["database"] = where
        await asyncio.to_thread(migrate, url)
        conn = await asyncpg.connect(url)
        stack.push_async_callback(conn.close)
        t = time.perf_counter()
        await conn.execute(SEED, args.incidents)
        await conn.execute(TIMELINE)
        await conn.execute("ANALYZE")
        out["seed_s"] = round(time.perf_counter() - t, 1)
        from datetime import UTC, datetime

        from services.notifier.auth import digest

        await conn.execute(
            "INSERT INTO api_keys (id, name, prefix, secret_hash, scopes, created_at) "
            "VALUES (gen_random_uuid(), 'bench', 'benchapi', $1, ARRAY['read'], $2)",
            digest(KEY), datetime.now(UTC))
        ids = [r[0] for r in await conn.fetch("SELECT id FROM incidents ORDER BY random() LIMIT 1000")]

        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "bench.api", "--serve", url, "--port", str(port),
                                 "--workers", str(args.workers)])
        stack.callback(proc.terminate)
        deadline = time.monotonic() + 30
        while not port_open(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("API server did not start")
            await asyncio.sleep(0.05)  # waiting for a port, not synchronising work

        http = KeepAlive(port)
        stack.callback(http.close)
        first = json.loads((await http.get("/v1/incidents", {"limit": 50}))[1])
        cursor = first["next_cursor"]
        for _ in range(3):
            cursor = json.loads((await http.get("/v1/incidents", {"limit": 50, "cursor": cursor}))[1])["next_cursor"]
        filt = {"status": "triggered", "severity": "SEV1", "category": "hate", "limit": 50}

        async def get(path: str, params: dict[str, Any] | None = None) -> None:
            status, body = await http.get(path, params)
            assert status == 200, body

        cases = {
            "list newest (50)": lambda i: get("/v1/incidents", {"limit": 50}),
            "filtered list (50)": lambda i: get("/v1/incidents", filt),
            "page 5 via cursor": lambda i: get("/v1/incidents", {"limit": 50, "cursor": cursor}),
            "get by id": lambda i: get(f"/v1/incidents/{ids[i % len(ids)]}"),
        }
        pool = await asyncpg.create_pool(url, min_size=args.concurrency, max_size=args.concurrency)
        stack.push_async_callback(pool.close)
        cols = ("id, dedup_key, kind, status, severity, category, stream_id, region, score, reason, "
                "started_at, detected_at, updated_at, last_signal_at, resolved_at, report_count, "
                "signal_count, factors, sample_report_ids")
        ceilings = {
            "list newest (50)": (f"SELECT {cols} FROM incidents ORDER BY detected_at DESC, id DESC LIMIT 51", ()),
            "filtered list (50)": (
                f"SELECT {cols} FROM incidents WHERE status=$1 AND severity=$2 AND category=$3 "
                "ORDER BY detected_at DESC, id DESC LIMIT 51", ("triggered", "SEV1", "hate")),
            "get by id": (f"SELECT {cols} FROM incidents WHERE id=$1", None),
        }

        async def plain(sql: str, params: tuple[Any, ...] | None, i: int) -> None:
            async with pool.acquire() as c:
                await c.fetch(sql, *(params if params is not None else (ids[i % len(ids)],)))

        rows = []
        bar = Progress("requests", len(cases) * args.requests + len(ceilings) * args.requests, unit="req",
                       quiet=False)
        done = 0
        for name, call in cases.items():
            await drive(args.concurrency, 50, call)  # warm up
            t = time.perf_counter()
            lat = await drive(args.concurrency, args.requests, call)
            rps = args.requests / (time.perf_counter() - t)
            done += args.requests
            bar.update(done, case=name)
            row = {"case": name, "p50_ms": round(statistics.median(lat), 2), "p99_ms": round(pct(lat, 99), 2),
                   "req_s": round(rps)}
            if name in ceilings:
                sql, params = ceilings[name]
                await drive(args.concurrency, 50, lambda i: plain(sql, params, i))
                clat = await drive(args.concurrency, args.requests, lambda i: plain(sql, params, i))
                row["ceiling_p50_ms"] = round(statistics.median(clat), 2)
                row["ceiling_p99_ms"] = round(pct(clat, 99), 2)
                done += args.requests
                bar.update(done, case=name)
            rows.append(row)
        bar.close()
        out["rows"] = rows
        filtered = next(r for r in rows if r["case"] == "filtered list (50)")
        out["target_met"] = filtered["p99_ms"] <= 50.0
    return out


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__)
    p.add_argument("--incidents", type=int, default=1_000_000)
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    p.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.workers)
        return 0
    from livetriage.cli import run as run_loop  # uvloop: the client's CPU is this machine's too

    res = run_loop(run(args))
    print(f"incidents {res['incidents']:,} in {res['database']} (seeded in {res['seed_s']} s), "
          f"{args.concurrency} concurrent requests, {args.requests} per case, {args.workers} uvicorn workers")
    print(f"{'case':<22}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>8}{'ceiling p50':>13}{'ceiling p99':>13}")
    for r in res["rows"]:
        print(f"{r['case']:<22}{r['p50_ms']:>9}{r['p99_ms']:>9}{r['req_s']:>8}"
              f"{r.get('ceiling_p50_ms', '-'):>13}{r.get('ceiling_p99_ms', '-'):>13}")
    print(f"target p99 of a filtered list page <= 50 ms: {'MET' if res['target_met'] else 'NOT MET'}")
    return 0 if res["target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
