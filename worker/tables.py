"""ClassifyTables: the nightly job's edge of the classification core, an Arrow table at a time.

A whole table of rows travels as one element, from the reader to the writer: per
element Beam's bookkeeping (a DoFn hop, a windowed value, a metrics update) costs
microseconds, and a record per row paid it half a dozen times, a visible share of the
model's own time (benchmarks/RESULTS.md, the batch-size rounds). Validation is one loop
over two columns with the one rule (`records.check`); the valid rows of a bundle's
tables fill batches of `max_batch_size`, which RunInference serves through the one
handler and core (`worker.core`); predictions come out as Arrow tables.
"""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
import pyarrow as pa
from apache_beam.ml.inference.base import RunInference
from apache_beam.transforms.window import GlobalWindows

from worker import prediction, records
from worker.core import Rows
from worker.defaults import METRICS_NAMESPACE
from worker.handler import ComplaintModelHandler
from worker.transform import (
    INVALID,
    PREDICTIONS,
    SERVED,
    UNCLASSIFIED,
    WORD_COUNTS,
    SplitClassified,
    WorkerConfig,
    count_dead_letter,
)


def row_record(table: pa.Table, row: int) -> dict:
    """One input row as a record: `{id, text, kept…}` (a dead letter's payload)."""
    return table.slice(row, 1).to_pylist()[0]


class BatchValidRows(beam.DoFn):
    """Input tables (`id`, `text`, kept columns) → batches of valid rows (`Rows`), and the invalid rows' letters.

    Valid rows wait until a full batch (`max_batch_size`) has gathered, across the
    tables of a bundle, and the rest is batched when the bundle ends: only the
    bundle's last batch is padded up to a compiled size. (A batch per table ended a
    10,000-row row group in a batch of 784 padded to 1,024.)
    """

    def __init__(self, max_batch_size: int, schema: pa.Schema):
        self.max_batch_size = max_batch_size
        self.schema = schema  # of the predictions: the kept columns are cast to its types here

    def start_bundle(self):
        self.waiting: list[Rows] = []
        self.waiting_rows = 0

    def process(self, table: pa.Table) -> Iterator:
        ids, texts, valid = [], [], []
        raw_ids, raw_texts = table.column(records.ID).to_pylist(), table.column(records.TEXT).to_pylist()
        for row, (raw_id, raw_text) in enumerate(zip(raw_ids, raw_texts, strict=True)):
            checked = records.check(raw_id, raw_text)
            if len(checked) == 2:
                valid.append(row)
                ids.append(checked[0])
                texts.append(checked[1])
            else:
                letter = records.refused(row_record(table, row), checked)
                count_dead_letter(letter)
                yield beam.pvalue.TaggedOutput(INVALID, letter)
        if valid:
            kept = prediction.kept_of(table, self.schema).take(pa.array(valid, pa.int64()))
            self.waiting.append(Rows(ids, texts, kept))
            self.waiting_rows += len(valid)
        while self.waiting_rows >= self.max_batch_size:
            yield self._batch(self.max_batch_size)

    def finish_bundle(self):
        if self.waiting_rows:
            yield GlobalWindows.windowed_value_at_end_of_window(self._batch(self.waiting_rows))

    def _batch(self, size: int) -> Rows:
        """The first `size` waiting rows as one batch."""
        parts = []
        while size:
            first = self.waiting[0]
            if len(first) <= size:
                parts.append(self.waiting.pop(0))
            else:
                parts.append(Rows(first.ids[:size], first.texts[:size], first.kept.slice(0, size)))
                self.waiting[0] = Rows(first.ids[size:], first.texts[size:], first.kept.slice(size))
            size -= len(parts[-1])
            self.waiting_rows -= len(parts[-1])
        return Rows.join(parts)


class ClassifyTables(beam.PTransform):
    """Input tables in; `{"predictions": tables, "Invalid": letters, "Unclassified": letters,
    "word_counts": per-batch sparse word counts, "served": per-batch (precision choice, rows)}` out."""

    def __init__(self, config: WorkerConfig, schema: pa.Schema):
        super().__init__()
        self.config, self.schema = config, schema

    def expand(self, tables):
        batched = tables | "BatchValidRows" >> beam.ParDo(
            BatchValidRows(self.config.max_batch_size, self.schema)).with_outputs(INVALID, main="rows")
        handler = ComplaintModelHandler(self.config, schema=self.schema, word_counts=True)
        classified = batched.rows | "RunInference" >> RunInference(handler, metrics_namespace=METRICS_NAMESPACE)
        split = classified | "SplitClassified" >> beam.ParDo(SplitClassified(served=True)).with_outputs(
            UNCLASSIFIED, WORD_COUNTS, SERVED, main=PREDICTIONS)
        return {PREDICTIONS: split[PREDICTIONS], WORD_COUNTS: split[WORD_COUNTS], SERVED: split[SERVED],
                INVALID: batched[INVALID], UNCLASSIFIED: split[UNCLASSIFIED]}

