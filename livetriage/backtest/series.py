"""Recorded traffic as reports: count series spread into reports, or report JSONL as it is.

A count series (``timestamp,value`` CSV, as the Numenta Anomaly Benchmark ships its data)
becomes one stream: each row's count, times ``scale``, is that many reports spread uniformly at
random over the row's interval (up to the next row), each from a reporter of its own, so the
detector sees the series' rate, with Poisson noise on top, and nothing else. Pure: the same
series, scale and seed give the same reports.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import groupby, pairwise
from pathlib import Path

import orjson


@dataclass(frozen=True)
class Series:
    """One labelled series: its name (the key in the labels file), the stream it becomes,
    and its rows (for count series; JSONL has none, its reports are read as they are)."""

    name: str
    stream_id: str
    timestamps: tuple[datetime, ...] = ()
    values: tuple[float, ...] = ()
    path: Path | None = None  # JSONL: the file of reports


def series_name(path: Path) -> str:
    """``dir/file.csv``: how NAB's labels name a series (its folder and file)."""
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def stream_id_for(name: str, run: str) -> str:
    """A stream id for a series: readable, unique to the run (so a shared database can hold
    several runs apart), within the contract's 128 characters."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name.removesuffix(".csv")).strip("-")[:96]
    return f"bt-{run}-{slug}"


def parse_time(text: str) -> datetime:
    """NAB writes naive ``YYYY-MM-DD HH:MM:SS``, taken as UTC; ISO 8601 with a zone works too."""
    t = datetime.fromisoformat(text.strip())
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def load_csv(path: Path, run: str) -> Series:
    """A ``timestamp,value`` CSV (header required), rows in time order."""
    ts: list[datetime] = []
    vs: list[float] = []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"timestamp", "value"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: needs a header with timestamp and value columns")
        for i, row in enumerate(reader, start=2):
            try:
                t, v = parse_time(row["timestamp"]), float(row["value"])
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{i}: {exc}") from exc
            if ts and t < ts[-1]:
                raise ValueError(f"{path}:{i}: timestamps must not go back")
            if not math.isfinite(v):
                raise ValueError(f"{path}:{i}: value is not a finite number")
            ts.append(t)
            vs.append(v)
    if len(ts) < 2:
        raise ValueError(f"{path}: needs at least two rows")
    name = series_name(path)
    return Series(name=name, stream_id=stream_id_for(name, run), timestamps=tuple(ts), values=tuple(vs))


def median_step(ts: Sequence[datetime]) -> timedelta:
    steps = sorted(b - a for a, b in pairwise(ts))
    return steps[len(steps) // 2]


def scale_for(values: Sequence[float], median_per_row: float) -> float:
    """The scale that makes the series' median row ``median_per_row`` reports."""
    positive = sorted(v for v in values if v > 0)
    if not positive:
        return 1.0
    return median_per_row / positive[len(positive) // 2]


def reports_of(series: Series, *, scale: float, category: str, viewers: int | None, seed: int,
               region: str | None = None) -> Iterator[tuple[int, bytes]]:
    """(event time ms, report JSON) for every report of a count series, in time order."""
    rng = random.Random(f"{seed}:{series.name}")
    ts = series.timestamps
    last_step = median_step(ts)
    # rows that repeat a timestamp (NAB has some, around clock changes) are samples of one
    # interval: it gets their mean
    groups: list[tuple[datetime, float]] = []
    for t, grp in groupby(zip(ts, series.values, strict=True), key=lambda r: r[0]):
        vals = [v for _, v in grp]
        groups.append((t, sum(vals) / len(vals)))
    n = 0
    for i, (t, v) in enumerate(groups):
        # the row's count covers its interval up to the next row (a gap in the data keeps
        # the usual step: the series says nothing about the hours it skipped)
        step = min(groups[i + 1][0] - t, last_step * 2) if i + 1 < len(groups) else last_step
        want = max(0.0, v * scale)
        k = int(want) + (1 if rng.random() < want - int(want) else 0)  # unbiased rounding
        t0 = int(t.timestamp() * 1000)
        span = max(1, int(step.total_seconds() * 1000))
        for at in sorted(t0 + int(rng.random() * span) for _ in range(k)):
            n += 1
            rep: dict[str, object] = {
                "report_id": hashlib.blake2b(f"{series.stream_id}:{n}".encode(), digest_size=12).hexdigest(),
                "stream_id": series.stream_id,
                "reported_at": datetime.fromtimestamp(at / 1000, UTC).isoformat().replace("+00:00", "Z"),
                "category": category,
                "source": "user",
                "reporter_id": f"{series.stream_id}:u{n}",
            }
            if viewers is not None:
                rep["viewer_count"] = viewers
            if region is not None:
                rep["region"] = region
            yield at, orjson.dumps(rep)


def jsonl_reports(path: Path) -> Iterator[tuple[int, bytes, str]]:
    """(event time ms, report bytes, stream id) of a JSONL file of reports. A line that does not
    parse is passed on as it is (ingest dead-letters it, as it would live) with time 0."""
    with path.open("rb") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rep = json.loads(line)
                at = int(parse_time(rep["reported_at"]).timestamp() * 1000)
                stream = str(rep.get("stream_id", ""))
            except (ValueError, KeyError, TypeError, AttributeError):
                at, stream = 0, ""
            yield at, line, stream
