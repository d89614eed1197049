"""The linear classifier for small archives: sublinear TF-IDF features, then a softmax layer.

The features are Keras layers (TextVectorization's sparse counts → `SublinearTfIdf`,
which weights them and scales each block to unit length, for word 1–2-grams and
character 2–5-grams), so the exported artifact is the
same kind of model as the BiLSTM's: raw strings in, probabilities out, the same
standardisation, served unchanged by the worker.

The softmax layer is *fitted* by multinomial logistic regression (L-BFGS, `model.softmax`)
and its weights copied into a Keras `Dense` layer. The problem is convex, and a convex solver
finds its optimum exactly and deterministically. Keras' stochastic optimisers get
there slowly and noisily. On sikayetvar_belediye_tr, Adam gave 0.78–0.86 test accuracy,
depending on the learning rate and the epoch; L-BFGS gave 0.87.

Why sublinear TF-IDF and not TextVectorization's own `tf_idf` mode: Keras weights raw
counts, so one repeated word or character run dominates a long complaint. On the same
vocabulary, word n-grams scored 0.66 with Keras' `tf_idf` and 0.80 with (1 + log tf) · idf.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from model import pretrained, softmax
from model.config import LinearConfig
from model.data import shuffled_classes
from model.progress import Phases
from model.text import standardizer

CHUNK_ROWS = 1024  # rows vectorised at once


@keras.saving.register_keras_serializable(package="complaints")
class SublinearTfIdf(keras.layers.Layer):
    """Counts → unit-length rows of (1 + log tf) · idf, with scikit-learn's smoothed idf.

    Column 0 (out of vocabulary) weighs 0: unseen n-grams carry no evidence, and must
    not dilute the row's norm either. The idf is a non-trainable weight set from the
    training split's document frequencies, so it is saved and restored with the model.
    Sparse counts stay sparse: a complaint touches a few thousand of ~10^5 columns, and
    a dense batch of 512 rows would be hundreds of megabytes.
    """

    def __init__(self, vocabulary_size: int, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size
        self.idf = self.add_weight(shape=(vocabulary_size,), initializer="ones", trainable=False, name="idf")

    def set_document_frequencies(self, document_frequency: np.ndarray, documents: int) -> None:
        idf = np.log((1.0 + documents) / (1.0 + document_frequency)) + 1.0
        idf[0] = 0.0
        self.idf.assign(idf.astype("float32"))

    def call(self, counts):
        if isinstance(counts, tf.SparseTensor):
            rows, columns = counts.indices[:, 0], counts.indices[:, 1]
            values = (1.0 + tf.math.log(tf.cast(counts.values, "float32"))) * tf.gather(self.idf, columns)
            norms = tf.math.sqrt(tf.math.unsorted_segment_sum(tf.square(values), rows, counts.dense_shape[0]))
            values = values / tf.maximum(tf.gather(norms, rows), 1e-12)
            return tf.SparseTensor(counts.indices, values, counts.dense_shape)
        counts = ops.cast(counts, "float32")
        weighted = ops.where(counts > 0, 1.0 + ops.log(ops.maximum(counts, 1.0)), 0.0) * self.idf
        return weighted / ops.maximum(ops.norm(weighted, axis=-1, keepdims=True), 1e-12)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size}


def _vectorizers(config: LinearConfig, sparse: bool) -> list[keras.layers.TextVectorization]:
    standardize = standardizer(config.locale)
    return [
        keras.layers.TextVectorization(max_tokens=config.word_max_tokens, standardize=standardize,
                                       ngrams=config.word_ngrams, output_mode="count", sparse=sparse,
                                       name="word_counts"),
        keras.layers.TextVectorization(max_tokens=config.char_max_tokens, standardize=standardize,
                                       split="character", ngrams=config.char_ngrams, output_mode="count",
                                       sparse=sparse, name="char_counts"),
    ]


def _text_chunks(texts: list[str]) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(tf.constant(texts, tf.string) if texts else
                                              tf.zeros([0], tf.string)).batch(CHUNK_ROWS)


def _features_model(vectorizers, weightings, encoder: keras.layers.Layer | None = None) -> keras.Model:
    """Strings → the TF-IDF rows (sparse), and with `encoder` also the texts' e5 embeddings (dense): two
    outputs, as a sparse and a dense block do not concatenate into one tensor."""
    inputs = keras.Input(shape=(), dtype="string", name="text")
    # Unit length per block (inside SublinearTfIdf), as scikit-learn's TfidfVectorizer
    # gives: without it long complaints dominate the logits.
    blocks = [weighting(vectorizer(inputs)) for vectorizer, weighting in zip(vectorizers, weightings, strict=True)]
    features = keras.layers.Concatenate(name="tfidf")(blocks)
    if encoder is not None:
        return keras.Model(inputs, [features, encoder(inputs)], name="tfidf_e5_features")
    return keras.Model(inputs, features, name="tfidf_features")


def _weightings(vectorizers) -> list[SublinearTfIdf]:
    return [SublinearTfIdf(vectorizer.vocabulary_size(), name=f"{block}_tfidf")
            for vectorizer, block in zip(vectorizers, ("word", "char"), strict=True)]


def featurise(config: LinearConfig, train_texts: list[str], other_texts: list[str], sparse: bool = True,
              phases: Phases | None = None):
    """Adapt the features on the training texts → (strings → TF-IDF model, CSR rows of train + other texts).

    The matrix is what the model computes, built in one pass of the vectorisers over
    all rows (the idf needs only the training rows' document frequencies, which the
    count matrix itself gives): chunks run on every core, each becomes compact CSR
    (float32 values, int32 columns) at once, and the TF-IDF weighting is applied in
    place. At 388,000 rows that is ~2 GB where float64 values and TensorFlow's int64
    (row, column) pairs would take ~6 GB.

    With `config.with_encoder`, each row's e5 embedding follows its TF-IDF columns, dense.
    """
    phases = phases or Phases(enabled=False)
    vectorizers = _vectorizers(config, sparse)
    with phases.phase("adapting the word and character vocabularies", f"{len(train_texts):,} rows"):
        for vectorizer in vectorizers:
            vectorizer.adapt(_text_chunks(train_texts))
    weightings = _weightings(vectorizers)
    with phases.phase("extracting TF-IDF features", f"{len(train_texts) + len(other_texts):,} rows"):
        counts = count_matrix(vectorizers, train_texts + other_texts)
        widths = [int(vectorizer.vocabulary_size()) for vectorizer in vectorizers]
        frequency = np.bincount(counts.indices[: counts.indptr[len(train_texts)]], minlength=sum(widths))
        for weighting, (low, high) in zip(weightings, _blocks(widths), strict=True):
            weighting.set_document_frequencies(frequency[low:high], len(train_texts))
        idf = np.concatenate([weighting.idf.numpy() for weighting in weightings])
        weigh_in_place(counts, idf, widths[0])
    if not config.with_encoder:
        return _features_model(vectorizers, weightings), counts
    from scipy import sparse as scipy_sparse

    with phases.phase("encoding with e5 (the pretrained encoder)", f"{len(train_texts) + len(other_texts):,} rows"):
        vectors = pretrained.embed(train_texts + other_texts)
    rows = scipy_sparse.hstack([counts, scipy_sparse.csr_matrix(vectors)], format="csr", dtype=np.float32)
    return _features_model(vectorizers, weightings, pretrained.layer()), rows


def _blocks(widths: list[int]) -> list[tuple[int, int]]:
    edges = np.cumsum([0, *widths])
    return [(int(edges[i]), int(edges[i + 1])) for i in range(len(widths))]


def count_matrix(vectorizers, texts: list[str]):
    """Raw n-gram counts of `texts` as one CSR matrix: [word columns | character columns].

    The out-of-vocabulary columns (0 of each block) are left out: their idf is 0, so
    they add nothing to a row or its norm.
    """
    from scipy import sparse

    widths = [int(vectorizer.vocabulary_size()) for vectorizer in vectorizers]
    offsets = [low for low, _ in _blocks(widths)]

    def counts(chunk):
        blocks = (vectorizer(chunk) for vectorizer in vectorizers)
        return tuple(block if isinstance(block, tf.SparseTensor) else tf.sparse.from_dense(block) for block in blocks)

    pieces = []
    chunks = _text_chunks(texts).map(counts, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    for chunk_counts in chunks:
        rows = int(chunk_counts[0].dense_shape[0])
        blocks = []
        for block, offset in zip(chunk_counts, offsets, strict=True):
            indices = block.indices.numpy()
            keep = indices[:, 1] != 0
            blocks.append((indices[keep, 0].astype(np.int32), (indices[keep, 1] + offset).astype(np.int32),
                           block.values.numpy()[keep].astype(np.float32)))
        row, column, value = (np.concatenate(parts) for parts in zip(*blocks, strict=True))
        piece = sparse.csr_matrix((value, (row, column)), shape=(rows, sum(widths)))
        piece.sort_indices()
        pieces.append(piece)
    if not pieces:
        return sparse.csr_matrix((0, sum(widths)), dtype=np.float32)
    matrix = sparse.vstack(pieces, format="csr", dtype=np.float32)
    matrix.indices = matrix.indices.astype(np.int32, copy=False)
    return matrix


def weigh_in_place(counts, idf: np.ndarray, word_width: int, chunk_rows: int = 65_536) -> None:
    """Counts → (1 + log tf) · idf, each block of each row scaled to unit length: SublinearTfIdf, in numpy.

    A slice of rows at a time, so the temporaries stay a few MB however large the matrix.
    """
    idf = idf.astype(np.float32)
    for start in range(0, counts.shape[0], chunk_rows):
        stop = min(start + chunk_rows, counts.shape[0])
        low, high = counts.indptr[start], counts.indptr[stop]
        values, columns = counts.data[low:high], counts.indices[low:high]
        values[:] = (1.0 + np.log(values)) * idf[columns]
        rows = np.repeat(np.arange(stop - start), np.diff(counts.indptr[start : stop + 1]))
        segment = rows * 2 + (columns >= word_width)
        norms = np.sqrt(np.bincount(segment, weights=np.square(values, dtype=np.float64),
                                    minlength=2 * (stop - start))).astype(np.float32)
        values /= np.maximum(norms, 1e-12)[segment]


def transform(features: keras.Model, texts: list[str]):
    """Strings → a scipy CSR matrix through the Keras features model, a chunk at a time (the reference path)."""
    from scipy import sparse

    def rows(chunk):
        values = features(chunk, training=False)
        if isinstance(values, tf.SparseTensor):
            indices = values.indices.numpy()
            return sparse.csr_matrix((values.values.numpy(), (indices[:, 0], indices[:, 1])),
                                     shape=tuple(values.dense_shape.numpy()))
        return sparse.csr_matrix(values.numpy())

    return sparse.vstack([rows(chunk) for chunk in _text_chunks(texts)], format="csr")


def fit_softmax(x, label_ids: np.ndarray, n_classes: int, config: LinearConfig, seed: int,
                validation: tuple[object, np.ndarray] | None = None, iterations: int | None = None):
    """Multinomial logistic regression (`model.softmax`, on every core) → (kernel, bias, facts) for a Dense layer.

    `validation` (rows, label ids) stops the solver early on its loss; `iterations`
    runs it exactly that long (a refit, or a fold, of an early-stopped fit). `seed` is
    unused, the fit being deterministic; it stays so every fit takes the same arguments.
    """
    result = softmax.fit(x, label_ids, config.c, balanced=config.class_weight == "balanced",
                         max_iter=iterations or config.max_iter, tol=0.0 if iterations else config.tol,
                         validation=validation, patience=config.patience)
    kernel = np.zeros((x.shape[1], n_classes), dtype=np.float32)
    # A class absent from training can never win: its bias sits far below the rest.
    bias = np.full(n_classes, float(np.min(result.bias)) - 50.0, dtype=np.float32)
    kernel[:, result.classes] = result.kernel
    bias[result.classes] = result.bias
    facts = {"solver": "lbfgs", "iterations": result.iterations, "best_iteration": result.best_iteration,
             "stopped_early": result.stopped_early, "converged": result.converged}
    return kernel, bias, facts


def fold_ids(label_ids: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A stratified, seeded fold number per row: each class is dealt round-robin after a shuffle."""
    assignment = np.empty(len(label_ids), dtype=np.int64)
    for rows in shuffled_classes(label_ids, seed):
        assignment[rows] = np.arange(len(rows)) % folds
    return assignment


