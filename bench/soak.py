"""Soak: the real services as separate processes at a steady report rate for a while, with
memory, consumer lag and latency recorded over time and plotted.

    python -m bench.soak [--minutes 60] [--rate 200] [--streams 300] [--spike-every 60] [--out soak/]

ingest, two triage instances and the notifier run as ``livetriage <role>`` processes against
their own tansu broker and a scratch database (the bench.faults harness), paging a local HTTP
receiver. A publisher sends ``--rate`` reports/s with event time = now across ``--streams``
streams; every ``--spike-every`` seconds one stream gets a 30 s surge from distinct viewers.
Every 5 s the sampler records each process's RSS (psutil), each group's consumer lag (the
services' own ``livetriage_consumer_lag``), and from the notifier's histograms the latency
report -> incident (event time of the deciding report to the incident committed) and
incident -> page (notification created to delivered). For every surge, over the whole run:
its first report -> its incident opened (the notifier's commit) -> its page at the receiver.
Prints the figures, saves ``rss.png``, ``lag.png``, ``latency.png`` (one point per surge and
stage) and ``samples.json`` in ``--out``, and exits 1 if memory is not flat (growth over the
last ``--flat-minutes`` above ``--max-growth``), lag unbounded, or a surge was never paged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil

from bench.faults import Options, Service, broker, database, service_env, topic_settings
from bench.progress import Progress
from livetriage.embedded import free_port
from shared.kafka import ensure_topics, open_producer, wait_for_broker
from tests.receiver import running_receiver

ROLES = {"ingest": "ingest", "triage-a": "triage", "triage-b": "triage", "notifier": "notifier"}
CATEGORIES = ("spam", "harassment", "hate", "violence", "nudity", "other")
SAMPLE_S = 5.0


@dataclass
class Sample:
    t: float  # seconds since the start of publishing
    rss_mb: dict[str, float]
    lag: dict[str, float]
    published: int
    # cumulative histogram buckets of the notifier at this moment
    signal_hist: dict[float, float] = field(default_factory=dict)
    delivery_hist: dict[float, float] = field(default_factory=dict)


def parse_metrics(text: str) -> tuple[dict[str, float], dict[float, float], dict[float, float]]:
    """Consumer lag per group, and the two latency histograms' cumulative buckets."""
    lag: dict[str, float] = {}
    sig: dict[float, float] = {}
    dlv: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name_labels, _, value = line.rpartition(" ")
        name, _, labels = name_labels.partition("{")
        fields = dict(kv.split("=", 1) for kv in labels.rstrip("}").split(",") if "=" in kv)
        fields = {k: v.strip('"') for k, v in fields.items()}
        if name == "livetriage_consumer_lag":
            lag[fields["group"]] = lag.get(fields["group"], 0.0) + float(value)
        elif name == "livetriage_notifier_signal_latency_seconds_bucket":
            sig[float(fields["le"])] = float(value)
        elif name == "livetriage_notifier_delivery_latency_seconds_bucket":
            dlv[float(fields["le"])] = float(value)
    return lag, sig, dlv


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """Quantile from cumulative buckets (upper bound of the bucket it falls in, as Prometheus
    would interpolate linearly inside it)."""
    if not buckets:
        return None
    les = sorted(buckets)
    total = buckets[les[-1]]
    if total <= 0:
        return None
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le in les:
        c = buckets[le]
        if c >= rank:
            if math.isinf(le):
                return prev_le
            return prev_le + (le - prev_le) * ((rank - prev_c) / max(c - prev_c, 1e-9))
        prev_le, prev_c = le, c
    return prev_le


def delta(a: dict[float, float], b: dict[float, float]) -> dict[float, float]:
    return {le: b.get(le, 0.0) - a.get(le, 0.0) for le in b}


