"""Sinks: where the classified rows go. The seam between "classify" and "write", one contract in both jobs.

A sink is a small PTransform. **It receives** a dict `{"predictions": PCollection,
"dead_letters": {part name: PCollection, …}}`, the same shape from both jobs:
- predictions are Arrow tables: the fields of `worker.prediction`, then the
  passthrough columns (the nightly job's kept columns; the live job's record, as
  the columns of `worker.record_columns`, whose `_source` no sink writes);
- dead letters are records of `records.DEAD_LETTER_SCHEMA`'s fields (the live job's
  also carry the message they came from as `source`), in named parts (`Invalid`,
  `Unclassified`, and the live job's `Undecodable`). A sink may Flatten them, except
  on the live job's local runner, where a Flatten would never run (`pipelines.live.job`).

**It returns** the list of its answers, for the source to act on: PCollections of
`(ack ids, confirmed)` for what its write confirmed or gave back (the Pub/Sub sink
with the local late-ack read), or an empty list. Acknowledging is the source's
concern (`pipelines.live.local_read.AcknowledgeLeased`), not the sink's.

**What "committed" means** is each sink's to say (its `committed`), and the job
keeps to it:
- a batch job calls `commit(transaction)` on every sink after the pipeline finished and
  the books balance (rows in = predicted + dead-lettered); a file sink moves its staged
  files up with `transaction.publish(patterns)` (`pipelines.nightly.commit.Commit`), which the
  job undoes if a later step fails. The job then writes its summary and `_SUCCESS`
  last; it calls `abort(staging)` if anything failed;
- a live job never finishes: the source acknowledges an input only once a sink that
  answers has confirmed its output, and the other sinks say what a crash may lose.

**Adding a sink** is one new module here (a `Sink` subclass) and one line in
`batch_sinks` or `stream_sinks` below; the jobs need no change.
"""

from __future__ import annotations

from pipelines.sinks.base import DEAD_LETTERS, PREDICTIONS, Sink

__all__ = ["DEAD_LETTERS", "PREDICTIONS", "Sink", "batch_sinks", "settlers", "stream_sinks"]


def batch_sinks(config, staging: str) -> list[Sink]:
    """The nightly job's sinks, from its config (`pipelines.options.BatchConfig`)."""
    from pipelines.sinks.parquet_files import ParquetFiles

    sinks: list[Sink] = [
        ParquetFiles.nightly(config.output, staging, config.passthrough_fields, config.worker.lineage,
                             config.worker.explain > 0),
    ]
    if config.bigquery_table:  # after the files: it loads what they stage
        from pipelines.bigquery import TableRef
        from pipelines.nightly.journal import run_id_of
        from pipelines.nightly.night import of_run
        from pipelines.sinks.bigquery_tables import BigQueryTables, Warehouse

        warehouse = Warehouse(config.bigquery_deadline_secs, config.bigquery_busy_wait_secs,
                              config.bigquery_scratch_dataset, config.bigquery_dead_letter_text)
        night, _ = of_run(config.output, config.night, needed_by="--bigquery-table")
        sinks.append(BigQueryTables(TableRef.parse(config.bigquery_table), config.output, run_id_of(staging),
                                    night, config.passthrough_fields, warehouse))
    return sinks


def settlers() -> dict:
    """What settles each kind of store a commit's journal names (`pipelines.nightly.journal.settle`): imported
    only when a journal names one."""
    class _Lazy(dict):
        def __missing__(self, kind: str):
            if kind != "bigquery":
                raise KeyError(f"a commit journal names a store of kind {kind!r}, which this version does not know")
            from pipelines.sinks.bigquery_tables import Settler

            self[kind] = Settler()
            return self[kind]

    return _Lazy()


def stream_sinks(config) -> list[Sink]:
    """The live job's sinks, from its config (`pipelines.options.StreamConfig`)."""
    from pipelines.options import LATE_ACK
    from pipelines.sinks.parquet_files import ParquetFiles
    from pipelines.sinks.pubsub_topics import PubSubTopics

    return [
        PubSubTopics(config),
        *([ParquetFiles.live(config.archive_output, config.window_seconds, wall_clock=config.read == LATE_ACK,
                             lineage=config.worker.lineage, explain=config.worker.explain > 0)]
          if config.archive_output else []),
    ]
