"""What a live run works out from the config the user typed, decided once on the launcher, as one frozen value.

The config (`StreamConfig`) stays what the user typed. The run derives the read
(`auto` resolved for the runner), the champion as the workers will read it (a
registered model staged where they can reach it, its lineage for the archive's
footers) and the challenger (`--shadow`); the pipeline's construction and the sinks
read these facts, as the nightly job's read `pipelines.nightly.facts.RunFacts`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.config import StreamConfig
from worker.config import WorkerConfig


@dataclass(frozen=True)
class LiveFacts:
    """The read, the served champion, and the challenger or None."""

    read: str
    worker: WorkerConfig
    shadow: WorkerConfig | None = None

    @classmethod
    def as_typed(cls, config: StreamConfig) -> LiveFacts:
        """Nothing derived: the config's own read and model (a pipeline built by hand, as the benchmarks do)."""
        return cls(config.read, config.worker)
