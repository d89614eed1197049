"""ClassifyComplaints: the live job's edge of the classification core, records in and out.

Records are validated with the one rule (`records.check`, through `records.validate`),
batched by Beam's `BatchElements` (across bundles on Dataflow, with
`max_batch_duration_secs`), and served by RunInference through the one handler and
core (`worker.core`), as the nightly job's tables are. Each prediction becomes a
record again, its input's fields merged back, since Pub/Sub messages are records.
The output is a dict of PCollections, `predictions` and the two dead-letter parts;
every input record lands in exactly one.
"""

from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam
import pyarrow as pa
from apache_beam.ml.inference.base import RunInference

from model.predict import DEFAULT_REVIEW_THRESHOLD, DEFAULT_TOP_K
from worker import records
from worker.core import Classified, Rows
from worker.defaults import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MIN_BATCH_SIZE, METRICS_NAMESPACE
from worker.handler import ComplaintModelHandler

PREDICTIONS = "predictions"
DEAD_LETTERS = "dead_letters"
DEAD_LETTER_PARTS = ("Invalid", "Unclassified")  # records that fail validation; records inference gives no label


@dataclass(frozen=True)
class WorkerConfig:
    """Everything the worker needs: which model and how to batch and decode."""

    model_dir: str
    top_k: int = DEFAULT_TOP_K
    review_threshold: float = DEFAULT_REVIEW_THRESHOLD
    min_batch_size: int = DEFAULT_MIN_BATCH_SIZE
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_batch_duration_secs: int | None = None  # set for streaming: batches form across bundles
    watch_models: str | None = None  # a glob of model directories: serve each newer complete one that appears
    watch_interval_secs: float = 60.0
    xla: bool = True  # the BiLSTM's numeric core as XLA programs (worker/compiled.py); False: all graph mode

    def handler(self, warm_up: bool = True, schema: pa.Schema | None = None,
                word_counts: bool = False) -> ComplaintModelHandler:
        """`warm_up`: compile every padded batch size at load (jobs); off, each is compiled when first seen.
        `schema`: of the prediction tables (the nightly job's kept columns); `word_counts`: for drift."""
        return ComplaintModelHandler(
            self.model_dir,
            top_k=self.top_k,
            review_threshold=self.review_threshold,
            min_batch_size=self.min_batch_size,
            max_batch_size=self.max_batch_size,
            watch_models=self.watch_models,
            watch_interval_secs=self.watch_interval_secs,
            xla=self.xla,
            warm_up=warm_up,
            schema=schema,
            word_counts=word_counts,
        )


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
    """A batch of validated records as the core takes it: each record's other fields travel beside its text."""
    return Rows([key[records.ID] for key, _ in valid], [text for _, text in valid], [key for key, _ in valid])


class ToPredictionRecords(beam.DoFn):
    """What the core made of a batch → prediction records (the record's fields, then the prediction's), and
    dead letters.

    The record's source (if any) stays on the prediction under `records.SOURCE`, so a
    sink can acknowledge the message it came from; sinks never write it.
    """

    def setup(self):
        self.classified = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "classified")
        self.needs_review = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "needs_review")

    def process(self, classified: Classified):
        for letter in classified.dead_letters:
            count_dead_letter(letter)
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, letter)
        for record in classified.records:
            self.classified.inc()
            if record["needs_review"]:
                self.needs_review.inc()
            yield record


class ClassifyComplaints(beam.PTransform):
    """Records `{id, text, …}` in; `{"predictions": …, "Invalid": …, "Unclassified": …}` out.

    The dead letters come out in their two parts (`DEAD_LETTER_PARTS`: invalid records,
    records inference gave no label), never flattened here: on the live job's local
    read a Flatten would cut the stage in two, and that stage never ends.
    """

    def __init__(self, config: WorkerConfig):
        super().__init__()
        self.config = config

    def expand(self, records_in):
        config = self.config
        checked = records_in | "Validate" >> beam.ParDo(ValidateRecords()).with_outputs(DEAD_LETTERS, main="valid")
        batches = (checked.valid
                   | "Batch" >> beam.BatchElements(min_batch_size=min(config.min_batch_size, config.max_batch_size),
                                                   max_batch_size=config.max_batch_size,
                                                   max_batch_duration_secs=config.max_batch_duration_secs)
                   | "ToRows" >> beam.Map(rows_of))
        inferred = batches | "RunInference" >> RunInference(config.handler(), metrics_namespace=METRICS_NAMESPACE)
        decoded = inferred | "ToRecords" >> beam.ParDo(ToPredictionRecords()).with_outputs(
            DEAD_LETTERS, main=PREDICTIONS
        )
        parts = (checked[DEAD_LETTERS], decoded[DEAD_LETTERS])
        return {PREDICTIONS: decoded[PREDICTIONS], **dict(zip(DEAD_LETTER_PARTS, parts, strict=True))}
