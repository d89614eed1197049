"""What the training data looked like, recorded in metadata.json so a run can tell when today differs.

The nightly job compares its outputs against these figures (pipelines/nightly/drift.py). The
binning is defined here once, so training and every run count the same way:
confidences in ten equal bins over [0, 1], text lengths (tokens after standardisation)
in the bins of LENGTH_EDGES, and out-of-vocabulary tokens against the model's own word
vocabulary (the whitespace-split TextVectorization layers: the BiLSTM's, or the linear
model's word n-grams' single words).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from model.predict import DEFAULT_REVIEW_THRESHOLD  # noqa: F401 (drift's default, read as baseline.DEFAULT_REVIEW_THRESHOLD)

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

    def ids(self, texts, standardized: bool = False):
        """A string tensor in (`standardized`: already through the model's standardisation); each text's word
        ids as a ragged int64 tensor."""
        import tensorflow as tf

        words = tf.strings.split(texts if standardized else self._standardize(texts))
        return tf.ragged.map_flat_values(self._ids.lookup, words)

    def __call__(self, texts, standardized: bool = False):
        """A string tensor in; (tokens, out-of-vocabulary tokens) per text as int64 tensors."""
        return self._counts(self.ids(texts, standardized))

    def histogram(self, texts):
        """A string tensor in; how often each word id occurs in all of them (`size` int64 counts)."""
        return self._histogram(self.ids(texts))

    def counted(self, texts, standardized: bool = False):
        """`self(texts)` and `self.histogram(texts)` from one standardisation: on long texts each pass costs
        about as much as the vectoriser's."""
        ids = self.ids(texts, standardized)
        return (*self._counts(ids), self._histogram(ids))

    @staticmethod
    def _counts(ids):
        import tensorflow as tf

        counts = ids.row_lengths()
        return counts, counts - tf.reduce_sum(tf.ragged.map_flat_values(tf.sign, ids), axis=1)

    def _histogram(self, ids):
        import tensorflow as tf

        flat = tf.cast(ids.flat_values, tf.int32)
        return tf.math.bincount(flat, minlength=self.size, maxlength=self.size, dtype=tf.int64)
