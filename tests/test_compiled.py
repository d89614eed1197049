"""The XLA-compiled numeric core serves the same predictions as the Keras model itself."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tensorflow as tf

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
