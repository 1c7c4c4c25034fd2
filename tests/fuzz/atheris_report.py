"""Coverage-guided fuzzing of the report parser with atheris (libFuzzer).

    python tests/fuzz/atheris_report.py -runs=100000 [corpus_dir ...] [libFuzzer flags]

An empty (or no) corpus directory is seeded with a few reports first. A crash,
an exception or a broken property stops it with the input saved as ``crash-<sha1>``.
"""

from __future__ import annotations

import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports():
    from services.ingest.validate import REASONS, Rejected, canonical_json, parse_report
    from shared.events import Report

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
LIMITS = {"max_bytes": 16_384, "max_text_chars": 2_000, "now": NOW,
          "max_future": timedelta(minutes=5), "max_age": timedelta(hours=48)}
SEEDS = [
    b'{"report_id":"r-1","stream_id":"s-1","reported_at":"2026-11-23T10:00:00Z",'
    b'"category":"violence","source":"user"}',
    b'{"report_id":"r-2","stream_id":"s-2","reported_at":"2026-11-23T09:59:00+01:00",'
    b'"category":"hate","source":"moderator","reporter_id":"u1","region":"BR","viewer_count":12,'
    b'"classifier_score":0.5,"language":"pt-BR","text":"hi","schema_version":1,"x":{"y":[1]}}',
    b'{"report_id":"r-3","stream_id":"s","reported_at":"2030-01-01T00:00:00Z","category":"spam",'
    b'"source":"classifier"}',
    b"[[[[[[]]]]]]",
    b'"\\u0000"',
]


def test_one_input(data: bytes) -> None:
    out = parse_report(data, **LIMITS)
    if isinstance(out, Rejected):
        if out.reason not in REASONS or not out.detail:
            raise AssertionError(f"bad rejection {out!r}")
        return
    if not isinstance(out, Report):
        raise AssertionError(f"neither a report nor a rejection: {out!r}")
    again = parse_report(canonical_json(out), **{**LIMITS, "max_bytes": 1 << 26})
    if again != out:
        raise AssertionError(f"canonical form does not parse back: {again!r}")


def main(argv: list[str]) -> None:
    args = list(argv)
    dirs = [Path(a) for a in args[1:] if not a.startswith("-")]
    if not dirs:
        dirs = [Path(tempfile.mkdtemp(prefix="atheris-report-"))]
        args.append(str(dirs[0]))
    if dirs[0].is_dir() and not any(dirs[0].iterdir()):
        for i, seed in enumerate(SEEDS):
            (dirs[0] / f"seed-{i}").write_bytes(seed)
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
