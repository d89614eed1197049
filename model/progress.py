"""Training's phases on the terminal: what is running, how long it has run, and signs of life.

A fit on 400,000 complaints has phases that take minutes with nothing to report
from inside (a vocabulary adaptation, an L-BFGS solve in scipy). Each phase prints
its name when it starts and its time when it ends, and a background heartbeat says
"still …" every few seconds in between, so a terminal never sits silent and a user
can tell a slow phase from a hung one. Keras prints its own bars for the BiLSTM's
epochs. Off (`TrainConfig.verbose=0`, `complaints train --quiet`), it prints nothing.
Lines, not a progress bar library's redrawn bar (tqdm, rich): a training run's log, on a
terminal or in a scheduler's file, keeps every line and no control characters.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO

import keras

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


class EpochTimes(keras.callbacks.Callback):
    """`[train] epoch N: done in S s (losses)`: Keras' bar erases itself; this line stays, and benchmarks read it.

    Each line is printed once Keras has finished that epoch's bar (at the next
    epoch's start, or the end of training), so it gets a line of its own.
    """

    def __init__(self, phases: Phases, name: str = "epoch"):
        super().__init__()
        self.phases = phases
        self.name = name
        self.started = 0.0
        self.pending = ""

    def _flush(self) -> None:
        if self.pending:
            self.phases.say(self.pending)
            self.pending = ""

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._flush()
        self.started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        seconds = time.monotonic() - self.started
        self.phases.timings[f"{self.name} {epoch + 1}"] = seconds
        losses = ", ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items() if k.endswith("loss"))
        self.pending = f"{self.name} {epoch + 1}: done in {seconds:.1f} s ({losses})"

    def on_train_end(self, logs=None) -> None:
        self._flush()
