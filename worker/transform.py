"""ClassifyComplaints: validate → RunInference → prediction records, with dead letters.

The live job's classifier (the nightly job classifies Arrow tables with
`worker.tables`, on the same helpers). Its output is a dict of PCollections,
`predictions` and the two dead-letter parts; every input record lands in exactly one.
"""

from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, PredictionResult, RunInference

from model.predict import DEFAULT_REVIEW_THRESHOLD, DEFAULT_TOP_K
from worker import records
from worker.defaults import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MIN_BATCH_SIZE, METRICS_NAMESPACE
from worker.handler import ComplaintModelHandler, InferenceError

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

    def handler(self, warm_up: bool = True) -> ComplaintModelHandler:
        """`warm_up`: compile every padded batch size at load (jobs); off, each is compiled when first seen."""
        return ComplaintModelHandler(
            self.model_dir,
            top_k=self.top_k,
            review_threshold=self.review_threshold,
            min_batch_size=self.min_batch_size,
            max_batch_size=self.max_batch_size,
            max_batch_duration_secs=self.max_batch_duration_secs,
            watch_models=self.watch_models,
            watch_interval_secs=self.watch_interval_secs,
            xla=self.xla,
            warm_up=warm_up,
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


def verdict(key: dict, text: str, inference) -> tuple[str, dict]:
    """(PREDICTIONS, record) or (DEAD_LETTERS, letter) for one inference: the jobs', `predict`'s and the page's."""
    if inference is None or isinstance(inference, InferenceError):
        reason = records.EMPTY_TEXT if inference is None else records.INFERENCE_FAILED
        detail = "nothing is left after standardisation" if inference is None else inference.detail
        return DEAD_LETTERS, records.dead_letter(key[records.ID], reason, detail, {**key, records.TEXT: text})
    return PREDICTIONS, {**key, **inference}


class ToPredictionRecords(beam.DoFn):
    """Merge each inference with its record's key fields into the output record.

    The record's source (if any) stays on the prediction under `records.SOURCE`, so a
    sink can acknowledge the message it came from; sinks never write it.
    """

    def __init__(self):
        self.classified = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "classified")
        self.needs_review = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "needs_review")

    def process(self, element: tuple[dict, PredictionResult]):
        key, result = element
        tag, record = verdict(key, result.example, result.inference)
        if tag == DEAD_LETTERS:
            count_dead_letter(record)
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, record)
            return
        self.classified.inc()
        if record["needs_review"]:
            self.needs_review.inc()
        yield record


class KeyedComplaintHandler(KeyedModelHandler):
    """Beam's KeyedModelHandler, with the batch size in bytes counted on the texts alone.

    Beam's own count pickles every batch's keys for its byte-size metric: 3 ms a
    512-row batch, 6 µs a row, in a profile of the nightly job. The keys are ids and
    passthrough values; the texts are what the model reads and what the metric is for.
    """

    def __init__(self, handler: ComplaintModelHandler):
        super().__init__(handler)
        self.texts_handler = handler

    def get_num_bytes(self, batch) -> int:
        return self.texts_handler.get_num_bytes([text for _, text in batch])


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
        checked = records_in | "Validate" >> beam.ParDo(ValidateRecords()).with_outputs(DEAD_LETTERS, main="valid")
        inferred = checked.valid | "RunInference" >> RunInference(
            KeyedComplaintHandler(self.config.handler()), metrics_namespace=METRICS_NAMESPACE
        )
        decoded = inferred | "ToRecords" >> beam.ParDo(ToPredictionRecords()).with_outputs(
            DEAD_LETTERS, main=PREDICTIONS
        )
        parts = (checked[DEAD_LETTERS], decoded[DEAD_LETTERS])
        return {PREDICTIONS: decoded[PREDICTIONS], **dict(zip(DEAD_LETTER_PARTS, parts, strict=True))}
