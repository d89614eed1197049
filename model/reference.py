"""The held-out split as the model saw it, one compact row per complaint: the drift check's reference.

`reference.parquet` in the model directory holds, for every row of the test split,
what the exported model predicted (label id, confidence), its length and
out-of-vocabulary counts, and its words as sorted vocabulary ids: counts only, no
text, no word order. From it the nightly job draws samples of tonight's size to learn
how far a night of unchanged data falls from the reference by chance alone
(`pipelines/nightly/drift.py`); the figures for a sample and for a night are computed here,
once, so both count the same way.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from scipy import sparse

from model import baseline
from model.errors import UserError

REFERENCE_FILE = "reference.parquet"
MAX_REFERENCE_BYTES = 256 << 20
MIN_WORD_COUNT = 5  # words seen fewer times in the reference share one bin of the word signal
SCHEMA = pa.schema([
    ("label", pa.int32()), ("confidence", pa.float32()), ("tokens", pa.int32()), ("oov_tokens", pa.int32()),
    ("word_ids", pa.list_(pa.int32())),
])


@dataclass(frozen=True)
class Figures:
    """What a set of predictions looks like: the distributions and shares the signals compare."""

    labels: np.ndarray  # share per label id
    confidence: np.ndarray  # share per confidence bin
    length: np.ndarray  # share per length bin
    words: np.ndarray | None  # share per word id (0: out of vocabulary); None where not counted
    mean_confidence: float
    needs_review_share: float
    oov_share: float
    rows: int


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else np.zeros_like(counts, dtype=np.float64)


@dataclass(frozen=True)
class Reference:
    label: np.ndarray
    confidence: np.ndarray
    tokens: np.ndarray
    oov: np.ndarray
    words: sparse.csr_matrix  # rows × word bins, each row's word counts (`pooled_bins`)
    n_labels: int
    word_bins: np.ndarray  # word id → bin

    @property
    def rows(self) -> int:
        return len(self.label)

    def figures(self, weights: np.ndarray | None, review_threshold: float) -> Figures:
        """The figures of the rows drawn `weights` times each (all rows once when None)."""
        w = np.ones(self.rows) if weights is None else np.asarray(weights, dtype=np.float64)
        n = w.sum()
        tokens = float(w @ self.tokens)
        return Figures(
            labels=_shares(np.bincount(self.label, w, self.n_labels)),
            confidence=_shares(np.bincount(baseline.confidence_bins(self.confidence), w, baseline.CONFIDENCE_BINS)),
            length=_shares(np.bincount(baseline.length_bins(self.tokens), w, len(baseline.LENGTH_EDGES))),
            words=_shares(np.asarray(self.words.T @ w).ravel()),
            mean_confidence=float(w @ self.confidence / n),
            needs_review_share=float(w @ (self.confidence < review_threshold) / n),
            oov_share=float(w @ self.oov / tokens) if tokens else 0.0,
            rows=round(float(n)),
        )


def table_of(probabilities: np.ndarray, tokens: np.ndarray, oov: np.ndarray, word_ids: list[np.ndarray]) -> pa.Table:
    return pa.table({
        "label": pa.array(probabilities.argmax(axis=1), pa.int32()),
        "confidence": pa.array(probabilities.max(axis=1), pa.float32()),
        "tokens": pa.array(tokens, pa.int32()),
        "oov_tokens": pa.array(oov, pa.int32()),
        "word_ids": pa.array([np.sort(ids).astype(np.int32) for ids in word_ids], pa.list_(pa.int32())),
    }, schema=SCHEMA)


def to_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def read(directory: str, n_labels: int, vocabulary_size: int) -> Reference | None:
    """The model directory's reference, or None for a model trained before there was one."""
    from model import files, safety

    path = files.join(directory, REFERENCE_FILE)
    if not files.exists(path):
        return None
    safety.check_size(path, MAX_REFERENCE_BYTES)
    try:
        table = pq.read_table(io.BytesIO(files.read_bytes(path)))
        table = table.select(SCHEMA.names).cast(SCHEMA)
    except (pa.ArrowException, KeyError, ValueError) as exc:
        raise UserError(f"model directory {directory}: {REFERENCE_FILE} is not a drift reference ({exc}); "
                        "retrain, or delete the file to run without size-aware drift thresholds") from None
    problem = _first_problem(table)
    if problem:
        raise UserError(f"model directory {directory}: {REFERENCE_FILE} {problem}; retrain, or delete the file to "
                        "run without size-aware drift thresholds")
    label = table.column("label").to_numpy()
    words = table.column("word_ids").combine_chunks()
    ids = np.array(words.values.to_numpy(zero_copy_only=False), dtype=np.int32)
    if len(label) == 0 or label.min() < 0 or label.max() >= n_labels or (len(ids) and (
            ids.min() < 0 or ids.max() >= vocabulary_size)):
        raise UserError(f"model directory {directory}: {REFERENCE_FILE} does not match the model's labels or "
                        "vocabulary; retrain, or delete the file to run without size-aware drift thresholds")
    offsets = np.array(words.offsets.to_numpy(), dtype=np.int64)
    matrix = sparse.csr_matrix((np.ones(len(ids)), ids, offsets), shape=(len(label), vocabulary_size))
    matrix.sum_duplicates()
    word_bins = pooled_bins(np.asarray(matrix.sum(axis=0)).ravel())
    pool = sparse.csr_matrix((np.ones(vocabulary_size), (np.arange(vocabulary_size), word_bins)),
                             shape=(vocabulary_size, word_bins.max() + 1))
    return Reference(label=label, confidence=table.column("confidence").to_numpy().astype(np.float64),
                     tokens=table.column("tokens").to_numpy(), oov=table.column("oov_tokens").to_numpy(),
                     words=(matrix @ pool).tocsr(), n_labels=n_labels, word_bins=word_bins)


