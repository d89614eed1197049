"""The one contract every sink keeps (see `pipelines.sinks` for what it receives, returns and commits)."""

from __future__ import annotations

import apache_beam as beam

from worker.transform import DEAD_LETTERS, PREDICTIONS

__all__ = ["DEAD_LETTERS", "PREDICTIONS", "SHADOW", "Sink"]

SHADOW = "shadow"  # the challenger's prediction tables (--shadow), when a job scores one


class Sink(beam.PTransform):
    """Base of every sink: the lifecycle hooks default to nothing (a sink whose writes are final)."""

    committed = "when its write step has run"

    def check(self) -> None:
        """Before any work: raise a `UserError` if this sink cannot take the run's rows (a table whose schema
        differs), so the run stops in one line before it labels anything."""

    def commit(self, transaction) -> None:
        """Make what this run wrote visible through `transaction` (`pipelines.plumbing.commit.Commit`); called once the
        run has succeeded."""

    def abort(self, staging: str) -> None:
        """Withdraw what this run wrote; called when it failed (the job removes its staging directory)."""
