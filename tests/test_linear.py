"""The linear model's parts: sublinear TF-IDF features, the convex softmax fit, calibration folds."""

import numpy as np
import pytest

from model.linear import LinearConfig, featurise, fit_softmax, fold_ids, train_linear, transform
from tests.conftest import labelled

# Already standardised (lower case, no punctuation), so scikit-learn sees the same tokens.
CORPUS = [
    "the bill was wrong the bill was late",
    "water bill late again",
    "bus late bus late bus late",
    "park lights broken",
    "the park was closed",
]


def test_word_features_equal_scikit_learn_sublinear_tfidf():
    from sklearn.feature_extraction.text import TfidfVectorizer

    features, _ = featurise(LinearConfig(word_ngrams=2, locale="unicode"), CORPUS, [])
    ours = transform(features, CORPUS).toarray()
    words = features.get_layer("word_counts").get_vocabulary()
    reference = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"\S+")
    expected = reference.fit_transform(CORPUS).toarray()
    assert set(words[1:]) == set(reference.vocabulary_)
    columns = [reference.vocabulary_[token] for token in words[1:]]
    np.testing.assert_allclose(ours[:, 1 : len(words)], expected[:, columns], atol=1e-6)


def test_unseen_ngrams_do_not_dilute_the_row():
    features, _ = featurise(LinearConfig(word_ngrams=1, locale="unicode"), CORPUS, [])
    words = len(features.get_layer("word_counts").get_vocabulary())
    plain, padded = transform(features, ["bus late", "bus late zzz qqq xyz"]).toarray()[:, :words]
    assert padded[0] == 0.0  # the out-of-vocabulary column
    np.testing.assert_allclose(plain, padded, atol=1e-6)


@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_softmax_fit_finds_scikit_learns_optimum(class_weight):
    """Same objective, same optimum: our threaded L-BFGS against LogisticRegression, sparse and imbalanced."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    # float64: the comparison is of optima, beyond float32's precision
    x = sparse.random(400, 60, density=0.2, format="csr", dtype=np.float64, random_state=1)
    y = np.asarray((x @ rng.normal(size=(60, 3))).argmax(axis=1)).ravel()
    y[:40] = 2  # imbalance, so "balanced" weights matter
    config = LinearConfig(c=3.0, class_weight=class_weight, tol=1e-7)
    kernel, bias, facts = fit_softmax(x, y, 3, config, seed=0)
    ours = np.exp(x @ kernel + bias)
    ours /= ours.sum(axis=1, keepdims=True)
    reference = LogisticRegression(C=3.0, class_weight=class_weight, tol=1e-10, max_iter=10_000).fit(x, y)
    np.testing.assert_allclose(ours, reference.predict_proba(x), atol=1e-5)
    assert facts["converged"]


def test_two_classes_are_a_softmax_over_two_logits():
    """With two classes the softmax's symmetric penalty equals scikit-learn's binary one at twice its C."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6))
    y = (x[:, 0] + 0.5 * rng.normal(size=200) > 0).astype(int)
    kernel, bias, facts = fit_softmax(x, y, 2, LinearConfig(c=1.0, class_weight=None, tol=1e-8), seed=0)
    logits = x @ kernel + bias
    ours = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = LogisticRegression(C=2.0, tol=1e-10).fit(x, y).predict_proba(x)
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    assert facts["converged"]


def test_early_stopping_keeps_the_weights_with_the_best_validation_loss():
    from scipy import sparse

    from model import softmax

    rng = np.random.default_rng(3)
    x = sparse.random(900, 300, density=0.05, format="csr", dtype=np.float64, random_state=4)
    y = np.asarray((x @ rng.normal(size=(300, 3))).argmax(axis=1)).ravel()
    noisy = rng.random(900) < 0.3  # label noise, so a weakly regularised fit overfits
    y[noisy] = rng.integers(0, 3, noisy.sum())
    validation = (x[600:], y[600:])
    held_out = softmax.validation_loss(*validation, np.arange(3))
    stopped = softmax.fit(x[:600], y[:600], c=1e4, balanced=False, validation=validation, patience=3)
    full = softmax.fit(x[:600], y[:600], c=1e4, balanced=False)
    assert stopped.stopped_early and not stopped.converged
    assert stopped.best_iteration < stopped.iterations <= stopped.best_iteration + 3 < full.iterations
    assert held_out(stopped.kernel, stopped.bias) < held_out(full.kernel, full.bias)
    again = softmax.fit(x[:600], y[:600], c=1e4, balanced=False, max_iter=stopped.best_iteration, tol=0.0)
    np.testing.assert_allclose(again.kernel, stopped.kernel, atol=1e-6)  # a refit of that length is the same fit


