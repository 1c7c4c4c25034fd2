"""The Numenta Anomaly Benchmark's scoring rules, for detections given as data rows.

NAB (github.com/numenta/NAB, MIT) scores a detector on a labelled series like this, and
this module follows its ``nab/sweeper.py`` and ``runner.normalize`` rule for rule, so our
figures sit beside its published ones:

- the first 15% of rows (at most 750) are a probation: detections there count for nothing;
- a detection inside an anomaly window earns ``tp * S(p)`` where ``S`` is the scaled sigmoid
  of its relative position in the window (1.0 at the left edge, 0 at the right edge); only
  the best (earliest) detection per window counts; a window with none costs ``-fn``;
- every detection outside a window costs ``fp * |S(p)|`` (a full ``-fp`` before the first
  window, and a little less just after a window's right edge);
- the corpus score is normalised: ``100 * (raw - null) / (perfect - null)``, where null is
  detecting nothing and perfect is ``tp`` per labelled window.

A detection time maps to the row whose interval holds it: the row whose timestamp is the
last at or before it.
"""

from __future__ import annotations

import csv
import json
import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

Windows = list[tuple[datetime, datetime]]


@dataclass(frozen=True)
class Profile:
    tp: float
    fp: float
    fn: float


# NAB's config/profiles.json
PROFILES = {
    "standard": Profile(tp=1.0, fp=0.11, fn=1.0),
    "reward_low_FP_rate": Profile(tp=1.0, fp=0.22, fn=1.0),
    "reward_low_FN_rate": Profile(tp=1.0, fp=0.11, fn=2.0),
}


@dataclass(frozen=True)
class FileScore:
    """One series' NAB score. ``tp``/``fn`` count windows found/missed (after the probation),
    ``fp`` counts detected rows outside every window (NAB's FP column)."""

    raw: float
    null: float  # the raw score of detecting nothing
    perfect: float  # tp weight per labelled window
    tp: int
    fp: int
    fn: int

    @property
    def normalised(self) -> float | None:
        """NAB's 0..100 scale for this series alone; None without windows (then ``raw``,
        at most 0, is the figure: 0 is perfect)."""
        if self.perfect == self.null:
            return None
        return 100.0 * (self.raw - self.null) / (self.perfect - self.null)


def _parse_ts(s: str) -> datetime:
    return datetime.fromisoformat(s.strip()).replace(tzinfo=UTC)


def load_windows(path: Path) -> dict[str, Windows]:
    """NAB's ``labels/combined_windows.json``: series name -> [(start, end)], UTC."""
    raw = json.loads(Path(path).read_text())
    return {name: [(_parse_ts(a), _parse_ts(b)) for a, b in ws] for name, ws in raw.items()}


def alert_rows(timestamps: Sequence[datetime], times: Iterable[datetime]) -> set[int]:
    """Row indices holding each detection time (times before the first row are dropped)."""
    out: set[int] = set()
    for t in times:
        i = bisect_right(timestamps, t) - 1
        if i >= 0:
            out.add(i)
    return out


def _scaled_sigmoid(position: float) -> float:
    if position > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def probation_rows(n: int, percent: float = 0.15) -> float:
    return min(math.floor(percent * n), percent * 5000)


def score_file(timestamps: Sequence[datetime], alerts: set[int], windows: Windows,
               profile: Profile) -> FileScore:
    """Score one series' detected rows against its windows, as NAB's sweeper does."""
    index: dict[datetime, int] = {}
    for i, t in enumerate(timestamps):
        index.setdefault(t, i)  # NAB takes a repeated timestamp's first row
    spans = sorted((index[a], index[b]) for a, b in windows if a in index and b in index)
    if len(spans) != len(windows):
        raise ValueError("an anomaly window's edge is not a row of the series")
    probation = probation_rows(len(timestamps))
    max_tp = _scaled_sigmoid(-1.0)
    best: dict[int, float] = {}  # window -> best weighted score of its detections
    scored_windows: set[int] = set()  # windows with a row past the probation
    fp_total, fp = 0.0, 0
    w = 0  # next window
    prev_right: int | None = None
    prev_width = 0.0
    for i in range(len(timestamps)):
        while w < len(spans) and spans[w][1] < i:
            prev_right, prev_width = spans[w][1], float(spans[w][1] - spans[w][0] + 1)
            w += 1
        inside = w < len(spans) and spans[w][0] <= i
        if i < probation:
            continue
        if inside:
            scored_windows.add(w)
        if i not in alerts:
            continue
        if inside:
            left, right = spans[w]
            s = _scaled_sigmoid(-(right - i + 1) / (right - left + 1)) * profile.tp / max_tp
            best[w] = max(best.get(w, -math.inf), s)
        else:
            s = -1.0 if prev_right is None else _scaled_sigmoid(abs(prev_right - i) / (prev_width - 1))
            fp_total += s * profile.fp
            fp += 1
    null = -profile.fn * len(scored_windows)
    raw = fp_total + sum(best.get(k, -profile.fn) for k in scored_windows)
    return FileScore(raw=raw, null=null, perfect=profile.tp * len(windows),
                     tp=len(best), fp=fp, fn=len(scored_windows) - len(best))


def score_corpus(scores: Iterable[FileScore]) -> float | None:
    """NAB's normalised score over several series (None if none has a window)."""
    scores = list(scores)
    raw: float  # FileScore's fields, read by name
    null: float
    perfect: float
    raw, null, perfect = (sum(getattr(s, k) for s in scores) for k in ("raw", "null", "perfect"))
    if perfect == null:
        return None
    return 100.0 * (raw - null) / (perfect - null)


def load_published(results_dir: Path, windows: dict[str, Windows],
                   profiles: Iterable[str]) -> dict[str, dict[str, dict[str, FileScore]]]:
    """Published detectors' per-series scores from a NAB checkout's ``results/``:
    detector -> profile -> series -> FileScore (raw from the CSV, null/perfect from the labels;
    NAB's per-row TP/FN columns are not window counts, so tp/fn here are -1)."""
    out: dict[str, dict[str, dict[str, FileScore]]] = {}
    profiles = list(profiles)
    nulls_of = {prof: _null_scores(Path(results_dir), prof) for prof in profiles}
    for det_dir in sorted(p for p in Path(results_dir).iterdir() if p.is_dir()):
        for prof in profiles:
            path = det_dir / f"{det_dir.name}_{prof}_scores.csv"
            if not path.exists():
                continue
            nulls = nulls_of[prof]
            with path.open() as fh:
                for row in csv.DictReader(fh):
                    name = row["File"]
                    if name not in windows:
                        continue
                    n = len(windows[name])
                    out.setdefault(det_dir.name, {}).setdefault(prof, {})[name] = FileScore(
                        raw=float(row["Score"]), null=nulls.get(name, -PROFILES[prof].fn * n),
                        perfect=PROFILES[prof].tp * n, tp=-1, fp=int(row["FP"]), fn=-1)
    return out


def _null_scores(results_dir: Path, profile: str) -> dict[str, float]:
    path = results_dir / "null" / f"null_{profile}_scores.csv"
    if not path.exists():
        return {}
    with path.open() as fh:
        return {r["File"]: float(r["Score"]) for r in csv.DictReader(fh) if r["File"] != "Totals"}
