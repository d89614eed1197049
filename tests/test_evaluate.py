import numpy as np
import pytest
from sklearn.metrics import classification_report as sk_report
from sklearn.metrics import confusion_matrix as sk_confusion

from model.evaluate import classification_report, confusion_matrix, write_report

LABELS = ["a", "b", "c"]
Y_TRUE = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 1])
Y_PRED = np.array([0, 1, 0, 1, 2, 2, 2, 0, 2, 1])


def test_hand_made_case_matches_definitions():
    report = classification_report(Y_TRUE, Y_PRED, LABELS)
    # class a: TP=2, FP=1 (one c predicted as a), FN=1 → P=2/3, R=2/3
    assert report["classes"]["a"]["precision"] == pytest.approx(2 / 3)
    assert report["classes"]["a"]["recall"] == pytest.approx(2 / 3)
    assert report["accuracy"] == pytest.approx(7 / 10)
    expected = sk_report(Y_TRUE, Y_PRED, target_names=LABELS, output_dict=True, zero_division=0)
    for label in LABELS:
        for key, sk_key in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert report["classes"][label][key] == pytest.approx(expected[label][sk_key])
        assert report["classes"][label]["support"] == expected[label]["support"]
    for avg in ("macro avg", "weighted avg"):
        assert report[avg]["f1"] == pytest.approx(expected[avg]["f1-score"])
        assert report[avg]["precision"] == pytest.approx(expected[avg]["precision"])
    assert (confusion_matrix(Y_TRUE, Y_PRED, 3) == sk_confusion(Y_TRUE, Y_PRED)).all()


def test_class_never_predicted_has_zero_precision():
    report = classification_report(np.array([0, 1]), np.array([0, 0]), ["x", "y"])
    assert report["classes"]["y"]["precision"] == 0.0
    assert report["classes"]["x"]["precision"] == 0.5


def test_report_files(tmp_path):
    probabilities = np.eye(3)[Y_PRED]
    history = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.5, 0.8], "val_accuracy": [0.4, 0.7]}
    write_report(str(tmp_path), Y_TRUE, probabilities, LABELS, history)
    for name in ("metrics.json", "classification_report.txt", "confusion_matrix.csv", "confusion_matrix.png",
                 "curves.png"):
        assert (tmp_path / name).stat().st_size > 0
    rows = (tmp_path / "confusion_matrix.csv").read_text().splitlines()
    assert rows[0] == "true \\ predicted,a,b,c"
    assert rows[1] == "a,2,1,0"
    assert (tmp_path / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
