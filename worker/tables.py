"""ClassifyTables: the nightly job's classifier, an Arrow table of input rows at a time.

Same decisions as `ClassifyComplaints` (same validation helpers, same model handler
and serving function, same prediction fields), but a whole table of rows travels as
one element: validation is one loop over two columns, inference runs on the valid
texts in batches of `max_batch_size`, and the predictions come out as Arrow tables
built column by column. Per element, Beam's bookkeeping (a DoFn hop, a
windowed value, a metrics update) costs microseconds, and in the record path every review
paid it half a dozen times: a visible share of the model's own time (benchmarks/RESULTS.md,
the throughput rounds of issue #18).

Rows that cannot be classified are the rare case and stay records: dead letters,
built by the record path's own `records.validate` and `verdict`, so a row gets the
same letter either way (tests/test_tables.py compares the two paths).
"""

from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.transforms.window import GlobalWindows

from worker import prediction, records
from worker.defaults import METRICS_NAMESPACE
from worker.handler import InferenceError, ModelSlot, serve_or_bisect
from worker.transform import DEAD_LETTER_PARTS, PREDICTIONS, WorkerConfig, count_dead_letter, verdict

INVALID, UNCLASSIFIED = DEAD_LETTER_PARTS
WORD_COUNTS = "word_counts"  # per bundle: (word ids, counts) of the texts classified, for the drift check


def row_record(table: pa.Table, row: int) -> dict:
    """One input row as the record path's reader gave it: `{id, text, kept…}`."""
    return table.slice(row, 1).to_pylist()[0]


@dataclass
class Waiting:
    """A table's valid rows that wait for a batch; `start` of them have been classified."""

    table: pa.Table
    rows: list[int]
    ids: list[str]
    texts: list[str]
    start: int = 0


