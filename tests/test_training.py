import json
import os

import numpy as np
import pytest

from model import artifact
from model.data import stratified_split
from model.errors import UserError
from model.sample import generate

pytestmark = pytest.mark.slow  # whole jobs, services or trainings: left out of `pytest -m "not slow"`


def test_tiny_model_learns_well_above_chance(trained):
    _, result = trained
    # 32 classes: chance is ~3%, the majority class ~12%.
    assert result.report["accuracy"] > 0.6
    assert result.report["macro avg"]["f1"] > 0.4
    assert result.metadata["test_metrics"]["accuracy"] == result.report["accuracy"]


def test_early_stopping_restores_best_epoch(trained):
    _, result = trained
    best = result.metadata["training"]["best_epoch"]
    assert best == int(np.argmin(result.history["val_loss"])) + 1
    assert result.metadata["training"]["epochs_run"] == len(result.history["loss"])


def test_artifact_layout_and_metadata(model_dir, trained):
    for name in ("model.keras", "labels.json", "metadata.json", "history.json", "report/metrics.json",
                 "report/confusion_matrix.png", "report/curves.png", "report/confusion_matrix.csv"):
        assert os.path.exists(os.path.join(model_dir, name)), name
    meta = json.load(open(os.path.join(model_dir, "metadata.json"), encoding="utf-8"))
    labels = json.load(open(os.path.join(model_dir, "labels.json"), encoding="utf-8"))
    assert labels == sorted(labels) and len(labels) == meta["n_classes"] == 32
    assert meta["locale"] == "tr" and meta["sequence_length"] == 40
    assert meta["vocabulary_size"] <= meta["max_tokens"] == 3000
    assert len(meta["model_version"]) == 12
    assert meta["training"]["data_fingerprint"] and meta["training"]["rows"] == 4000
    split = meta["training"]["split_rows"]
    assert split["train"] + split["validation"] + split["test"] == 4000
    assert set(meta["versions"]) == {"tensorflow", "keras"}


def test_reloaded_artifact_gives_the_same_probabilities(model_dir, trained):
    import tensorflow as tf

    texts = [*generate(50, seed=99, labelled=False)["text"].tolist(), "IŞIK", "?!"]
    a = trained[1].model.predict(tf.constant(texts), verbose=0)
    b = artifact.load(model_dir).model.predict(tf.constant(texts), verbose=0)  # Keras itself: save/load fidelity
    assert a.shape == (52, 32)
    np.testing.assert_allclose(b.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_model_version_is_content_derived(loaded):
    assert artifact.model_version(loaded.model, loaded.labels, "tr") == loaded.version
    assert artifact.model_version(loaded.model, loaded.labels, "unicode") != loaded.version


def test_stratified_split_keeps_every_class_and_is_seeded():
    labels = np.repeat(np.arange(4), [50, 30, 20, 10])
    a = stratified_split(labels, 0.1, 0.2, seed=1)
    b = stratified_split(labels, 0.1, 0.2, seed=1)
    for x, y in zip((a.train, a.validation, a.test), (b.train, b.validation, b.test), strict=True):
        assert (x == y).all()
    assert set(labels[a.test]) == {0, 1, 2, 3}
    assert len(set(a.train) | set(a.validation) | set(a.test)) == 110
    assert np.bincount(labels[a.test]).tolist() == [10, 6, 4, 2]


def test_too_few_rows_for_the_split():
    with pytest.raises(UserError, match="too few for a"):
        stratified_split(np.array([0, 1, 0, 1]), 0.1, 0.1, seed=0)
