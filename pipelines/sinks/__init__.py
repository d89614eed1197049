"""Sinks: where the classified records go. The seam between "classify" and "write".

A sink is a small PTransform. **It receives** a dict `{"predictions": PCollection,
"dead_letters": {part name: PCollection, …}}`. Predictions have the fields of
`worker.prediction`, then the passthrough columns: from the nightly job they come
as Arrow tables of `prediction.schema` (`worker.tables`), from the live job as
records, which also carry `_source` (sinks never write it). Dead letters are
records, in named parts (`Invalid`, `Unclassified`, and the live job's
`Undecodable`), which a sink may Flatten, except
on the live job's local runner, where a Flatten would never run (`pipelines.stream`).

**What "committed" means** is each sink's to say (its `COMMITTED`), and the job
keeps to it:
- a batch job calls `commit(transaction)` on every sink after the pipeline finished and
  the books balance (rows in = predicted + dead-lettered); a file sink moves its staged
  files up with `transaction.publish(patterns)` (`pipelines.output.Commit`), which the
  job undoes if a later step fails. The job then writes its summary and `_SUCCESS`
  last; it calls `abort(staging)` if anything failed;
- a live job never finishes: a sink that acknowledges inputs (Pub/Sub) does so only
  once its own write is confirmed, and the others say what a crash may lose.

**Adding a sink** is one new module here (a `Sink` subclass) and one line in
`batch_sinks` or `stream_sinks` below; the jobs need no change.
"""

from __future__ import annotations

import apache_beam as beam

from worker.transform import DEAD_LETTERS, PREDICTIONS

__all__ = ["DEAD_LETTERS", "PREDICTIONS", "Sink", "batch_sinks", "stream_sinks"]


class Sink(beam.PTransform):
    """Base of every sink: the lifecycle hooks default to nothing (a sink whose writes are final)."""

    COMMITTED = "when its write step has run"

    def commit(self, transaction) -> None:
        """Make what this run wrote visible through `transaction` (`pipelines.output.Commit`); called once the
        run has succeeded."""

    def abort(self, staging: str) -> None:
        """Withdraw what this run wrote; called when it failed (the job removes its staging directory)."""


def batch_sinks(config, staging: str) -> list[Sink]:
    """The nightly job's sinks, from its config (`pipelines.options.BatchConfig`)."""
    from pipelines.sinks.parquet_files import ParquetFiles

    return [
        ParquetFiles(config.output, staging, config.passthrough_fields),
    ]


def stream_sinks(config) -> list[Sink]:
    """The live job's sinks, from its config (`pipelines.options.StreamConfig`)."""
    from pipelines.sinks.parquet_windows import ParquetWindows
    from pipelines.sinks.pubsub_topics import PubSubTopics

    return [
        PubSubTopics(config),
        *([ParquetWindows(config.archive_output, config.window_seconds, config.read)] if config.archive_output
          else []),
    ]
