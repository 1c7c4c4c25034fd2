"""``livetriage backtest``: replay labelled recorded traffic through the pipeline and score it.

    livetriage backtest --nab ~/NAB realKnownCause/nyc_taxi.csv artificialWithAnomaly/*.csv

Each CSV count series becomes one stream (see ``series.py``), each JSONL file's reports are
published as they are; ``replay.py`` runs them through ingest, triage and the notifier; the
incidents on each series are then scored against its labelled anomaly windows with the
Numenta Anomaly Benchmark's rules (``nab.py``), twice: every incident a detection, and only
pages (high-urgency incidents, at the event time they became high), next to the published
detectors' scores on the same series.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from livetriage.backtest import nab
from livetriage.backtest.replay import Feed, Found, replay
from livetriage.backtest.series import Series, jsonl_reports, load_csv, reports_of, scale_for
from services.notifier.routing import Route, Routing, load_routing
from shared.errors import ConfigError
from shared.events import Severity
from shared.settings import Settings

PROFILES = ("standard", "reward_low_FP_rate")
SHOWN = ("ARTime", "contextOSE", "numenta", "windowedGaussian", "null")


def add_parser(sub: Any) -> None:
    bt = sub.add_parser("backtest", help="replay labelled traffic through the pipeline; NAB scores")
    bt.add_argument("series", nargs="+", type=Path,
                    help="timestamp,value CSV count series or JSONL report files (relative to --nab's data/)")
    bt.add_argument("--nab", type=Path, default=None,
                    help="a Numenta Anomaly Benchmark checkout: its data/, labels/ and published results/")
    bt.add_argument("--labels", type=Path, default=None,
                    help="anomaly windows, NAB's combined_windows.json format (default: --nab's)")
    scale = bt.add_mutually_exclusive_group()
    scale.add_argument("--scale", type=float, default=None, help="reports per unit of value (default 1)")
    scale.add_argument("--median-per-row", type=float, default=None,
                       help="scale each series so its median row is this many reports")
    bt.add_argument("--category", default="violence", help="category of the series' reports")
    bt.add_argument("--viewers", type=int, default=10_000,
                    help="viewer_count on the series' reports (0: none)")
    bt.add_argument("--seed", type=int, default=1)
    bt.add_argument("--routing", type=Path, default=None,
                    help="routing file (urgency); default: pages from SEV2, as the shipped example")
    bt.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the pipeline")
    bt.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")


def _routing(path: Path | None) -> Routing:
    if path is not None:
        return load_routing(path)
    return Routing(default=Route(team="live-ops", high_urgency_from=Severity.SEV2))


def _resolve(path: Path, nab_dir: Path | None) -> Path:
    if path.exists() or nab_dir is None:
        return path
    return nab_dir / "data" / path


async def cmd_backtest(settings: Settings, args: argparse.Namespace) -> int:
    if "LIVETRIAGE_LOG_LEVEL" not in os.environ:
        # months of traffic log an incident a line: the table is the output (set the level
        # to see them)
        logging.getLogger().setLevel(logging.WARNING)
    run = uuid.uuid4().hex[:8]
    labels_path = args.labels or (args.nab / "labels" / "combined_windows.json" if args.nab else None)
    windows = nab.load_windows(labels_path) if labels_path else {}
    routing = _routing(args.routing)
    csv_series: list[Series] = []
    feeds: list[Feed] = []
    for p in (_resolve(p, args.nab) for p in args.series):
        if not p.exists():
            raise ConfigError(f"{p} does not exist")
        if p.suffix == ".jsonl":
            feeds.append(jsonl_reports(p))
            continue
        try:
            s = load_csv(p, run)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        csv_series.append(s)
        k = scale_for(s.values, args.median_per_row) if args.median_per_row else (args.scale or 1.0)
        feeds.append(((at, rep, s.stream_id) for at, rep in reports_of(
            s, scale=k, category=args.category, viewers=args.viewers or None, seed=args.seed)))
    done = 0

    def progress(sent: int) -> None:
        nonlocal done
        if sys.stderr.isatty() and sent - done >= 100_000:
            done = sent
            print(f"\r  published {sent:,} reports", end="", file=sys.stderr, flush=True)

    result = await replay(settings, feeds, run=run, routing=routing, timeout_s=args.timeout, progress=progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    published = nab.load_published(args.nab / "results", windows, PROFILES) if args.nab else {}
    out = score(csv_series, result.incidents, windows, published)
    out["pipeline"] = {"reports": result.reports, "seconds": round(result.seconds, 1),
                       "reports_per_s": round(result.reports / result.seconds) if result.seconds else None,
                       **{k: int(v) for k, v in result.figures.items()}}
    out["trend_incidents"] = sum(1 for f in result.incidents if f.kind == "trend")
    print_table(out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")
    return 0


def score(series: list[Series], found: list[Found], windows: dict[str, list[tuple[datetime, datetime]]],
          published: dict[str, dict[str, dict[str, nab.FileScore]]]) -> dict[str, Any]:
    """Per series and overall: NAB scores of incidents and of pages, beside the published
    detectors' on the same series, and how the severities of true detections and of false
    alarms are distributed. A series without windows shows its raw score (0 is perfect)."""
    rows: list[dict[str, Any]] = []
    totals: dict[str, dict[str, list[nab.FileScore]]] = {
        m: {p: [] for p in PROFILES} for m in ("incidents", "pages", *SHOWN)}
    sev: dict[str, Counter[str]] = {"true": Counter(), "false": Counter()}
    for s in series:
        mine = [f for f in found if f.stream_id == s.stream_id]
        w = windows.get(s.name, [])
        row: dict[str, Any] = {"series": s.name, "incidents": len(mine),
                               "pages": sum(1 for f in mine if f.paged_event_at is not None),
                               "windows": len(w), "bursts": sum(f.bursts for f in mine)}
        for f in mine:
            hit = any(a <= f.detected_event_at <= b for a, b in w)
            sev["true" if hit else "false"][f.severity] += 1
        for measure, times in (("incidents", [f.detected_event_at for f in mine]),
                               ("pages", [f.paged_event_at for f in mine if f.paged_event_at is not None])):
            alerts = nab.alert_rows(s.timestamps, times)
            for p in PROFILES:
                fs = nab.score_file(s.timestamps, alerts, w, nab.PROFILES[p])
                totals[measure][p].append(fs)
                row[f"{measure}:{p}"] = _figure(fs)
                row[f"{measure}:{p}:counts"] = {"tp": fs.tp, "fp": fs.fp, "fn": fs.fn}
        for p in PROFILES:
            for det in SHOWN:
                ref = published.get(det, {}).get(p, {}).get(s.name)
                if ref is not None:
                    totals[det][p].append(ref)
                    row[f"{det}:{p}"] = _figure(ref)
        rows.append(row)
    overall: dict[str, Any] = {}
    for measure, by_p in totals.items():
        for p, scores in by_p.items():
            # a published detector is compared only where it scored every series
            complete = measure in ("incidents", "pages") or len(scores) == len(series)
            overall[f"{measure}:{p}"] = nab.score_corpus(scores) if scores and complete else None
    return {"series": rows, "overall": overall,
            "severity_of_true_detections": dict(sorted(sev["true"].items())),
            "severity_of_false_alarms": dict(sorted(sev["false"].items()))}


def _figure(fs: nab.FileScore) -> float:
    n = fs.normalised
    return fs.raw if n is None else n


def _fmt(x: Any) -> str:
    return "—" if x is None else f"{x:6.1f}"


def print_table(out: dict[str, Any]) -> None:
    head = ["series", "inc", "pages", "win"]
    for p in PROFILES:
        tag = "std" if p == "standard" else "lowFP"
        head += [f"inc {tag}", f"page {tag}", *(f"{d[:8]} {tag}" for d in SHOWN[:-1])]
    print("  ".join(f"{h:>14}" if i else f"{h:<40}" for i, h in enumerate(head)))
    for r in out["series"]:
        cells = [r["series"][:40], str(r["incidents"]), str(r["pages"]), str(r["windows"])]
        for p in PROFILES:
            cells += [_fmt(r.get(f"incidents:{p}")), _fmt(r.get(f"pages:{p}")),
                      *(_fmt(r.get(f"{d}:{p}")) for d in SHOWN[:-1])]
        print("  ".join(f"{c:>14}" if i else f"{c:<40}" for i, c in enumerate(cells)))
    o = out["overall"]
    print("overall (NAB-normalised over these series): "
          + ", ".join(f"{k} {_fmt(v).strip()}" for k, v in o.items()))
    print(f"severity of true detections: {out['severity_of_true_detections']}; "
          f"of false alarms: {out['severity_of_false_alarms']}")
