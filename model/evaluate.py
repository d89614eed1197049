"""Classification report, confusion matrix and curves, written beside the model.

The metric definitions are scikit-learn's (precision = TP/(TP+FP), 0 when undefined;
macro = unweighted class mean; weighted = mean weighted by support), computed with
NumPy so the runtime package does not need scikit-learn.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np

from model.plots import pyplot


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return matrix


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=float), where=den != 0)


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict:
    """Accuracy and per-class precision/recall/F1/support with macro and weighted averages."""
    matrix = confusion_matrix(y_true, y_pred, len(labels))
    tp = np.diag(matrix).astype(float)
    support = matrix.sum(axis=1).astype(float)
    predicted = matrix.sum(axis=0).astype(float)
    precision = _safe_divide(tp, predicted)
    recall = _safe_divide(tp, support)
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    total = support.sum()
    report = {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "classes": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "macro avg": {
            "precision": float(precision.mean()),
            "recall": float(recall.mean()),
            "f1": float(f1.mean()),
            "support": int(total),
        },
        "weighted avg": {
            "precision": float(_weighted(precision, support)),
            "recall": float(_weighted(recall, support)),
            "f1": float(_weighted(f1, support)),
            "support": int(total),
        },
    }
    return report


def _weighted(values: np.ndarray, support: np.ndarray) -> float:
    return float((values * support).sum() / support.sum()) if support.sum() else 0.0


def headline(report: dict) -> dict:
    """The numbers worth putting in metadata and tables."""
    return {
        "accuracy": report["accuracy"],
        "macro_f1": report["macro avg"]["f1"],
        "weighted_f1": report["weighted avg"]["f1"],
        "ece": report.get("ece"),  # absent from a bare classification_report
    }


def format_report(report: dict) -> str:
    """The familiar text layout of a classification report."""
    width = max([len(k) for k in report["classes"]] + [12])
    lines = [f"{'':>{width}} precision    recall  f1-score   support", ""]
    for label, row in report["classes"].items():
        lines.append(
            f"{label:>{width}} {row['precision']:9.4f} {row['recall']:9.4f} {row['f1']:9.4f} {row['support']:9d}"
        )
    total = report["macro avg"]["support"]
    lines += ["", f"{'accuracy':>{width}} {'':9} {'':9} {report['accuracy']:9.4f} {total:9d}"]
    for name in ("macro avg", "weighted avg"):
        row = report[name]
        lines.append(
            f"{name:>{width}} {row['precision']:9.4f} {row['recall']:9.4f} {row['f1']:9.4f} {row['support']:9d}"
        )
    if "ece" in report:
        lines += ["", f"{'ECE':>{width}} {report['ece']:9.4f}  (15 bins; 0 = confidences match accuracy)"]
    if report.get("dead_lettered"):
        shown = ", ".join(f"{reason} {count}" for reason, count in sorted(report["dead_lettered"].items()))
        lines.append(f"{'not scored':>{width}} {sum(report['dead_lettered'].values()):9d}  rows the jobs would "
                     f"dead-letter ({shown})")
    return "\n".join(lines)


def write_report(
    report_dir: str,
    y_true: np.ndarray,
    probabilities: np.ndarray,
    labels: list[str],
    history: dict | None = None,
    reliability: dict[str, np.ndarray] | None = None,
    dead_lettered: dict[str, int] | None = None,
) -> dict:
    """Write metrics.json, the text report, the confusion matrix (CSV + PNG), the reliability diagram and curves.

    metrics.json has the same keys for training's test split and for `complaints
    evaluate`: the classification report plus `ece` (15 bins) of these probabilities.
    `reliability` names the curves to draw (default: these probabilities alone).
    `dead_lettered`: rows left out because the jobs would not label them, by reason.
    """
    from model.calibration import expected_calibration_error, reliability_diagram

    os.makedirs(report_dir, exist_ok=True)
    y_pred = probabilities.argmax(axis=1)
    report = {**classification_report(y_true, y_pred, labels), "ece": expected_calibration_error(probabilities, y_true)}
    if dead_lettered is not None:
        report["dead_lettered"] = dead_lettered
    matrix = confusion_matrix(y_true, y_pred, len(labels))
    reliability_diagram(os.path.join(report_dir, "reliability.png"), y_true, reliability or {"model": probabilities})
    with open(os.path.join(report_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, ensure_ascii=False, indent=2)
    with open(os.path.join(report_dir, "classification_report.txt"), "w", encoding="utf-8") as f:
        f.write(format_report(report) + "\n")
    with open(os.path.join(report_dir, "confusion_matrix.csv"), "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted", *labels])
        for label, row in zip(labels, matrix, strict=True):
            writer.writerow([label, *row.tolist()])
    _plot_confusion(os.path.join(report_dir, "confusion_matrix.png"), matrix, labels)
    if history:
        _plot_curves(os.path.join(report_dir, "curves.png"), history)
    return report


def _plot_confusion(path: str, matrix: np.ndarray, labels: list[str]) -> None:
    plt = pyplot()
    size = max(6.0, 0.35 * len(labels) + 3)
    fig, ax = plt.subplots(figsize=(size, size))
    normalised = _safe_divide(matrix.astype(float), matrix.sum(axis=1, keepdims=True).astype(float))
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (row-normalised)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_curves(path: str, history: dict) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("accuracy", "loss"), strict=True):
        for prefix, style in (("", "-"), ("val_", "--")):
            if f"{prefix}{metric}" in history:
                values = history[f"{prefix}{metric}"]
                ax.plot(range(1, len(values) + 1), values, style, label=f"{prefix or 'train_'}{metric}")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