class ClassifyTable(beam.DoFn):
    """Input tables (`id`, `text`, kept columns) → prediction tables, and dead letters in two parts.

    Valid rows wait until a full batch (`max_batch_size`) has gathered, across the
    tables of a bundle, and the rest is classified when the bundle ends: only the
    bundle's last batch is padded up to a compiled size. (Per table, a 10,000-row
    row group ended in a batch of 784 padded to 1,024: 2.4% of the model's time
    spent on padding.)
    """

    def __init__(self, config: WorkerConfig, schema: pa.Schema):
        self.config, self.schema = config, schema

    def setup(self):
        self.handler = self.config.handler()
        self.slot: ModelSlot = self.handler.load_model()  # one ServingModel a process (worker.handler._SERVING)
        self.classified = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "classified")
        self.needs_review = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "needs_review")
        self.inferences = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "num_inferences")

    def start_bundle(self):
        self.waiting: list[Waiting] = []
        self.waiting_rows = 0
        self.word_counts: np.ndarray | None = None

    def process(self, table: pa.Table):
        valid = Waiting(table, [], [], [])
        ids = table.column(records.ID).to_pylist()
        for row, (raw_id, raw_text) in enumerate(zip(ids, table.column(records.TEXT).to_pylist(), strict=True)):
            rid = records.record_id(raw_id)
            text = records.checked_text(raw_text) if rid is not None else None
            if isinstance(text, str):
                valid.rows.append(row)
                valid.ids.append(rid)
                valid.texts.append(text)
            else:
                yield self._dead_letter(INVALID, records.validate(row_record(table, row)))
        if valid.texts:
            self.waiting.append(valid)
            self.waiting_rows += len(valid.texts)
        size = self.config.max_batch_size
        if self.waiting_rows >= size:
            yield from self._classify(self.waiting_rows // size * size)

    def finish_bundle(self):
        for output in [*self._classify(self.waiting_rows), *self._word_counts()]:
            if isinstance(output, beam.pvalue.TaggedOutput):
                yield beam.pvalue.TaggedOutput(output.tag, GlobalWindows.windowed_value_at_end_of_window(output.value))
            else:
                yield GlobalWindows.windowed_value_at_end_of_window(output)

    def _word_counts(self):
        """The bundle's word counts, sparse: one small element a bundle, not one a batch."""
        if self.word_counts is not None and self.word_counts.any():
            ids = np.flatnonzero(self.word_counts)
            yield beam.pvalue.TaggedOutput(WORD_COUNTS, (ids.astype(np.int32), self.word_counts[ids]))

    def _classify(self, count: int):
        """Classify the first `count` waiting rows, in batches: their dead letters, and one prediction table."""
        segments = []
        while count > 0:
            first = self.waiting[0]
            end = min(len(first.texts), first.start + count)
            segments.append((first, first.start, end))
            count -= end - first.start
            self.waiting_rows -= end - first.start
            first.start = end
            if end == len(first.texts):
                self.waiting.pop(0)
        if not segments:
            return
        texts = [text for waiting, lo, hi in segments for text in waiting.texts[lo:hi]]
        serving = self.slot.current  # one model for these batches
        size = self.config.max_batch_size
        served = [serve_or_bisect(serving, texts[i:i + size]) for i in range(0, len(texts), size)]
        self.inferences.inc(len(texts))
        counts = serving.word_counts(texts)
        self.word_counts = counts if self.word_counts is None or len(self.word_counts) != len(counts) \
            else self.word_counts + counts
        probabilities, tokens, oov = (np.concatenate([batch[k] for batch in served]) for k in range(3))
        failed = {n * size + i: detail for n, batch in enumerate(served) for i, detail in batch[3].items()}
        offset, predicted = 0, []
        for waiting, lo, hi in segments:
            at = slice(offset, offset + hi - lo)
            errors = {i - offset: detail for i, detail in failed.items() if at.start <= i < at.stop}
            for output in self._outputs(waiting, lo, (probabilities[at], tokens[at], oov[at], errors), serving):
                if isinstance(output, pa.Table):
                    predicted.append(output)
                else:
                    yield output
            offset = at.stop
        if predicted:
            yield pa.concat_tables(predicted)  # one row group in the output, whichever tables its rows came from

    def _outputs(self, waiting: Waiting, lo: int, inferred: tuple, serving):
        """Dead letters and the prediction table of one table's rows `lo…`, from their inference."""
        probabilities, tokens, oov, errors = inferred
        labelled = tokens > 0
        labelled[list(errors)] = False
        for i in np.flatnonzero(~labelled):  # empty after standardisation, or the model failed on it alone
            key, text = records.validate(row_record(waiting.table, waiting.rows[lo + i]))
            _, letter = verdict(key, text, InferenceError(errors[i]) if i in errors else None)
            yield self._dead_letter(UNCLASSIFIED, letter)
        if not labelled.any():
            return
        chosen = np.flatnonzero(labelled) + lo
        outputs = prediction.BatchOutputs.of(
            probabilities[labelled], serving.labels, self.config.top_k, self.config.review_threshold,
            tokens[labelled], oov[labelled], serving.version, [waiting.texts[i] for i in chosen])
        kept = waiting.table.drop_columns([records.ID, records.TEXT]).take(pa.array(np.asarray(waiting.rows)[chosen]))
        predicted = prediction.table_of(outputs, [waiting.ids[i] for i in chosen], kept, self.schema)
        self.classified.inc(predicted.num_rows)
        self.needs_review.inc(pc.sum(predicted.column("needs_review")).as_py() or 0)
        yield predicted

    @staticmethod
    def _dead_letter(part: str, letter: dict) -> beam.pvalue.TaggedOutput:
        count_dead_letter(letter)
        return beam.pvalue.TaggedOutput(part, letter)


class ClassifyTables(beam.PTransform):
    """Input tables in; `{"predictions": tables, "Invalid": letters, "Unclassified": letters,
    "word_counts": per-bundle sparse word counts}` out."""

    def __init__(self, config: WorkerConfig, schema: pa.Schema):
        super().__init__()
        self.config, self.schema = config, schema

    def expand(self, tables):
        results = tables | "ClassifyTable" >> beam.ParDo(ClassifyTable(self.config, self.schema)).with_outputs(
            *DEAD_LETTER_PARTS, WORD_COUNTS, main=PREDICTIONS)
        return {PREDICTIONS: results[PREDICTIONS], WORD_COUNTS: results[WORD_COUNTS],
                **{part: results[part] for part in DEAD_LETTER_PARTS}}
