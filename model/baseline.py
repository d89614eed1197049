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
    """Words per text after the model's own standardisation, and how many its word vocabulary lacks.

    One counter for the training baseline and the worker's serving function (called
    inside its tf.function), so both count the same way.
    """

    def __init__(self, model, standardize):
        import tensorflow as tf

        words = word_vocabulary(model) or [""]
        self._known = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(words), tf.ones(len(words), tf.int64)), default_value=0)
        self._standardize = standardize

    def __call__(self, texts):
        """A string tensor in; (tokens, out-of-vocabulary tokens) per text as int64 tensors."""
        import tensorflow as tf

        tokens = tf.strings.split(self._standardize(texts))
        counts = tokens.row_lengths()
        return counts, counts - tf.reduce_sum(tf.ragged.map_flat_values(self._known.lookup, tokens), axis=1)


def compute(train_label_ids: np.ndarray, labels: list[str], test_probabilities: np.ndarray,
            test_texts: Sequence[str], model, standardize, review_threshold: float = DEFAULT_REVIEW_THRESHOLD) -> dict:
    """The baseline section of metadata.json."""
    train_counts = np.bincount(train_label_ids, minlength=len(labels))
    confidences = test_probabilities.max(axis=1)
    import tensorflow as tf

    tokens, oov = (t.numpy() for t in TokenCounter(model, standardize)(tf.constant(list(test_texts), tf.string)))
    return {
        "label_shares": dict(zip(labels, shares(train_counts.tolist()), strict=True)),
        "label_shares_of": "training split",
        "confidence_histogram": shares(np.bincount(confidence_bins(confidences), minlength=CONFIDENCE_BINS).tolist()),
        "mean_confidence": float(confidences.mean()),
        "needs_review_share": float((confidences < review_threshold).mean()),
        "review_threshold": review_threshold,
        "oov_share": float(oov.sum() / max(tokens.sum(), 1)),
        "length_histogram": shares(np.bincount(length_bins(tokens), minlength=len(LENGTH_EDGES)).tolist()),
        "text_figures_of": "test split",
        "rows": {"training": len(train_label_ids), "test": len(confidences)},
    }
