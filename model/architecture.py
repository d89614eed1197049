"""The reference BiLSTM topic classifier, with sizes that tests can shrink.

`build` returns the *training* model (raw strings in, logits out). `end_to_end` wraps it
with a softmax, which is the model every later part serves: keeping logits for
training gives a numerically stable loss, and the softmax (with a temperature, for
calibration) is baked in only at export.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras

from model.text import DEFAULT_LOCALE, make_vectorizer


@dataclass(frozen=True)
class ArchitectureConfig:
    """Sizes of the reference network; the defaults are the reference model."""

    max_tokens: int = 100_000
    sequence_length: int = 40
    embedding_dim: int = 16
    lstm_units: int = 256
    dropout: float = 0.2
    dense_units: int = 64
    locale: str = DEFAULT_LOCALE

    def to_dict(self) -> dict:
        return asdict(self)


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


def end_to_end(logits_model: keras.Model, temperature: float = 1.0) -> keras.Model:
    """Raw text in, class probabilities out: the model the artifact stores."""
    inputs = keras.Input(shape=(), dtype="string", name="text")
    logits = logits_model(inputs, training=False)
    if temperature != 1.0:
        logits = keras.layers.Rescaling(1.0 / temperature, name="temperature")(logits)
    probabilities = keras.layers.Softmax(name="probabilities")(logits)
    return keras.Model(inputs, probabilities, name="complaint_classifier")


@dataclass(frozen=True)
class LinearConfig:
    """A TF-IDF linear model: word 1–2-grams and character 2–5-grams, then softmax.

    Built from Keras layers, so it exports as the same end-to-end artifact (raw text
    in, probabilities out, the same standardisation) and the worker serves it unchanged.
    Character n-grams carry Turkish's rich suffixes, typos and missing diacritics far
    better than whole words on small archives.
    """

    word_max_tokens: int = 50_000
    word_ngrams: int = 2
    char_max_tokens: int = 200_000
    char_ngrams: tuple[int, ...] = (2, 3, 4, 5)
    l2: float = 1e-6
    locale: str = DEFAULT_LOCALE

    def to_dict(self) -> dict:
        return {**asdict(self), "char_ngrams": list(self.char_ngrams)}


def build_linear(config: LinearConfig, n_classes: int, train_texts) -> keras.Model:
    """Adapt both TF-IDF vectorisers on the training texts and build strings → logits."""
    import tensorflow as tf

    from model.text import standardizer

    standardize = standardizer(config.locale)
    words = keras.layers.TextVectorization(
        max_tokens=config.word_max_tokens, standardize=standardize, ngrams=config.word_ngrams,
        output_mode="tf_idf", name="word_tfidf",
    )
    chars = keras.layers.TextVectorization(
        max_tokens=config.char_max_tokens, standardize=standardize, split="character",
        ngrams=config.char_ngrams, output_mode="tf_idf", name="char_tfidf",
    )
    texts = tf.data.Dataset.from_tensor_slices(list(train_texts)).batch(1024)
    words.adapt(texts)
    chars.adapt(texts)
    inputs = keras.Input(shape=(), dtype="string", name="text")
    # Unit-length rows, as scikit-learn's TfidfVectorizer gives: without it long texts
    # dominate the logits and the softmax layer overfits in a couple of epochs.
    features = keras.layers.Concatenate(name="tfidf")([
        keras.layers.UnitNormalization(name="word_norm")(words(inputs)),
        keras.layers.UnitNormalization(name="char_norm")(chars(inputs)),
    ])
    logits = keras.layers.Dense(
        n_classes, kernel_regularizer=keras.regularizers.L2(config.l2), name="logits"
    )(features)
    return keras.Model(inputs, logits, name="linear_classifier")
