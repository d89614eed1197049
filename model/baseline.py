"""What the training data looked like, recorded in metadata.json so a run can tell when today differs.

The nightly job compares its outputs against these figures (pipelines/drift.py). The
binning is defined here once, so training and every run count the same way:
confidences in ten equal bins over [0, 1], text lengths (tokens after standardisation)
in the bins of LENGTH_EDGES, and out-of-vocabulary tokens against the model's own word
vocabulary (the whitespace-split TextVectorization layers: the BiLSTM's, or the linear
model's word n-grams' single words).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from model.predict import DEFAULT_REVIEW_THRESHOLD

CONFIDENCE_BINS = 10
LENGTH_EDGES = (0, 5, 10, 20, 40, 80, 160)  # a text of n tokens falls in the last edge ≤ n; the last bin is open


def confidence_bins(confidences: np.ndarray) -> np.ndarray:
    """Each confidence's bin of CONFIDENCE_BINS equal bins; computed in float64 wherever it is (training, jobs)."""
    scaled = np.asarray(confidences, dtype=np.float64) * CONFIDENCE_BINS
    return np.minimum(scaled.astype(np.int64), CONFIDENCE_BINS - 1)


def length_bins(tokens: np.ndarray) -> np.ndarray:
    """Each token count's bin: the last edge of LENGTH_EDGES at or below it."""
    return np.searchsorted(LENGTH_EDGES, np.asarray(tokens), side="right") - 1


def shares(counts: Sequence[float]) -> list[float]:
    total = float(sum(counts))
    return [c / total for c in counts] if total else [0.0] * len(counts)


def word_vocabulary(model) -> list[str]:
    """The single words the model knows: its whitespace-split vectorisers' vocabularies."""
    import keras

    words: set[str] = set()
    for layer in _layers(model):
        if isinstance(layer, keras.layers.TextVectorization) and layer.get_config().get("split") == "whitespace":
            words.update(w for w in layer.get_vocabulary() if w and w != "[UNK]" and " " not in w)
    return sorted(words)


def _layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        yield from _layers(layer)


class TokenCounter:
    """Words per text after the model's own standardisation, and which of its word vocabulary they are.

    One counter for the training baseline and the worker's serving function (called
    inside its tf.function), so both count the same way. A word's id is its place in
    `word_vocabulary(model)` plus one; id 0 is every out-of-vocabulary word.
    """

    def __init__(self, model, standardize):
        import tensorflow as tf

        words = word_vocabulary(model)
        self.size = len(words) + 1
        keys = tf.constant(words or [""])
        self._ids = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(keys, tf.range(1, tf.size(keys, tf.int64) + 1)), default_value=0)
        self._standardize = standardize

    def ids(self, texts):
        """A string tensor in; each text's word ids as a ragged int64 tensor."""
        import tensorflow as tf

        return tf.ragged.map_flat_values(self._ids.lookup, tf.strings.split(self._standardize(texts)))

    def __call__(self, texts):
        """A string tensor in; (tokens, out-of-vocabulary tokens) per text as int64 tensors."""
        import tensorflow as tf

        ids = self.ids(texts)
        counts = ids.row_lengths()
        return counts, counts - tf.reduce_sum(tf.ragged.map_flat_values(tf.sign, ids), axis=1)

    def histogram(self, texts):
        """A string tensor in; how often each word id occurs in all of them (`size` int64 counts)."""
        return self._histogram(self.ids(texts))

    def counted(self, texts):
        """`self(texts)` and `self.histogram(texts)` from one standardisation: on long texts each pass costs
        about as much as the vectoriser's."""
        import tensorflow as tf

        ids = self.ids(texts)
        counts = ids.row_lengths()
        return counts, counts - tf.reduce_sum(tf.ragged.map_flat_values(tf.sign, ids), axis=1), self._histogram(ids)

    def _histogram(self, ids):
        import tensorflow as tf

        flat = tf.cast(ids.flat_values, tf.int32)
        return tf.math.bincount(flat, minlength=self.size, maxlength=self.size, dtype=tf.int64)


def compute(train_label_ids: np.ndarray, labels: list[str], test_probabilities: np.ndarray,
            test_texts: Sequence[str], model, standardize,
            review_threshold: float = DEFAULT_REVIEW_THRESHOLD) -> tuple[dict, pa.Table]:
    """The baseline section of metadata.json, and the per-row reference (`model/reference.py`).

    `test_probabilities` are the exported model's own on the test split: tonight's
    predictions are compared with what this model predicts on held-out data, never
    with true labels, which a model that favours some classes would never match.
    """
    import tensorflow as tf

    from model import reference

    train_counts = np.bincount(train_label_ids, minlength=len(labels))
    predicted = np.bincount(test_probabilities.argmax(axis=1), minlength=len(labels))
    confidences = test_probabilities.max(axis=1)
    counter = TokenCounter(model, standardize)
    texts = tf.constant(list(test_texts), tf.string)
    tokens, oov = (t.numpy() for t in counter(texts))
    word_ids = counter.ids(texts)
    rows = np.split(word_ids.flat_values.numpy(), word_ids.row_splits.numpy()[1:-1])
    section = {
        "label_shares": dict(zip(labels, shares(train_counts.tolist()), strict=True)),
        "label_shares_of": "training split, true labels (for information; drift compares predicted shares)",
        "predicted_label_shares": dict(zip(labels, shares(predicted.tolist()), strict=True)),
        "predicted_label_shares_of": "test split, as the exported model predicts it",
        "confidence_histogram": shares(np.bincount(confidence_bins(confidences), minlength=CONFIDENCE_BINS).tolist()),
        "mean_confidence": float(confidences.mean()),
        "needs_review_share": float((confidences < review_threshold).mean()),
        "review_threshold": review_threshold,
        "oov_share": float(oov.sum() / max(tokens.sum(), 1)),
        "length_histogram": shares(np.bincount(length_bins(tokens), minlength=len(LENGTH_EDGES)).tolist()),
        "text_figures_of": "test split",
        "rows": {"training": len(train_label_ids), "test": len(confidences)},
        "reference": {"file": reference.REFERENCE_FILE, "rows": len(confidences), "vocabulary_size": counter.size,
                      "holds": "per test row: predicted label id, confidence, token and out-of-vocabulary counts, "
                               "sorted word ids; no text"},
    }
    return section, reference.table_of(test_probabilities, tokens, oov, rows)
