"""The BiLSTM's numeric core, compiled by XLA, behind its string vectoriser.

XLA cannot compile string ops, so the whole end-to-end model runs in graph mode.
But only the vectoriser handles strings: everything after it (token ids →
embedding → BiLSTM → dense → pool → logits → temperature → softmax) is numeric, and
XLA runs it faster than graph mode (benchmarks/RESULTS.md). The artifact stays the end-to-end Keras
model; the split is derived here, at load time, from its layers.

XLA compiles one program per input shape. The sequence length is fixed, so only the
batch size varies: batches are padded up to a few fixed sizes (`buckets`), and each
size is compiled once per process, when the model is loaded (`ServingModel.warm_up`).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf


@dataclass(frozen=True)
class Split:
    vectorizer: keras.layers.TextVectorization
    core: keras.Model  # token ids [batch, sequence length] → probabilities
    standardized: keras.layers.TextVectorization  # the same ids from texts already standardised (`without_standardize`)


def without_standardize(vectorizer: keras.layers.TextVectorization) -> keras.layers.TextVectorization:
    """The vectoriser's split, vocabulary and shape without its standardisation: given texts its own
    standardisation has already made, it gives the ids the vectoriser gives the raw texts
    (tests/test_compiled.py checks this on any Unicode), so the serving function can standardise each text
    once for the vectoriser and the token counter both."""
    config = vectorizer.get_config()
    return keras.layers.TextVectorization(
        max_tokens=config["max_tokens"], standardize=None, split=config["split"], ngrams=config["ngrams"],
        output_mode="int", output_sequence_length=config["output_sequence_length"],
        vocabulary=vectorizer.get_vocabulary(), name=f"{vectorizer.name}_standardized")


def words_read(model: keras.Model) -> int | None:
    """How many words of a text the model reads: a sequence model's window (its one vectoriser's output length),
    or None where it reads every word (the linear model's TF-IDF n-grams, or a shape not known here)."""
    vectorizers, models = [], [model]
    while models:
        for layer in models.pop().layers:
            if isinstance(layer, keras.layers.TextVectorization):
                vectorizers.append(layer.get_config())
            elif isinstance(layer, keras.Model):
                models.append(layer)
    if len(vectorizers) != 1 or vectorizers[0].get("output_mode") != "int":
        return None
    return vectorizers[0].get("output_sequence_length") or None


def split(model: keras.Model) -> Split | str:
    """The vectoriser and the numeric core of an end-to-end BiLSTM artifact, or why it cannot be split.

    Expected shape (`model.architecture.end_to_end` over `build`): text → the
    classifier (text → TextVectorization → numeric layers → logits) → [temperature]
    → softmax. Anything else (the linear model's TF-IDF path, an unknown
    architecture) is served whole, in graph mode.
    """
    layers = model.layers
    inner = [layer for layer in layers if isinstance(layer, keras.Model)]
    if len(inner) != 1 or not isinstance(layers[0], keras.layers.InputLayer) or layers[1] is not inner[0]:
        return "it is not an end-to-end wrapper around one classifier"
    after = layers[2:]
    if not all(isinstance(layer, keras.layers.Rescaling | keras.layers.Softmax) for layer in after):
        return "layers after the classifier are not temperature and softmax"
    classifier = inner[0]
    vectorizers = [layer for layer in classifier.layers if isinstance(layer, keras.layers.TextVectorization)]
    if len(vectorizers) != 1 or classifier.layers.index(vectorizers[0]) != 1:
        return "its classifier does not start with exactly one TextVectorization (e.g. the linear model)"
    vectorizer = vectorizers[0]
    if vectorizer.get_config().get("output_mode") != "int" or not vectorizer.get_config().get(
            "output_sequence_length"):
        return "its vectoriser does not output fixed-length token ids"
    try:  # the vectoriser's output as the next layer takes it: a precision's copy shares the vectoriser (two nodes)
        following = classifier.layers[classifier.layers.index(vectorizer) + 1]
        numeric = keras.Model(following.input, classifier.output)
    except (ValueError, TypeError, IndexError, AttributeError) as exc:
        return f"its classifier does not split after the vectoriser ({exc})"
    ids = keras.Input(shape=(vectorizer.get_config()["output_sequence_length"],), dtype=following.input.dtype)
    x = numeric(ids)
    for layer in after:
        x = layer(x)
    return Split(vectorizer, keras.Model(ids, x, name="numeric_core"), without_standardize(vectorizer))


def buckets(min_batch_size: int, max_batch_size: int) -> tuple[int, ...]:
    """The padded batch sizes: powers of two from the minimum batch size up to the maximum, and the maximum.

    The nightly job batches at its maximum only (min = max), so it compiles one
    program; the live job's batches are whatever a poll brings, so it has a few.
    """
    sizes, size = set(), 1
    while size < max_batch_size:
        if size >= min_batch_size:
            sizes.add(size)
        size *= 2
    return tuple(sorted(sizes | {max_batch_size}))


def padded_size(rows: tf.Tensor, sizes: tuple[int, ...]) -> tf.Tensor:
    """The smallest of `sizes` that holds `rows`; above the largest, a multiple of it."""
    table = tf.constant(sizes, tf.int32)
    largest = sizes[-1]
    fits = tf.gather(table, tf.minimum(tf.searchsorted(table, [rows])[0], len(sizes) - 1))
    return tf.where(rows > largest, (rows + largest - 1) // largest * largest, fits)


def probabilities_fn(parts: Split, sizes: tuple[int, ...]):
    """A graph-mode function, standardised strings → probabilities, whose numeric part is one XLA program per
    padded size (the caller standardises: `ServingModel` does it once for this and its token counts)."""
    core = parts.core

    @tf.function(jit_compile=True, reduce_retracing=True)
    def numeric(ids: tf.Tensor) -> tf.Tensor:
        return core(ids, training=False)

    def probabilities(standardized: tf.Tensor) -> tf.Tensor:
        ids = parts.standardized(standardized)
        rows = tf.shape(ids)[0]
        padded = tf.pad(ids, [[0, padded_size(rows, sizes) - rows], [0, 0]])
        return numeric(padded)[:rows]

    return probabilities