def test_a_class_missing_from_training_is_never_predicted():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(90, 4))
    y = np.repeat([0, 2, 3], 30)
    kernel, bias, _ = fit_softmax(x, y, 4, LinearConfig(), seed=0)
    assert not np.any((x @ kernel + bias).argmax(axis=1) == 1)


def test_folds_are_stratified_and_seeded():
    labels = np.repeat([0, 1, 2], [23, 7, 50])
    folds = fold_ids(labels, 5, seed=3)
    for class_id in range(3):
        counts = np.bincount(folds[labels == class_id], minlength=5)
        assert counts.max() - counts.min() <= 1
    np.testing.assert_array_equal(folds, fold_ids(labels, 5, seed=3))
    assert not np.array_equal(folds, fold_ids(labels, 5, seed=4))


def test_out_of_fold_logits_are_less_confident_than_in_sample():
    """Rows scored by a model that never saw them: on noisy data they are right less often."""
    data = labelled(600, seed=21)
    labels = sorted(set(data.labels.tolist()))
    label_ids = np.searchsorted(np.array(labels, dtype=object), data.labels)
    texts = data.texts.tolist()
    fit = train_linear(LinearConfig(word_max_tokens=2000, char_max_tokens=4000), texts, label_ids, len(labels),
                       seed=0, calibration_folds=4)
    model, facts, out_of_fold = fit.model, fit.facts, fit.out_of_fold
    in_sample = model.predict(np.array(texts, dtype=object), verbose=0)
    assert out_of_fold.shape == in_sample.shape
    assert (out_of_fold.argmax(1) == label_ids).mean() < (in_sample.argmax(1) == label_ids).mean()
    assert (out_of_fold.argmax(1) == label_ids).mean() > 0.3  # still a real classifier, 32 classes
    assert facts["features"] > 0 and facts["converged"]


@pytest.mark.parametrize("folds", [0, 1])
def test_no_folds_means_no_out_of_fold_logits(folds):
    data = labelled(200, seed=22)
    label_ids = np.searchsorted(np.array(sorted(set(data.labels.tolist())), dtype=object), data.labels)
    fit = train_linear(LinearConfig(word_max_tokens=500, char_max_tokens=500), data.texts.tolist(),
                       label_ids, int(label_ids.max()) + 1, seed=0, calibration_folds=folds)
    assert fit.out_of_fold is None


def test_sparse_and_dense_counts_give_the_same_rows():
    """Serving feeds sparse counts; the dense path (Keras' symbolic build) must agree with it."""
    import tensorflow as tf

    from model.linear import SublinearTfIdf

    layer = SublinearTfIdf(5)
    layer.set_document_frequencies(np.array([0, 1, 2, 3, 1]), documents=4)
    dense = np.array([[2, 1, 0, 3, 0], [0, 0, 4, 0, 1], [0, 0, 0, 0, 0]], dtype=np.int64)
    from_sparse = tf.sparse.to_dense(layer(tf.sparse.from_dense(dense))).numpy()
    np.testing.assert_allclose(from_sparse, layer(dense).numpy(), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(from_sparse[:2], axis=1), 1.0, atol=1e-6)
    assert from_sparse[0, 0] == 0.0 and not from_sparse[2].any()


@pytest.mark.parametrize("sparse_counts", [True, False])
def test_one_pass_extraction_equals_the_served_features(sparse_counts):
    """The training matrix (one pass, compact CSR, weighted in place) is what the exported layers compute."""
    from model.linear import featurise

    data = labelled(300, seed=23)
    texts = data.texts.tolist()
    config = LinearConfig(word_max_tokens=800, char_max_tokens=3000)
    features, x = featurise(config, texts[:200], texts[200:], sparse=sparse_counts)
    served = transform(features, texts)
    assert x.shape == served.shape and x.dtype == np.float32 and x.indices.dtype == np.int32
    np.testing.assert_allclose(x.toarray(), served.toarray(), atol=1e-6)
    assert x.nnz == np.count_nonzero(served.toarray())  # the out-of-vocabulary columns (always 0) are not stored
    # the idf comes from the training rows only: the same features adapted on them alone agree
    alone, _ = featurise(config, texts[:200], [])
    np.testing.assert_allclose(transform(alone, texts[200:]).toarray(), x[200:].toarray(), atol=1e-6)
