"""The reference BiLSTM topic classifier, with sizes that tests can shrink.

`build` returns the *training* model (raw strings in, logits out). `end_to_end` wraps it
with a softmax, which is the model every later part serves: keeping logits for
training gives a numerically stable loss, and the softmax (with a temperature, for
calibration) is baked in only at export.
"""

from __future__ import annotations

import keras

from model.config import ArchitectureConfig
from model.text import make_vectorizer


def build(
    config: ArchitectureConfig,
    n_classes: int,
    vectorizer: keras.layers.TextVectorization | None = None,
) -> keras.Model:
    """Build the reference network: strings → TextVectorization → … → logits.

    The embedding is sized by `max_tokens` (not by the adapted vocabulary) so the
    parameter count is that of the reference, whatever the training data holds.
    """
    if vectorizer is None:
        vectorizer = make_vectorizer(config.max_tokens, config.sequence_length, config.locale)
    inputs = keras.Input(shape=(), dtype="string", name="text")
    x = vectorizer(inputs)
    x = keras.layers.Embedding(config.max_tokens, config.embedding_dim, name="embedding")(x)
    x = keras.layers.Bidirectional(
        keras.layers.LSTM(config.lstm_units, return_sequences=True), name="bilstm"
    )(x)
    x = keras.layers.Dropout(config.dropout, name="dropout")(x)
    x = keras.layers.Dense(config.dense_units, activation="relu", name="dense")(x)
    x = keras.layers.GlobalMaxPool1D(name="max_pool")(x)
    logits = keras.layers.Dense(n_classes, name="logits")(x)
    return keras.Model(inputs, logits, name="bilstm_classifier")


def numeric_core(network: keras.Model) -> keras.Model:
    """Token ids → logits: the layers of `build`'s network after its vectoriser, shared, not copied.

    Training fits this core on token ids vectorised once, so the string ops do not
    run again every epoch; the string network learns with it, as it holds the same layers.
    """
    vectorizer = network.layers[1]
    if not isinstance(vectorizer, keras.layers.TextVectorization):
        raise ValueError(f"{network.name} does not start with a TextVectorization layer")
    return keras.Model(vectorizer.output, network.output, name="numeric_core")


def end_to_end(logits_model: keras.Model, temperature: float = 1.0) -> keras.Model:
    """Raw text in, class probabilities out: the model the artifact stores."""
    inputs = keras.Input(shape=(), dtype="string", name="text")
    logits = logits_model(inputs, training=False)
    if temperature != 1.0:
        logits = keras.layers.Rescaling(1.0 / temperature, name="temperature")(logits)
    probabilities = keras.layers.Softmax(name="probabilities")(logits)
    return keras.Model(inputs, probabilities, name="complaint_classifier")
