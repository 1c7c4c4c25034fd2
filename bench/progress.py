"""Progress of a long benchmark phase: a tqdm bar on a terminal, a status line every few
seconds otherwise (CI logs, files), nothing when quiet. Progress goes to stderr; the figures
a benchmark prints go to stdout."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any

from tqdm import tqdm

LINE_EVERY_S = 5.0


class Progress:
    def __init__(self, desc: str, total: float | None, *, unit: str = "reports", quiet: bool = False) -> None:
        self.desc, self.total, self.unit, self.quiet = desc, total, unit, quiet
        self._bar: tqdm[Any] | None = None
        if not quiet and sys.stderr.isatty():
            self._bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True, dynamic_ncols=True,
                             leave=False)
        self._done = 0.0
        self._started = self._last_line = time.perf_counter()

    def update(self, done: float, **status: object) -> None:
        """Set the absolute progress (and a few named figures shown beside it)."""
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.update(done - self._done)
            if status:
                self._bar.set_postfix(status, refresh=False)
        else:
            now = time.perf_counter()
            if now - self._last_line >= LINE_EVERY_S:
                self._last_line = now
                of = f"/{self.total:,.0f}" if self.total else ""
                extra = "".join(f" {k} {v}" for k, v in status.items())
                print(f"  ... {now - self._started:5.1f}s {self.desc} {done:,.0f}{of} {self.unit}{extra}",
                      file=sys.stderr, flush=True)
        self._done = done

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
