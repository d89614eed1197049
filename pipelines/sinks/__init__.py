"""Sinks: where the classified rows go. The seam between "classify" and "write", one contract in both jobs.

A sink is a small PTransform. **It receives** a dict `{"predictions": PCollection,
"dead_letters": {part name: PCollection, …}}`, the same shape from both jobs:
- predictions are Arrow tables: the fields of `worker.prediction`, then the
  passthrough columns (the nightly job's kept columns; the live job's record, as
  the columns of `worker.record_columns`, whose `_source` no sink writes);
- dead letters are records of `records.DEAD_LETTER_SCHEMA`'s fields (the live job's
  also carry the message they came from as `source`), in named parts (`Invalid`,
  `Unclassified`, and the live job's `Undecodable`). A sink may Flatten them, except
  on the live job's local runner, where a Flatten would never run (`pipelines.live.job`);
- with `--shadow`, also `"shadow"`: the challenger's prediction tables for the same
  rows (its dead letters are not kept: the champion's account for every row). Only the
  Parquet and BigQuery sinks keep them, apart from the predictions.

**It returns** the list of its answers, for the source to act on: PCollections of
`(ack ids, confirmed)` for what its write confirmed or gave back (the Pub/Sub sink
with the local late-ack read), or an empty list. Acknowledging is the source's
concern (`pipelines.live.local_read.AcknowledgeLeased`), not the sink's.

**What "committed" means** is each sink's to say (its `committed`), and the job
keeps to it:
- a batch job calls `commit(transaction)` on every sink after the pipeline finished and
  the books balance (rows in = predicted + dead-lettered); a file sink moves its staged
  files up with `transaction.publish(patterns)` (`pipelines.plumbing.commit.Commit`), which the
  job undoes if a later step fails. The job then writes its summary and `_SUCCESS`
  last; it calls `abort(staging)` if anything failed;
- a live job never finishes: the source acknowledges an input only once a sink that
  answers has confirmed its output, and the other sinks say what a crash may lose.

**Sinks are built from plain values**, never from a job's config: each job room says
which sinks its config asks for (`pipelines.nightly.outputs`, `pipelines.live.outputs`).
Adding a sink is one new module here (a `Sink` subclass) and one line there.
"""

from __future__ import annotations

from pipelines.sinks.base import DEAD_LETTERS, PREDICTIONS, SHADOW, Sink

__all__ = ["DEAD_LETTERS", "PREDICTIONS", "SHADOW", "Sink", "settlers"]


def settlers() -> dict:
    """What settles each kind of store a commit's journal names (`pipelines.plumbing.journal.settle`): imported
    only when a journal names one."""
    class _Lazy(dict):
        def __missing__(self, kind: str):
            if kind != "bigquery":
                raise KeyError(f"a commit journal names a store of kind {kind!r}, which this version does not know")
            from pipelines.sinks.bigquery_swap import Settler

            self[kind] = Settler()
            return self[kind]

    return _Lazy()
