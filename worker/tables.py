"""ClassifyTables: the nightly job's classifier, an Arrow table of input rows at a time.

Same decisions as `ClassifyComplaints` (same validation helpers, same model handler
and serving function, same prediction fields), but a whole table of rows travels as
one element: validation is one loop over two columns, inference runs on the valid
texts in batches of `max_batch_size`, and the predictions come out as one Arrow
table built column by column. Per element, Beam's bookkeeping (a DoFn hop, a
windowed value, a metrics update) costs microseconds; per review in the record path
that was about 50 µs, a sixth of the model's own time (README, Performance).

Rows that cannot be classified are the rare case and stay records: dead letters,
built by the record path's own `records.validate` and `verdict`, so a row gets the
same letter either way (tests/test_tables.py compares the two paths).
"""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pyarrow as pa

from worker import prediction, records
from worker.defaults import METRICS_NAMESPACE
from worker.handler import InferenceError, ModelSlot, serve_or_bisect
from worker.transform import DEAD_LETTER_PARTS, PREDICTIONS, WorkerConfig, count_dead_letter, verdict

INVALID, UNCLASSIFIED = DEAD_LETTER_PARTS


def row_record(table: pa.Table, row: int) -> dict:
    """One input row as the record path's reader gave it: `{id, text, kept…}`."""
    return table.slice(row, 1).to_pylist()[0]


class ClassifyTable(beam.DoFn):
    """An input table (`id`, `text`, kept columns) → one prediction table, and dead letters in two parts."""

    def __init__(self, config: WorkerConfig, schema: pa.Schema):
        self.config, self.schema = config, schema

    def setup(self):
        self.handler = self.config.handler()
        self.slot: ModelSlot = self.handler.load_model()  # one ServingModel a process (worker.handler._SERVING)
        self.classified = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "classified")
        self.needs_review = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "needs_review")
        self.inferences = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "num_inferences")

    def process(self, table: pa.Table):
        ids = table.column(records.ID).to_pylist()
        rows, valid_ids, texts = [], [], []
        for row, (raw_id, raw_text) in enumerate(zip(ids, table.column(records.TEXT).to_pylist(), strict=True)):
            rid = records.record_id(raw_id)
            text = records.checked_text(raw_text) if rid is not None else None
            if isinstance(text, str):
                rows.append(row)
                valid_ids.append(rid)
                texts.append(text)
            else:
                yield self._dead_letter(INVALID, records.validate(row_record(table, row)))
        if not texts:
            return
        serving = self.slot.current  # one model for the whole table
        size = self.config.max_batch_size
        parts = [serve_or_bisect(serving, texts[i:i + size]) for i in range(0, len(texts), size)]
        self.inferences.inc(len(texts))
        probabilities, tokens, oov = (np.concatenate([part[k] for part in parts]) for k in range(3))
        failed = {start * size + row: detail for start, part in enumerate(parts) for row, detail in part[3].items()}
        labelled = tokens > 0
        labelled[list(failed)] = False
        for i in np.flatnonzero(~labelled):  # empty after standardisation, or the model failed on it alone
            key, text = records.validate(row_record(table, rows[i]))
            _, letter = verdict(key, text, InferenceError(failed[i]) if i in failed else None)
            yield self._dead_letter(UNCLASSIFIED, letter)
        if not labelled.any():
            return
        outputs = prediction.BatchOutputs.of(
            probabilities[labelled], serving.labels, self.config.top_k, self.config.review_threshold,
            tokens[labelled], oov[labelled], serving.version)
        chosen = np.asarray(rows)[labelled]
        predicted = prediction.table_of(outputs, [valid_ids[i] for i in np.flatnonzero(labelled)],
                                        table.take(pa.array(chosen)), self.schema)
        self.classified.inc(predicted.num_rows)
        self.needs_review.inc(int(np.count_nonzero(outputs.top_probabilities[:, 0] < outputs.review_threshold)))
        yield predicted

    @staticmethod
    def _dead_letter(part: str, letter: dict) -> beam.pvalue.TaggedOutput:
        count_dead_letter(letter)
        return beam.pvalue.TaggedOutput(part, letter)


class ClassifyTables(beam.PTransform):
    """Input tables in; `{"predictions": tables, "Invalid": letters, "Unclassified": letters}` out."""

    def __init__(self, config: WorkerConfig, schema: pa.Schema):
        super().__init__()
        self.config, self.schema = config, schema

    def expand(self, tables):
        results = tables | "ClassifyTable" >> beam.ParDo(ClassifyTable(self.config, self.schema)).with_outputs(
            *DEAD_LETTER_PARTS, main=PREDICTIONS)
        return {PREDICTIONS: results[PREDICTIONS], **{part: results[part] for part in DEAD_LETTER_PARTS}}
