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
                 "curves.png", "reliability.png"):
        assert (tmp_path / name).stat().st_size > 0
    rows = (tmp_path / "confusion_matrix.csv").read_text().splitlines()
    assert rows[0] == "true \\ predicted,a,b,c"
    assert rows[1] == "a,2,1,0"
    assert (tmp_path / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"


def _ece_by_hand(probabilities: np.ndarray, y_true: np.ndarray, bins: int = 15) -> float:
    """Guo et al.'s ECE, written out: bins (lo, hi] of the top probability, the first one closed."""
    confidence, correct = probabilities.max(axis=1), probabilities.argmax(axis=1) == y_true
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        members = (confidence > lo) & (confidence <= hi) if b else (confidence <= hi)
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return total


def test_evaluate_command_checks_confidences_like_training(model_dir, loaded, serving, tmp_path):
    """`complaints evaluate` writes the training report's keys, ECE and the reliability diagram included."""
    import json

    from click.testing import CliRunner

    from model.sample import generate
    from pipelines.app.cli import cli

    frame = generate(600, seed=61)
    frame.to_parquet(tmp_path / "fresh.parquet")
    result = CliRunner().invoke(cli, ["evaluate", "--model", model_dir, "--data", str(tmp_path / "fresh.parquet"),
                                      "--report-dir", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    training = json.loads(open(f"{model_dir}/report/metrics.json").read())
    assert set(metrics) - {"dead_lettered"} == set(training) and "ece" in metrics
    y_true = np.array([loaded.labels.index(c) for c in frame["category"]])
    expected = serving.probabilities(frame["text"].tolist())
    assert metrics["ece"] == pytest.approx(_ece_by_hand(expected, y_true), abs=1e-6)
    assert (tmp_path / "report" / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    assert "ECE" in result.output
    # Its accuracy is that of the labels the jobs give (the one core), row for row.
    from worker.local import LocalClassifier, texts_as_records
    from worker.transform import WorkerConfig

    verdicts = LocalClassifier(WorkerConfig(model_dir)).classify(texts_as_records(frame["text"].tolist()))
    jobs_labels = [record.get("label") for _, record in verdicts]
    assert metrics["accuracy"] == pytest.approx(np.mean([a == b for a, b in zip(jobs_labels, frame["category"],
                                                                                strict=True)]), abs=1e-9)


def test_evaluate_reports_rows_the_jobs_dead_letter_instead_of_scoring_them(model_dir, tmp_path):
    """Issue #44: evaluate applies the jobs' validity rules; `😡😡` (empty after standardisation) and a
    text of punctuation are counted by reason and left out of every score, as the jobs would never label them."""
    import json

    import pandas as pd
    from click.testing import CliRunner

    from model.sample import generate
    from pipelines.app.cli import cli
    from worker.local import LocalClassifier, texts_as_records
    from worker.transform import WorkerConfig

    frame = generate(300, seed=62)
    odd = pd.DataFrame({"text": ["😡😡", "?!...", "🙂 👍"], "category": frame["category"].iloc[:3].tolist()})
    frame = pd.concat([frame, odd], ignore_index=True)
    frame.to_parquet(tmp_path / "fresh.parquet")
    result = CliRunner().invoke(cli, ["evaluate", "--model", model_dir, "--data", str(tmp_path / "fresh.parquet"),
                                      "--report-dir", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    verdicts = LocalClassifier(WorkerConfig(model_dir)).classify(texts_as_records(frame["text"].tolist()))
    letters = [record["reason"] for kind, record in verdicts if kind == "dead_letters"]
    assert len(letters) >= 3 and metrics["dead_lettered"] == {r: letters.count(r) for r in set(letters)}
    assert metrics["macro avg"]["support"] == len(frame) - len(letters)
    labelled = [(record["label"], truth) for (kind, record), truth in zip(verdicts, frame["category"], strict=True)
                if kind == "predictions"]
    assert metrics["accuracy"] == pytest.approx(np.mean([a == b for a, b in labelled]), abs=1e-9)
    assert "not scored" in result.output