def out_of_fold_logits(x, label_ids: np.ndarray, n_classes: int, config: LinearConfig, seed: int,
                       folds: int, iterations: int | None = None) -> np.ndarray:
    """Each training row's logits from a softmax layer fitted without it.

    These give the temperature thousands of honest predictions instead of a small
    validation split's few hundred. On sikayetvar_belediye_tr, the temperature fitted
    on its 238 validation rows left a test ECE of 0.042–0.074 over 3 splits; with the
    out-of-fold rows added it was 0.023–0.045. A convex fit makes the extra folds cheap.
    Each fold is fitted like the model it stands in for: from zero, for the
    `iterations` that model ran (its early-stopped count), so its confidences are
    those of that model and not of a fit run to convergence.
    """
    assignment = fold_ids(label_ids, folds, seed)
    logits = np.zeros((x.shape[0], n_classes), dtype=np.float32)
    for fold in range(folds):
        held_out = assignment == fold
        kernel, bias, _ = fit_softmax(x[~held_out], label_ids[~held_out], n_classes, config, seed,
                                      iterations=iterations)
        logits[held_out] = x[held_out] @ kernel + bias
    return logits


@dataclass
class LinearFit:
    """A fitted linear model, and what its refit and the validation scoring reuse: the features and their rows."""

    model: keras.Model  # strings → logits
    facts: dict
    out_of_fold: np.ndarray | None  # the training rows' out-of-fold logits, when asked for
    features: keras.Model
    rows: object  # CSR TF-IDF rows: the training texts, then the other texts
    kernel: np.ndarray
    bias: np.ndarray
    trained_rows: int

    def logits_of_other_rows(self) -> np.ndarray:
        """The other texts' logits (e.g. the validation split), from the matrix already built."""
        return np.asarray(softmax.row_view(self.rows, self.trained_rows, self.rows.shape[0]) @ self.kernel
                          + self.bias)