def _first_problem(table: pa.Table) -> str | None:
    """What the drift check would trip over after a whole night was labelled: nulls, NaN, impossible values."""
    for name in table.column_names:
        column = table.column(name)
        if column.null_count:
            return f"has {column.null_count} null {name!r} values"
        if pa.types.is_list(column.type) and pc.list_flatten(column).null_count:
            return f"has null entries in {name!r}"
    confidence = table.column("confidence").to_numpy()
    if not np.all(np.isfinite(confidence)) or confidence.min(initial=0) < 0 or confidence.max(initial=0) > 1:
        return "has confidences that are not numbers between 0 and 1"
    for name in ("tokens", "oov_tokens"):
        if table.column(name).to_numpy().min(initial=0) < 0:
            return f"has negative {name!r}"
    return None


def pooled_bins(reference_counts: np.ndarray) -> np.ndarray:
    """Each word id's bin for the word signal: its own for a word seen MIN_WORD_COUNT times in the reference,
    one shared bin for the rest of the vocabulary, and bin 0 for out-of-vocabulary words.

    Rare words are pooled because a resampled night can only hold words the reference
    rows hold, while a real night meets the vocabulary's long tail: counted one by one,
    those would look like drift on every night.
    """
    frequent = reference_counts >= MIN_WORD_COUNT
    frequent[0] = False
    found = np.ones(len(reference_counts), dtype=np.int64)  # the pooled rest of the vocabulary
    found[0] = 0
    found[frequent] = np.arange(2, 2 + frequent.sum())
    return found


def compute_baseline(train_label_ids: np.ndarray, labels: list[str], test_probabilities: np.ndarray,
            test_texts: Sequence[str], model, standardize,
            review_threshold: float = baseline.DEFAULT_REVIEW_THRESHOLD) -> tuple[dict, pa.Table]:
    """The baseline section of metadata.json, and the per-row reference (this module) that goes beside it.

    `test_probabilities` are the exported model's own on the test split: tonight's
    predictions are compared with what this model predicts on held-out data, never
    with true labels, which a model that favours some classes would never match.
    """
    import tensorflow as tf

    train_counts = np.bincount(train_label_ids, minlength=len(labels))
    predicted = np.bincount(test_probabilities.argmax(axis=1), minlength=len(labels))
    confidences = test_probabilities.max(axis=1)
    counter = baseline.TokenCounter(model, standardize)
    texts = tf.constant(list(test_texts), tf.string)
    tokens, oov = (t.numpy() for t in counter(texts))
    word_ids = counter.ids(texts)
    rows = np.split(word_ids.flat_values.numpy(), word_ids.row_splits.numpy()[1:-1])
    section = {
        "label_shares": dict(zip(labels, baseline.shares(train_counts.tolist()), strict=True)),
        "label_shares_of": "training split, true labels (for information; drift compares predicted shares)",
        "predicted_label_shares": dict(zip(labels, baseline.shares(predicted.tolist()), strict=True)),
        "predicted_label_shares_of": "test split, as the exported model predicts it",
        "confidence_histogram": baseline.shares(np.bincount(baseline.confidence_bins(confidences),
                                                        minlength=baseline.CONFIDENCE_BINS).tolist()),
        "mean_confidence": float(confidences.mean()),
        "needs_review_share": float((confidences < review_threshold).mean()),
        "review_threshold": review_threshold,
        "oov_share": float(oov.sum() / max(tokens.sum(), 1)),
        "length_histogram": baseline.shares(np.bincount(baseline.length_bins(tokens),
                                                    minlength=len(baseline.LENGTH_EDGES)).tolist()),
        "text_figures_of": "test split",
        "rows": {"training": len(train_label_ids), "test": len(confidences)},
        "reference": {"file": REFERENCE_FILE, "rows": len(confidences), "vocabulary_size": counter.size,
                      "holds": "per test row: predicted label id, confidence, token and out-of-vocabulary counts, "
                               "sorted word ids; no text"},
    }
    return section, table_of(test_probabilities, tokens, oov, rows)
