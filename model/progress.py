"""Training's phases on the terminal: what is running, how long it has run, and signs of life.

A fit on 400,000 complaints has phases that take minutes with nothing to report
from inside (a vocabulary adaptation, an L-BFGS solve in scipy). Each phase prints
its name when it starts and its time when it ends, and a background heartbeat says
"still …" every few seconds in between, so a terminal never sits silent and a user
can tell a slow phase from a hung one. Keras prints its own bars for the BiLSTM's
epochs. Off (`TrainConfig.verbose=0`, `complaints train --quiet`), it prints nothing.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO

HEARTBEAT_SECS = 5.0


class Phases:
    """Prints `[train] NAME…` at the start of a phase and `[train] NAME: done in S s` at its end."""

    def __init__(self, enabled: bool = True, stream: TextIO | None = None, heartbeat_secs: float = HEARTBEAT_SECS):
        self.enabled = enabled
        self.stream = stream
        self.heartbeat_secs = heartbeat_secs
        self.timings: dict[str, float] = {}

    def say(self, text: str) -> None:
        """One `[train] …` line, outside any phase."""
        self._print(text)

    def _print(self, text: str) -> None:
        if self.enabled:
            print(f"[train] {text}", file=self.stream or sys.stderr, flush=True)

    @contextlib.contextmanager
    def phase(self, name: str, detail: str = "") -> Iterator[None]:
        self._print(f"{name}{f' ({detail})' if detail else ''}…")
        started = time.monotonic()
        done = threading.Event()

        def beat() -> None:
            while not done.wait(self.heartbeat_secs):
                self._print(f"still {name}: {time.monotonic() - started:.0f} s")

        thread = threading.Thread(target=beat, daemon=True) if self.enabled else None
        if thread:
            thread.start()
        try:
            yield
        finally:
            done.set()
            if thread:
                thread.join()
            seconds = time.monotonic() - started
            self.timings[name] = self.timings.get(name, 0.0) + seconds
            self._print(f"{name}: done in {seconds:.1f} s")