def _classifier(features: keras.Model, kernel: np.ndarray, bias: np.ndarray) -> keras.Model:
    logits = keras.layers.Dense(kernel.shape[1], name="logits")
    if len(features.outputs) == 1:
        outputs = logits(features.output)
        logits.set_weights([kernel, bias])
        return keras.Model(features.input, outputs, name="linear_classifier")
    tfidf, vectors = features.outputs  # the kernel's rows: TF-IDF columns, then the embedding's
    from_vectors = keras.layers.Dense(kernel.shape[1], use_bias=False, name="e5_logits")
    outputs = keras.layers.Add(name="summed_logits")([logits(tfidf), from_vectors(vectors)])
    width = kernel.shape[0] - pretrained.DIMENSIONS
    logits.set_weights([kernel[:width], bias])
    from_vectors.set_weights([kernel[width:]])
    return keras.Model(features.input, outputs, name="e5_linear_classifier")


@dataclass(frozen=True)
class OtherRows:
    """Rows featurised beside the training rows: the validation split, and for a refit on everything the test
    split. With `validation_label_ids`, the first that many are the validation split."""

    texts: list[str]
    validation_label_ids: np.ndarray | None = None


def train_linear(config: LinearConfig, texts: list[str], label_ids: np.ndarray, n_classes: int, seed: int,
                 calibration_folds: int = 0, sparse: bool = True, phases: Phases | None = None,
                 other: OtherRows | None = None) -> LinearFit:
    """Fit features and softmax layer on the training texts.

    The `other` rows get TF-IDF rows in the same pass, with the training texts'
    vocabulary and idf, for their logits and for `refit_linear`; with their
    validation labels the solver stops early on the validation loss. With
    `calibration_folds` ≥ 2 the training rows' out-of-fold logits come back too, for
    calibration.
    """
    phases = phases or Phases(enabled=False)
    other = other or OtherRows([])
    validation_label_ids = other.validation_label_ids
    features, x = featurise(config, texts, other.texts, sparse, phases)
    train_x = softmax.row_view(x, 0, len(texts))
    validation = None
    if validation_label_ids is not None and len(validation_label_ids):
        validation = (softmax.row_view(x, len(texts), len(texts) + len(validation_label_ids)), validation_label_ids)
    detail = f"{x.shape[1]:,} features, {len(texts):,} rows" + (", stops early on the validation loss"
                                                                 if validation else "")
    with phases.phase("fitting the softmax layer (L-BFGS)", detail):
        kernel, bias, facts = fit_softmax(train_x, label_ids, n_classes, config, seed, validation=validation)
    held_out = None
    if calibration_folds > 1:
        with phases.phase("out-of-fold fits for calibration", f"{calibration_folds} folds"):
            held_out = out_of_fold_logits(train_x, label_ids, n_classes, config, seed, calibration_folds,
                                          iterations=facts["best_iteration"] if facts["stopped_early"] else None)
    facts = {**facts, "features": int(x.shape[1]), "training_nonzeros": int(train_x.nnz)}
    return LinearFit(_classifier(features, kernel, bias), facts, held_out, features, x, kernel, bias, len(texts))


def refit_linear(fit: LinearFit, label_ids: np.ndarray, n_classes: int, config: LinearConfig, seed: int,
                 phases: Phases | None = None) -> tuple[keras.Model, dict]:
    """The same features, the softmax layer refitted on all of `fit.rows` (training + other texts).

    As the BiLSTM's refit trains for its best epoch count, this runs the solver from
    zero for the iterations the early-stopped fit chose (to convergence if it was not
    stopped early). The features (vocabularies, idf) stay those adapted on the training split.
    """
    phases = phases or Phases(enabled=False)
    iterations = fit.facts["best_iteration"] if fit.facts.get("stopped_early") else None
    detail = f"{fit.rows.shape[0]:,} rows" + (f", {iterations} iterations" if iterations else "")
    with phases.phase("refitting the softmax layer (L-BFGS)", detail):
        kernel, bias, facts = fit_softmax(fit.rows, label_ids, n_classes, config, seed, iterations=iterations)
    return _classifier(fit.features, kernel, bias), facts
