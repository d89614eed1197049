"""The XLA-compiled numeric core serves the same predictions as the Keras model itself."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model import artifact, compiled
from model.sample import generate
from model.serving import ServingModel


def test_padded_sizes_follow_the_batch_sizes():
    assert compiled.buckets(32, 512) == (32, 64, 128, 256, 512)
    assert compiled.buckets(512, 512) == (512,)  # the nightly job: one program
    assert compiled.buckets(1, 100) == (1, 2, 4, 8, 16, 32, 64, 100)


@pytest.mark.parametrize(("rows", "padded"), [(1, 32), (31, 32), (32, 32), (33, 64), (200, 256), (512, 512),
                                              (513, 1024), (1500, 1536)])
def test_batches_are_padded_to_a_few_sizes(rows, padded):
    assert int(compiled.padded_size(tf.constant(rows), compiled.buckets(32, 512))) == padded


@pytest.mark.slow  # compiles every XLA batch size
def test_xla_core_equals_the_keras_model(model_dir, loaded):
    texts = generate(1024, seed=21, labelled=False)["text"].tolist()
    texts[:4] = ["?!...", "😡", "x " * 500, "İSTANBUL ılık şikâyet"]  # empty, very long, Turkish casing
    xla, graph = ServingModel(loaded, xla=True), ServingModel(loaded, xla=False)
    assert (xla.path, graph.path) == ("xla", "graph")
    expected = loaded.model.predict(tf.constant(texts), verbose=0, batch_size=256)
    for size in (1, 7, 33, 512, 700):  # batch sizes inside, at and across the padding sizes
        for start in range(0, len(texts), size * 3):
            chunk = texts[start:start + size]
            got, tokens, _ = xla(chunk)
            want = expected[start:start + len(chunk)]
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, atol=1e-5)
            assert (got.argmax(axis=1) == want.argmax(axis=1)).all()
            np.testing.assert_array_equal(tokens, graph(chunk)[1])


@pytest.mark.slow  # a training or a fresh interpreter
def test_a_model_that_cannot_be_split_is_served_whole_and_says_so(linear_trained, caplog):
    loaded = artifact.load(linear_trained[0])
    assert isinstance(compiled.split(loaded.model), str)
    with caplog.at_level(logging.INFO, logger="complaints.worker"):
        serving = ServingModel(loaded)
    assert serving.path == "graph"
    assert any("served in graph mode" in r.getMessage() and "TextVectorization" in r.getMessage()
               for r in caplog.records)
    texts = generate(50, seed=2, labelled=False)["text"].tolist()
    np.testing.assert_allclose(serving(texts)[0], loaded.model.predict(tf.constant(texts), verbose=0), atol=1e-6)


def test_the_temperature_is_inside_the_compiled_core(trained):
    _, result = trained
    temperature = result.metadata["calibration"]["temperature"]
    parts = compiled.split(artifact.load(result.artifact_dir).model)
    assert isinstance(parts, compiled.Split)
    names = [layer.name for layer in parts.core.layers]
    assert ("temperature" in names) == (temperature != 1.0)


_ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=200)  # any Unicode a message or a file can carry


@pytest.fixture(scope="module")
def vectorizers(loaded):
    """(vectoriser, its standardisation) pairs: the session model's, and one adapted per locale."""
    from model.text import LOCALES, make_vectorizer, standardizer

    pairs = [(compiled.split(loaded.model).vectorizer, standardizer(loaded.locale))]
    sample = [*generate(300, seed=5, labelled=False)["text"].tolist(), "İSTANBUL ışık Ünal", "Straße ÉCOLE ΣΊΣΥΦΟΣ"]
    for locale in LOCALES:
        layer = make_vectorizer(500, 40, locale)
        layer.adapt(tf.constant(sample))
        pairs.append((layer, standardizer(locale)))
    return [(layer, compiled.without_standardize(layer), standardize) for layer, standardize in pairs]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(_ANY_TEXT, min_size=1, max_size=8))
def test_standardising_once_gives_the_vectorisers_own_ids_for_any_text(vectorizers, texts):
    """Issue #40, item 3: the serving function standardises each text once and hands the result to the
    vectoriser without its standardisation and to the token counter; the ids are TextVectorization's own."""
    batch = tf.constant(texts)
    for layer, without, standardize in vectorizers:
        expected = layer(batch).numpy()
        assert (without(standardize(batch)).numpy() == expected).all(), texts


def test_the_served_counts_and_probabilities_are_those_of_two_standardisations(loaded):
    """The XLA path standardises once; its token counts equal the counter's own on raw texts."""
    from model import baseline
    from model.text import standardizer

    texts = [*generate(64, seed=8, labelled=False)["text"].tolist(), "", "?!", "İŞÇİ ışık"]
    served = ServingModel(loaded, sizes=(64, 128))
    assert served.path == "xla"
    probabilities, tokens, oov = served(texts)
    counter = baseline.TokenCounter(loaded.model, standardizer(loaded.locale))
    raw_tokens, raw_oov = (t.numpy() for t in counter(tf.constant(texts)))
    assert (tokens == raw_tokens).all() and (oov == raw_oov).all()
    keras_probabilities = loaded.model.predict(tf.constant(texts), verbose=0)  # Keras itself, the oracle
    assert np.abs(probabilities - keras_probabilities).max() <= 1e-5
