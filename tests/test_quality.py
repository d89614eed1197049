"""The linear TF-IDF model, architecture selection and temperature calibration."""

import os
from dataclasses import replace

import numpy as np
import pytest

from model import artifact
from model.calibration import expected_calibration_error, fit_temperature, softmax
from model.serving import ServingModel
from model.train import train
from tests.beam_helpers import classify
from tests.conftest import FAST, SMALL_LINEAR, TINY_ARCHITECTURE, labelled
from worker.transform import WorkerConfig

pytestmark = pytest.mark.slow  # whole jobs, services or trainings: left out of `pytest -m "not slow"`


@pytest.fixture(scope="module")
def linear_model(linear_trained):
    return linear_trained


def test_linear_learns_well_above_chance(linear_model):
    _, result = linear_model
    assert result.metadata["architecture"]["name"] == "linear"
    assert result.metadata["sequence_length"] is None
    assert set(result.metadata["baseline"]["label_shares"]) == set(artifact.load(result.artifact_dir).labels)
    assert result.metadata["baseline"]["oov_share"] < 0.2  # the linear model's word vocabulary is found
    assert result.report["accuracy"] > 0.6  # 32 classes: chance ~3%, majority ~12%


def test_linear_artifact_runs_through_the_worker_unchanged(linear_model):
    out, _ = linear_model
    loaded = artifact.load(out)
    texts = list(labelled(300, seed=31).texts)
    rows = [{"id": str(i), "text": t} for i, t in enumerate(texts)]
    predictions, dead, _ = classify([*rows, {"id": "e", "text": "!?"}], WorkerConfig(out))
    assert [d["reason"] for d in dead] == ["empty_text"]
    expected = ServingModel(loaded).probabilities(texts)
    for p in predictions:
        i = int(p["id"])
        assert p["label"] == loaded.labels[int(expected[i].argmax())]
        assert p["confidence"] == pytest.approx(float(expected[i].max()), abs=1e-5)


def test_auto_records_both_scores_and_picks_the_better(tmp_path):
    result = train(labelled(1500, seed=13), str(tmp_path / "auto"), TINY_ARCHITECTURE,
                   replace(FAST, architecture="auto"), SMALL_LINEAR)
    selection = result.metadata["selection"]
    scores = selection["validation_macro_f1"]
    assert set(scores) == {"bilstm", "linear"}
    assert selection["requested"] == "auto"
    assert selection["chosen"] == max(scores, key=scores.get)
    assert result.metadata["architecture"]["name"] == selection["chosen"]
    saved = artifact.load(str(tmp_path / "auto")).metadata
    assert saved["selection"] == selection


def test_seeded_runs_give_the_same_metrics(linear_model, tmp_path):
    again = train(labelled(2000, seed=12), str(tmp_path / "again"), TINY_ARCHITECTURE,
                  replace(FAST, architecture="linear"), SMALL_LINEAR)
    assert again.metadata["test_metrics"] == linear_model[1].metadata["test_metrics"]
    assert again.metadata["model_version"] == linear_model[1].metadata["model_version"]


def test_temperature_is_never_worse_than_none():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, size=500)
    logits = rng.normal(0, 1, size=(500, 3)) + 2.0 * np.eye(3)[labels]
    t = fit_temperature(logits, labels)
    from model.calibration import negative_log_likelihood

    assert negative_log_likelihood(logits, labels, t) <= negative_log_likelihood(logits, labels, 1.0)


def test_a_temperature_that_would_raise_ece_is_not_applied():
    """Confidences already match accuracy, but a few confident answers are wrong: NLL wants T > 1, ECE does not."""
    from model.calibration import calibrate

    rng = np.random.default_rng(7)
    labels = rng.integers(0, 4, 5000)
    logits = np.zeros((5000, 4))
    logits[np.arange(5000), labels] = 3.0  # right, with confidence 0.87
    wrong = rng.random(5000) < 0.13
    logits[wrong] = np.roll(logits[wrong], 1, axis=1)  # 13% wrong at the same confidence: calibrated on average
    logits[rng.random(5000) < 0.02] *= 4  # and a few very confident rows, right or wrong
    nll_optimal = fit_temperature(logits, labels)
    assert expected_calibration_error(softmax(logits, nll_optimal), labels) > expected_calibration_error(
        softmax(logits), labels)
    assert calibrate(logits, labels) == (1.0, False)
    sharpen = logits * 0.5  # under-confident: here the temperature helps, and is applied
    temperature, applied = calibrate(sharpen, labels)
    assert applied and temperature < 1.0


def test_calibration_lowers_the_ece_of_an_over_confident_model():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=4000)
    # About 70% correct, but with logits scaled so the model claims ~100% confidence.
    predicted = np.where(rng.random(4000) < 0.7, labels, rng.integers(0, 5, size=4000))
    logits = 12.0 * np.eye(5)[predicted] + rng.normal(0, 1.0, size=(4000, 5))
    before = expected_calibration_error(softmax(logits), labels)
    temperature = fit_temperature(logits, labels)
    after = expected_calibration_error(softmax(logits, temperature), labels)
    assert temperature > 1.5  # softened
    assert before > 0.2 and after < before / 3
    assert (softmax(logits, temperature).argmax(1) == logits.argmax(1)).all()  # labels unchanged


def test_ece_definition_on_a_hand_made_case():
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 0, 1])
    # bins: 0.9 → acc 0.5 (gap 0.4, weight 0.5); 0.6 → acc 1 (gap 0.4, 0.25); 0.7 → acc 1 (gap 0.3, 0.25)
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.5 * 0.4 + 0.25 * 0.4 + 0.25 * 0.3)


