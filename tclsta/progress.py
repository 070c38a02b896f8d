"""Progress of the long loops (videos, batches), readable with or without a terminal.

On a terminal a tqdm bar; otherwise (a job's log file, always so on a cluster) a log line every
``LOG_INTERVAL`` seconds and one at the end (work that ends sooner logs nothing)::

    flow shard_3.h5: 412/833 videos (49%), 1.9 videos/s, ETA 0:03:41
"""

from __future__ import annotations

import datetime
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

log = logging.getLogger(__name__)
T = TypeVar("T")
LOG_INTERVAL = 30.0


class Progress:
    """Counts ``done`` of ``total`` ``unit`` of the work ``what``; use as a context manager, call :meth:`update`."""

    def __init__(self, what: str, total: int | None, unit: str = "videos", interval: float = LOG_INTERVAL):
        self.what, self.total, self.unit, self.interval = what, total, unit, interval
        self.done = self.done_logged = 0
        self.bar = tqdm(total=total, desc=what, unit=unit, leave=False) if sys.stderr.isatty() else None
        self.start = self.logged = time.monotonic()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def update(self, count: int = 1) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
        elif time.monotonic() - self.logged >= self.interval:
            self.log()

    def log(self) -> None:
        now = time.monotonic()
        self.logged, self.done_logged = now, self.done
        rate = self.done / max(now - self.start, 1e-9)
        if self.total is None:
            log.info("%s: %d %s, %.3g %s/s", self.what, self.done, self.unit, rate, self.unit)
            return
        left = self.total - self.done
        eta = str(datetime.timedelta(seconds=round(left / rate))) if rate > 0 else "unknown"
        log.info("%s: %d/%d %s (%d%%), %.3g %s/s, ETA %s", self.what, self.done, self.total, self.unit,
                 100 * self.done // max(self.total, 1), rate, self.unit, eta)

    def close(self) -> None:
        """Ends the bar, or logs the final count of work that took an interval or more (unless just logged)."""
        if self.bar is not None:
            self.bar.close()
        elif time.monotonic() - self.start >= self.interval and self.done != self.done_logged:
            self.log()


def progress(items: Iterable[T], what: str, total: int | None = None, unit: str = "videos") -> Iterator[T]:
    """``items`` one by one, counting each as one ``unit`` of ``what`` (``total``: ``len(items)`` when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    with Progress(what, total, unit) as counter:
        for item in items:
            yield item
            counter.update()
