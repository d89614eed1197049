"""ClassifyComplaints: the live job's edge of the classification core, records in, prediction tables out.

Records are validated with the one rule (`records.check`, through `records.validate`),
batched by Beam's `BatchElements` (across bundles on Dataflow, with
`max_batch_duration_secs`), and served by RunInference through the one handler and
core (`worker.core`), as the nightly job's tables are. Predictions come out as Arrow
tables, as the nightly job's do, so every sink receives one shape; the record's own
fields ride in the columns of `worker.record_columns`. The output is a dict of
PCollections, `predictions` and the two dead-letter parts; every input record lands
in exactly one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import apache_beam as beam
import pyarrow.compute as pc
from apache_beam.ml.inference.base import RunInference

from worker import record_columns, records
from worker.config import WorkerConfig
from worker.core import Classified, Rows
from worker.defaults import METRICS_NAMESPACE
from worker.handler import ComplaintModelHandler

PREDICTIONS = "predictions"
DEAD_LETTERS = "dead_letters"
DEAD_LETTER_PARTS = ("Invalid", "Unclassified")  # records that fail validation; records inference gives no label
INVALID, UNCLASSIFIED = DEAD_LETTER_PARTS
WORD_COUNTS = "word_counts"  # per batch: (word ids, counts) of the texts classified, for the drift check
SERVED = "served"  # per batch: (its precision choice as JSON, rows labelled), for the nightly summary


def count_dead_letter(letter: dict) -> None:
    """The dead-letter metrics: a total and one counter per reason."""
    beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"dead_lettered_{letter['reason']}").inc()
    beam.metrics.Metrics.counter(METRICS_NAMESPACE, "dead_lettered").inc()


class ValidateRecords(beam.DoFn):
    """Valid records become (key fields, text); the rest become dead letters."""

    def process(self, record):
        try:
            checked = records.validate(record)
        except Exception as exc:  # noqa: BLE001 (no record may stop the job: it gets an answer instead)
            checked = records.unvalidatable(record, exc)
        if isinstance(checked, dict):
            count_dead_letter(checked)
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, checked)
        else:
            yield checked


def rows_of(valid: list[tuple[dict, str]]) -> Rows:
    """A batch of validated records as the core takes it: each record's other fields as columns beside its text."""
    keys = [key for key, _ in valid]
    return Rows([key[records.ID] for key in keys], [text for _, text in valid], record_columns.kept_table(keys),
                of_records=True)


class SplitClassified(beam.DoFn):
    """What the core made of a batch → its prediction table, its dead letters and (nightly) its word counts.

    The one place both jobs count what they classified. With `served`, also which
    precision labelled each batch's rows (`SERVED`): the choice travels with the rows to
    the run's figures, from whichever worker made it, on any runner.
    """

    def __init__(self, served: bool = False):
        self.served = served

    def setup(self):
        self.classified = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "classified")
        self.needs_review = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "needs_review")

    def process(self, classified: Classified) -> Iterator:
        for letter in classified.dead_letters:
            count_dead_letter(letter)
            yield beam.pvalue.TaggedOutput(UNCLASSIFIED, letter)
        if classified.word_counts is not None:
            yield beam.pvalue.TaggedOutput(WORD_COUNTS, classified.word_counts)
        predictions = classified.predictions
        if predictions.num_rows:
            if self.served and classified.precision is not None:
                yield beam.pvalue.TaggedOutput(SERVED, (json.dumps(classified.precision, sort_keys=True),
                                                        predictions.num_rows))
            self.classified.inc(predictions.num_rows)
            self.needs_review.inc(pc.sum(predictions.column("needs_review")).as_py() or 0)
            yield predictions


class ClassifyComplaints(beam.PTransform):
    """Records `{id, text, …}` in; `{"predictions": tables, "Invalid": letters, "Unclassified": letters}` out.

    The prediction tables are of `record_columns.schema()`: the record's other fields ride in
    the columns of `worker.record_columns`, and `record_columns.records` turns a table
    back into the records Pub/Sub sends.

    The dead letters come out in their two parts (`DEAD_LETTER_PARTS`: invalid records,
    records inference gave no label), never flattened here: on the live job's local
    read a Flatten would cut the stage in two, and that stage never ends.
    """

    def __init__(self, config: WorkerConfig, whole_bundles: bool = False):
        """`whole_bundles`: each bundle's records form full batches of `max_batch_size` (and one remainder), for
        a source whose bundles are already sized batches: the late-acknowledging read's polls, which hold
        `max_batch_size` messages when a backlog waits and what came within a second when it does not.

        Otherwise Beam's `BatchElements` sizes batches with its estimator, which aims at a 5% fixed cost per
        batch and times the whole fused stage downstream (the model, the encoding, the publish) as the
        batch's cost: under a backlog it settled on batches of 20-49 rows, where the model runs about half as
        fast as at 256 (benchmarks/RESULTS.md)."""
        super().__init__()
        self.config, self.whole_bundles = config, whole_bundles

    def expand(self, records_in):
        config = self.config
        checked = records_in | "Validate" >> beam.ParDo(ValidateRecords()).with_outputs(DEAD_LETTERS, main="valid")
        smallest = config.max_batch_size if self.whole_bundles else min(config.min_batch_size, config.max_batch_size)
        batches = (checked.valid
                   | "Batch" >> beam.BatchElements(min_batch_size=smallest, max_batch_size=config.max_batch_size,
                                                   max_batch_duration_secs=config.max_batch_duration_secs)
                   | "ToRows" >> beam.Map(rows_of))
        handler = ComplaintModelHandler(config, schema=record_columns.schema(config.explain > 0))
        inferred = batches | "RunInference" >> RunInference(handler, metrics_namespace=METRICS_NAMESPACE)
        split = inferred | "SplitClassified" >> beam.ParDo(SplitClassified()).with_outputs(
            UNCLASSIFIED, main=PREDICTIONS)
        return {PREDICTIONS: split[PREDICTIONS], INVALID: checked[DEAD_LETTERS], UNCLASSIFIED: split[UNCLASSIFIED]}