async def publisher(s: Any, rate: float, streams: int, spike_every: float, stop: asyncio.Event,
                    counter: list[int], spikes: list[tuple[str, float]]) -> None:
    """``rate`` reports/s of background, plus a surge on a fresh stream every ``spike_every`` s."""
    rng = random.Random(7)
    async with open_producer(s) as producer:
        start = time.monotonic()
        tick = 0.1
        n = 0
        next_spike = 20.0
        surge: tuple[str, float] | None = None
        while not stop.is_set():
            now_s = time.monotonic() - start
            if now_s >= next_spike:
                surge = (f"surge-{len(spikes)}", now_s)
                spikes.append((surge[0], time.time()))
                next_spike += spike_every
            due = int(rate * now_s) - n
            batch = []
            ts = datetime.now(UTC).isoformat()
            for _ in range(max(0, due)):
                stream = f"stream-{min(int(rng.paretovariate(1.2)) - 1, streams - 1)}"
                batch.append((stream, rng.choice(CATEGORIES)))
            if surge is not None and now_s - surge[1] < 30:
                batch += [(surge[0], "violence")] * max(1, round(rate * 0.05 * tick))  # +5% on one stream
            futs = []
            for stream, category in batch:
                n += 1
                report = {"report_id": f"soak-{uuid.uuid4().hex}", "stream_id": stream, "category": category,
                          "source": "user", "reporter_id": f"u{rng.randrange(10**8)}", "region": "DE",
                          "viewer_count": 20000, "reported_at": ts}
                futs.append(await producer.send(s.reports_topic, orjson.dumps(report), key=stream.encode()))
            if futs:
                await asyncio.gather(*futs)
            counter[0] = n
            try:
                await asyncio.wait_for(stop.wait(), tick)  # the publisher's pace, not a synchronisation
            except TimeoutError:
                pass


async def run(args: argparse.Namespace) -> dict[str, Any]:
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    async with AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lt-soak-")))
        opts = Options(log_dir=tmp, idle_flush_s=5.0)
        bootstrap, _ = await stack.enter_async_context(broker(opts, tmp))
        db_url, _ = await stack.enter_async_context(database(opts, tmp))
        rec = await stack.enter_async_context(running_receiver())
        s = topic_settings(bootstrap, db_url, uuid.uuid4().hex[:8])
        await wait_for_broker(s)
        await ensure_topics(s)
        routing = tmp / "routing.yaml"
        routing.write_text(f"channels:\n  hook: {{type: webhook, url: '{rec.base}/hook', secret: soak-soak}}\n"
                           "default:\n  team: live-ops\n  channels: [hook]\n")
        base_env = service_env(s, opts, routing)
        base_env["LIVETRIAGE_BATCH_MAX_RECORDS"] = "5000"
        base_env["LIVETRIAGE_CHECKPOINT_INTERVAL_S"] = "10"
        services: dict[str, Service] = {}
        metrics_url: dict[str, str] = {}
        for name, role in ROLES.items():
            env = dict(base_env)
            if role == "notifier":
                metrics_url[name] = f"http://127.0.0.1:{env['LIVETRIAGE_API_PORT']}/metrics"
            else:
                port = free_port()
                env["LIVETRIAGE_METRICS_PORT"] = str(port)
                metrics_url[name] = f"http://127.0.0.1:{port}/metrics"
            services[name] = Service(name, role, env, tmp / f"{name}.log")
            services[name].start()

        async def stop_services() -> None:
            import signal as sig
            await asyncio.gather(*(svc.signal_and_wait(sig.SIGTERM, 20) for svc in services.values()))

        stack.push_async_callback(stop_services)
        procs = {n: psutil.Process(svc.proc.pid) for n, svc in services.items() if svc.proc is not None}
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=3.0))

        stop = asyncio.Event()
        counter = [0]
        spikes: list[tuple[str, float]] = []
        pub = asyncio.create_task(publisher(s, args.rate, args.streams, args.spike_every, stop, counter, spikes))
        samples: list[Sample] = []
        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        bar = Progress("soak", args.minutes * 60, unit="s", quiet=args.verbose)  # verbose: own lines
        while time.monotonic() < end:
            await asyncio.sleep(SAMPLE_S)  # the sampling period
            if pub.done():
                pub.result()
            for svc in services.values():
                svc.check()
            rss = {n: p.memory_info().rss / 2**20 for n, p in procs.items() if p.is_running()}
            lag: dict[str, float] = {}
            sig_h: dict[float, float] = {}
            dlv_h: dict[float, float] = {}
            for name, url in metrics_url.items():
                try:
                    text = (await http.get(url)).text
                except httpx.HTTPError:
                    continue
                g, sh, dh = parse_metrics(text)
                for k, v in g.items():  # the two triage instances hold different partitions
                    lag[k] = lag.get(k, 0.0) + v
                if name == "notifier":
                    sig_h, dlv_h = sh, dh
            samples.append(Sample(time.monotonic() - t0, rss, lag, counter[0], sig_h, dlv_h))
            bar.update(round(samples[-1].t), published=f"{counter[0]:,}", lag=f"{sum(lag.values()):.0f}")
            if args.verbose:
                print(f"t={samples[-1].t:6.0f}s published {counter[0]:,} rss "
                      + " ".join(f"{k}={v:.0f}MB" for k, v in rss.items())
                      + " lag " + " ".join(f"{k.split('-')[0]}={v:.0f}" for k, v in lag.items()), flush=True)
        bar.close()
        stop.set()
        await pub
        pages = [(r.json()["incident"]["stream_id"], r.at) for r in rec.requests if r.path == "/hook"
                 and r.json().get("kind") == "trigger"]
        opened = await surge_incidents(db_url)
    return summarise(args, samples, spikes, pages, opened, out_dir)


