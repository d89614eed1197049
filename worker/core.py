"""The one classification core: a batch of valid rows in, a prediction table and its dead letters out.

Both jobs, `complaints predict`, the web page and `compare` classify through
`classify`, behind the one model handler (`worker.handler.ComplaintModelHandler`),
so a text gets one verdict everywhere: one validity rule (`records.check`, applied
by each job's edge before the batch forms), one bisection of a failing batch, one
decoding of the model's outputs (`prediction.BatchOutputs`) and one prediction
table (`prediction.table_of`). What travels beside a row is an Arrow table in both
jobs: the nightly job's kept columns, or the live record's fields as the columns of
`worker.record_columns`, which only the Pub/Sub edge turns back into records.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import tensorflow as tf

from model import explain
from worker import prediction, record_columns, records

if TYPE_CHECKING:
    from model.serving import ServingModel

@dataclass
class Rows:
    """A batch of rows that passed `records.check`, formed by the job (RunInference's `with_no_batching`).

    `len()` is its row count, so RunInference's metrics (`num_inferences`,
    `inference_request_batch_size`) count rows, not batches.
    """

    ids: list[str]
    texts: list[str]
    kept: pa.Table  # per row, what passes through: kept columns, or a record's (`worker.record_columns`)
    of_records: bool = False  # `kept` holds `record_columns.COLUMNS`

    def __len__(self) -> int:
        return len(self.ids)

    def kept_row(self, row: int) -> dict:
        """What passed through beside one row, as its input had it (a dead letter's payload)."""
        if not self.kept.num_columns:  # with no kept column, Arrow keeps no rows either: nothing to pass on
            return {}
        kept = self.kept.slice(row, 1).to_pylist()[0]
        return record_columns.record_of(kept) if self.of_records else kept

    @classmethod
    def join(cls, parts: Sequence[Rows]) -> Rows:
        """One batch of several (the nightly job fills a batch across the tables of a bundle)."""
        if len(parts) == 1:
            return parts[0]
        return cls([i for p in parts for i in p.ids], [t for p in parts for t in p.texts],
                   pa.concat_tables([p.kept for p in parts]), parts[0].of_records)


@dataclass(frozen=True)
class Decoding:
    """How a batch's outputs are shaped: the settings every job and `predict` share."""

    top_k: int
    review_threshold: float
    max_batch_size: int  # rows per call of the model (the compiled sizes are padded up to)
    schema: pa.Schema  # of the prediction table: `prediction.schema(kept columns)`
    word_counts: bool = False  # also count each word id (the nightly drift check's word signal)
    explain: int = 0  # words per explanation (model.explain), when the schema has the field; 0: none
    explain_all: bool = False  # every row explained, not only those that need review

    def explained(self, needs_review: np.ndarray) -> np.ndarray:
        """The rows (of the labelled ones) to explain."""
        if not self.explain or "explanation" not in self.schema.names:
            return np.zeros(0, np.int64)
        return np.arange(len(needs_review)) if self.explain_all else np.flatnonzero(needs_review)


@dataclass
class Classified:
    """What the core made of a batch. `predicted` and `dead_rows` are row numbers in the batch."""

    predictions: pa.Table  # the prediction record's fields, then the kept columns the schema names
    predicted: np.ndarray
    dead_letters: list[dict]
    dead_rows: list[int]
    word_counts: tuple[np.ndarray, np.ndarray] | None  # (word ids, counts) of the predicted texts
    probabilities: np.ndarray | None = None  # every class's, per predicted row (`evaluate` scores them)
    precision: dict | None = None  # how the serving model's precision was chosen (`ModelSlot`): it labelled these


def classify(serving: ServingModel, rows: Rows, decoding: Decoding) -> Classified:
    """Predictions for the rows the model labels; a dead letter for each it cannot (empty, or it failed)."""
    size = decoding.max_batch_size
    served = [serve_or_bisect(serving, rows.texts[i:i + size], decoding.word_counts)
              for i in range(0, len(rows), size)]
    width = len(serving.labels)
    probabilities, tokens, oov = (
        np.concatenate([batch[k] for batch in served]) if served else empty
        for k, empty in enumerate((np.zeros((0, width), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64))))
    failed = {n * size + i: detail for n, batch in enumerate(served) for i, detail in batch[3].items()}
    labelled = tokens > 0
    labelled[list(failed)] = False
    dead_rows = np.flatnonzero(~labelled).tolist()
    letters = [_dead_letter(rows, row, failed.get(row)) for row in dead_rows]
    chosen = np.flatnonzero(labelled)
    texts = [rows.texts[i] for i in chosen]
    labelled_probabilities = probabilities[chosen]
    outputs = prediction.BatchOutputs.of(labelled_probabilities, serving.labels, decoding.top_k,
                                         decoding.review_threshold, tokens[chosen], oov[chosen], serving.version, texts)
    if "explanation" in decoding.schema.names:
        outputs = dataclasses.replace(outputs, explanations=_explanations(serving, texts, outputs, decoding))
    kept = rows.kept.take(pa.array(chosen, pa.int64())) if rows.kept.num_columns else rows.kept
    table = prediction.table_of(outputs, [rows.ids[i] for i in chosen], kept, decoding.schema)
    words = None
    if decoding.word_counts and texts:  # counted while serving, unless a batch had to be bisected
        histograms = [batch[4] for batch in served]
        words = _sparse(sum(histograms) if all(h is not None for h in histograms) else serving.word_counts(texts))
    return Classified(table, chosen, letters, dead_rows, words, labelled_probabilities, serving.choice)


def _explanations(serving: ServingModel, texts: list[str], outputs: prediction.BatchOutputs,
                  decoding: Decoding) -> list:
    """The explanation of each row `decoding` asks for (None for the others): a row is explained towards the
    label it was given."""
    rows = decoding.explained(outputs.needs_review)
    found: list = [None] * len(texts)
    if len(rows):
        for row, words in zip(rows.tolist(), explain.explain(serving, [texts[r] for r in rows],
                                                              outputs.top_ids[rows, 0], decoding.explain), strict=True):
            found[row] = words
    return found


def _dead_letter(rows: Rows, row: int, failure: str | None) -> dict:
    reason, detail = (records.EMPTY_TEXT, "nothing is left after standardisation") if failure is None \
        else (records.INFERENCE_FAILED, failure)
    payload = {**rows.kept_row(row), records.ID: rows.ids[row], records.TEXT: rows.texts[row]}
    return records.dead_letter(rows.ids[row], reason, detail, payload)


def _sparse(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids = np.flatnonzero(counts)
    return ids.astype(np.int32), counts[ids]


def serve_or_bisect(model: ServingModel, texts: Sequence[str], count_words: bool = False) -> tuple[
        np.ndarray, np.ndarray, np.ndarray, dict[int, str], np.ndarray | None]:
    """(probabilities, tokens, out-of-vocabulary tokens, errors, word counts) for a batch that one bad text must
    not fail.

    A failing batch is bisected until the culprit stands alone; its row gets zeros
    (no tokens) and its error, by row number, in `errors`. The batch's word counts
    (`count_words`) come with a batch served whole, else None: the caller counts the
    texts it labelled.
    """
    try:
        if count_words:
            probabilities, tokens, oov, words = model.counting_words(texts)
            return probabilities, tokens, oov, {}, words
        probabilities, tokens, oov = model(texts)
        return probabilities, tokens, oov, {}, None
    except (tf.errors.OpError, ValueError, UnicodeError) as exc:
        if len(texts) == 1:
            none = np.zeros(1, np.int64)
            return np.zeros((1, len(model.labels)), np.float32), none, none, {0: _first_line(exc)}, None
        middle = len(texts) // 2
        left, right = serve_or_bisect(model, texts[:middle]), serve_or_bisect(model, texts[middle:])
        errors = {**left[3], **{middle + row: detail for row, detail in right[3].items()}}
        return (*(np.concatenate([a, b]) for a, b in zip(left[:3], right[:3], strict=True)), errors, None)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:500]
