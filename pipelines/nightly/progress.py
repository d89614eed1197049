"""Progress of a local run on the terminal: rows read and rows per second.

A pass-through step; the count is per worker process (with several DirectRunner
workers each prints its own line), throttled to one line every few seconds. Lines, not
a progress bar library's redrawn bar (tqdm, rich): a night's log, in cron's mail or a
scheduler's file, keeps every line and no control characters.
"""

from __future__ import annotations

import sys
import threading
import time

import apache_beam as beam


class _Progress:
    lock = threading.Lock()
    count = 0
    started = 0.0
    last = 0.0


class ReportProgress(beam.DoFn):
    def __init__(self, total_rows: int | None, every_seconds: float = 3.0):
        self.total_rows = total_rows
        self.every_seconds = every_seconds

    def process(self, element):
        now = time.monotonic()
        with _Progress.lock:
            if _Progress.count == 0:
                _Progress.started = _Progress.last = now
            _Progress.count += getattr(element, "num_rows", 1)  # the nightly job's elements are tables
            due = now - _Progress.last >= self.every_seconds
            if due:
                _Progress.last = now
                count, rate = _Progress.count, _Progress.count / max(now - _Progress.started, 1e-9)
        if due:
            share = f" ({count / self.total_rows:.0%})" if self.total_rows else ""
            total = f" / {self.total_rows:,}" if self.total_rows else ""
            print(f"  {count:,}{total} rows read{share}, {rate:,.0f} rows/s", file=sys.stderr, flush=True)
        yield element