async def surge_incidents(db_url: str) -> dict[str, float]:
    """Wall time each surge stream's first incident committed (detected_at is the notifier's
    clock at the commit)."""
    import asyncpg

    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch("SELECT stream_id, min(detected_at) AS at FROM incidents "
                                "WHERE stream_id LIKE 'surge-%' GROUP BY stream_id")
    finally:
        await conn.close()
    return {r["stream_id"]: r["at"].timestamp() for r in rows}


@dataclass
class Surge:
    stream: str
    started: float  # wall time of its first report
    minute: float  # minutes into the run
    to_incident_s: float | None
    to_page_s: float | None


def summarise(args: argparse.Namespace, samples: list[Sample], spikes: list[tuple[str, float]],
              pages: list[tuple[str, float]], opened: dict[str, float], out_dir: Path) -> dict[str, Any]:
    first_page: dict[str, float] = {}
    for stream, at in pages:
        first_page.setdefault(stream, at)
    t0 = spikes[0][1] - 20.0 if spikes else 0.0  # the first surge starts 20 s into publishing
    surges = [Surge(st, t, (t - t0) / 60, opened[st] - t if st in opened else None,
                    first_page[st] - t if st in first_page else None) for st, t in spikes]
    # a surge that starts in the last minute may not have closed a window yet: not judged
    judged = [x for x in surges if x.minute <= args.minutes - 1.5]
    e2e = [x.to_page_s for x in judged if x.to_page_s is not None]
    # memory: flat over the last --flat-minutes (the first minutes are warm-up and learning)
    flat_from = samples[-1].t - args.flat_minutes * 60
    half = [x for x in samples if x.t >= flat_from] or samples[len(samples) // 2:]
    rss = {}
    for name in samples[0].rss_mb:
        series = [x.rss_mb.get(name, 0.0) for x in samples]
        mid = statistics.median([x.rss_mb.get(name, 0.0) for x in half[:max(1, len(half) // 4)]])
        last = statistics.median([x.rss_mb.get(name, 0.0) for x in half[-max(1, len(half) // 4):]])
        rss[name] = {"start_mb": round(series[0], 1), "max_mb": round(max(series), 1), "end_mb": round(series[-1], 1),
                     "growth_flat_window": round((last - mid) / mid, 3) if mid else 0.0}
    groups = sorted({g for x in samples for g in x.lag})
    lag = {g: {"max": max(x.lag.get(g, 0.0) for x in samples), "max_flat_window": max(x.lag.get(g, 0.0) for x in half)}
           for g in groups}
    last = samples[-1]
    res = {
        "minutes": args.minutes, "rate": args.rate, "published": last.published,
        "rss": rss, "lag": lag,
        "report_to_incident_s": {"p50": quantile(last.signal_hist, 0.5), "p99": quantile(last.signal_hist, 0.99)},
        "incident_to_page_s": {"p50": quantile(last.delivery_hist, 0.5), "p99": quantile(last.delivery_hist, 0.99)},
        "surge_to_page_s": {"n": len(e2e), "of": len(judged), "p50": statistics.median(e2e) if e2e else None,
                            "max": max(e2e) if e2e else None},
        "surges_unpaged": [x.stream for x in judged if x.to_page_s is None],
    }
    res["memory_flat"] = all(v["growth_flat_window"] <= args.max_growth for v in rss.values())
    res["lag_bounded"] = all(v["max_flat_window"] <= args.max_lag for v in lag.values())
    (out_dir / "samples.json").write_text(json.dumps({"samples": [x.__dict__ for x in samples],
                                                      "surges": [x.__dict__ for x in surges]}, default=str))
    plot(samples, surges, flat_from, out_dir)
    return res


def plot(samples: list[Sample], surges: list[Surge], flat_from: float, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [x.t / 60 for x in samples]
    fig, ax = plt.subplots(figsize=(9, 4))
    for name in samples[0].rss_mb:
        ax.plot(t, [x.rss_mb.get(name) for x in samples], label=name)
    ax.axvspan(flat_from / 60, t[-1], color="0.92", label="judged flat")
    ax.set(xlabel="minutes", ylabel="RSS (MiB)", title="Memory of each process")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.savefig(out_dir / "rss.png", dpi=110, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4))
    for g in sorted({g for x in samples for g in x.lag}):
        ax.plot(t, [x.lag.get(g, 0.0) for x in samples], label=g.rsplit("-", 1)[0])
    ax.set(xlabel="minutes", ylabel="records", title="Consumer lag per group")
    ax.legend()
    fig.savefig(out_dir / "lag.png", dpi=110, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4))
    for attr, label, style in (("to_incident_s", "first report -> incident", "o"),
                               ("to_page_s", "first report -> page", "x")):
        pts = [(x.minute, getattr(x, attr)) for x in surges if getattr(x, attr) is not None]
        ax.plot([m for m, _ in pts], [v for _, v in pts], style, label=label)
    missed = [x.minute for x in surges if x.to_page_s is None]
    if missed:
        ax.plot(missed, [0] * len(missed), "rv", label="never paged")
    ax.set(xlabel="minutes (surge start)", ylabel="seconds", title="Latency of every surge")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.savefig(out_dir / "latency.png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--rate", type=float, default=200.0, help="reports per second")
    p.add_argument("--streams", type=int, default=300)
    p.add_argument("--spike-every", type=float, default=60.0)
    p.add_argument("--out", default="soak")
    p.add_argument("--max-growth", type=float, default=0.05, help="RSS growth allowed over the flat window")
    p.add_argument("--flat-minutes", type=float, default=30.0, help="memory is judged over the last this many")
    p.add_argument("--max-lag", type=float, default=20000.0)
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    from livetriage.cli import run as run_loop

    res = run_loop(run(args))
    print(f"soak: {res['minutes']} min at {res['rate']:.0f} reports/s, {res['published']:,} published")
    print(f"{'process':<10}{'start MiB':>10}{'max MiB':>9}{'end MiB':>9}{'growth (flat window)':>17}")
    for name, r in res["rss"].items():
        print(f"{name:<10}{r['start_mb']:>10}{r['max_mb']:>9}{r['end_mb']:>9}{r['growth_flat_window']:>16.1%}")
    for g, v in res["lag"].items():
        print(f"lag {g}: max {v['max']:.0f}, max in the flat window {v['max_flat_window']:.0f}")
    fmt = lambda d: " ".join(f"{k} {v:.2f}s" if isinstance(v, float) else f"{k} {v}" for k, v in d.items())  # noqa: E731
    print("signal -> incident:", fmt(res["report_to_incident_s"]), "(event time of the deciding report; resolves wait out their quiet windows)")
    print("incident -> page:  ", fmt(res["incident_to_page_s"]))
    print("surge -> page:     ", fmt(res["surge_to_page_s"]))
    if res["surges_unpaged"]:
        print("surges never paged:", ", ".join(res["surges_unpaged"]))
    print(f"memory flat: {res['memory_flat']}; lag bounded: {res['lag_bounded']}; plots in {args.out}/")
    return 0 if res["memory_flat"] and res["lag_bounded"] and not res["surges_unpaged"] else 1


if __name__ == "__main__":
    sys.exit(main())