def test_trained_artifact_bakes_in_its_temperature(trained):
    _, result = trained
    calibration = result.metadata["calibration"]
    assert calibration["temperature"] > 0
    # Temperature scaling minimises the calibration set's NLL; it need not lower ECE on a small set.
    assert calibration["fitted_on"] == "validation"
    assert calibration["rows"] == result.metadata["training"]["split_rows"]["validation"]
    assert calibration["nll_after"] <= calibration["nll_before"] + 1e-9
    assert os.path.getsize(os.path.join(trained[0], "report", "reliability.png")) > 0
    assert "ece" in result.metadata["test_metrics"]



def test_linear_temperature_is_fitted_on_out_of_fold_rows_too(linear_model):
    """A small validation split (200 rows): out-of-fold rows join it, and the solver runs to its tolerance."""
    _, result = linear_model
    calibration = result.metadata["calibration"]
    split = result.metadata["training"]["split_rows"]
    assert "out-of-fold" in calibration["fitted_on"]
    assert calibration["rows"] == split["train"] + split["validation"]
    assert calibration["nll_after"] <= calibration["nll_before"] + 1e-9
    assert f"has {split['validation']:,} rows, too few alone" in calibration["set_chosen_by"]
    assert not result.metadata["architecture"]["stopped_early"]


def test_a_large_validation_split_is_the_calibration_set_and_stops_the_solver(tmp_path, monkeypatch):
    """Above ENOUGH_VALIDATION_ROWS: no out-of-fold fits, early stopping, and a refit for the chosen iterations.

    The threshold is lowered so that a small archive crosses it; what is tested is
    the decision and what the metadata records of it.
    """
    from model import calibration
    from model import train as training

    monkeypatch.setattr(calibration, "ENOUGH_VALIDATION_ROWS", 150)
    monkeypatch.setattr(training, "ENOUGH_VALIDATION_ROWS", 150)
    config = replace(FAST, architecture="linear", validation_split=0.2)
    result = train(labelled(1200, seed=15), str(tmp_path / "m"), TINY_ARCHITECTURE, config,
                   replace(SMALL_LINEAR, c=1e4, patience=2))
    metadata = result.metadata
    validation = metadata["training"]["split_rows"]["validation"]
    assert metadata["calibration"]["fitted_on"] == "validation"
    assert metadata["calibration"]["rows"] == validation
    assert f"has {validation:,} rows, enough alone" in metadata["calibration"]["set_chosen_by"]
    solver = metadata["architecture"]
    assert solver["stopped_early"] and solver["best_iteration"] < solver["iterations"]
    assert metadata["refit"]["iterations"] == solver["best_iteration"]


def test_the_exported_model_is_refitted_on_train_and_validation_with_the_chosen_settings(linear_model, tmp_path):
    """The splits choose (selection, temperature, test score); the export learns from their rows too."""
    _, refitted = linear_model
    split_only = train(labelled(2000, seed=12), str(tmp_path / "split-only"), TINY_ARCHITECTURE,
                       replace(FAST, architecture="linear", final_fit="train"), SMALL_LINEAR)
    rows = refitted.metadata["training"]["split_rows"]
    fit = refitted.metadata["architecture"]
    assert refitted.metadata["refit"] == {
        "fitted_on": "train+validation", "rows": rows["train"] + rows["validation"], "epochs": None,
        "features_adapted_on": "train",
        # the solver's iterations chosen on the split (early stopping), as the BiLSTM's best epoch count
        "iterations": fit["best_iteration"] if fit["stopped_early"] else refitted.metadata["refit"]["iterations"],
    }
    assert split_only.metadata["refit"] == {"fitted_on": "train", "rows": rows["train"]}
    # The same split model was scored and calibrated; only the exported weights differ.
    assert refitted.metadata["test_metrics"] == split_only.metadata["test_metrics"]
    assert refitted.metadata["calibration"] == split_only.metadata["calibration"]
    assert refitted.metadata["model_version"] != split_only.metadata["model_version"]
    assert "refitted on train+validation" in refitted.metadata["test_metrics_of"]
    temperature = refitted.metadata["calibration"]["temperature"]
    served = artifact.load(refitted.artifact_dir).model
    assert served.get_layer("temperature").scale == pytest.approx(1 / temperature)
    assert refitted.metadata["architecture"]["name"] == "linear"
    # Without a refit, the exported model is the scored one: its test-split accuracy is the recorded one.
    data = labelled(2000, seed=12)
    from model.data import stratified_split

    labels = artifact.load(split_only.artifact_dir).labels
    ids = np.array([labels.index(x) for x in data.labels])
    test = stratified_split(ids, 0.1, 0.1, FAST.seed).test
    predicted = ServingModel(artifact.load(split_only.artifact_dir), xla=False).probabilities(
        data.texts[test].tolist()).argmax(axis=1)
    assert (predicted == ids[test]).mean() == pytest.approx(split_only.metadata["test_metrics"]["accuracy"])


def test_the_bilstm_refit_trains_for_the_best_epoch_count(tmp_path):
    result = train(labelled(1500, seed=14), str(tmp_path / "b"), TINY_ARCHITECTURE, replace(FAST, epochs=3),
                   SMALL_LINEAR)
    assert result.metadata["refit"]["epochs"] == result.metadata["training"]["best_epoch"] >= 1
    assert result.metadata["refit"]["rows"] > result.metadata["training"]["split_rows"]["train"]
