"""Two models' predictions on the same rows, side by side: is B better than A, and by more than noise?

Pure NumPy/SciPy over predicted label names and confidences, so it compares models
with different label lists too. With true labels: accuracy, macro F1 and ECE of each,
the difference B − A with a 95% paired bootstrap interval (the same resampled rows for
both models), and McNemar's exact test on the rows where exactly one is right. Without
labels: how often they agree, and which labels flip to which.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from scipy.stats import binomtest

from model.calibration import calibration_error

BOOTSTRAP_SAMPLES = 2000


def _macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Macro F1 over the classes that occur (as truth or prediction, as scikit-learn counts them), for each
    row of a (samples, rows) pair of arrays: the bootstrap computes thousands at once."""
    y_true, y_pred = np.atleast_2d(y_true), np.atleast_2d(y_pred)
    offsets = (np.arange(len(y_true)) * n_classes)[:, None]
    size = len(y_true) * n_classes
    tp = np.bincount((y_true + offsets)[y_true == y_pred], minlength=size).reshape(-1, n_classes)
    support = np.bincount((y_true + offsets).ravel(), minlength=size).reshape(-1, n_classes)
    predicted = np.bincount((y_pred + offsets).ravel(), minlength=size).reshape(-1, n_classes)
    denominator = support + predicted
    f1 = np.divide(2 * tp, denominator, out=np.zeros(tp.shape, dtype=float), where=denominator > 0)
    present = denominator > 0
    return (f1 * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def labelled(truth: list[str], a: tuple[list[str], np.ndarray], b: tuple[list[str], np.ndarray],
             seed: int = 0) -> dict:
    """Both models against the truth: figures, B − A with 95% intervals, McNemar, per-class F1."""
    names = sorted(set(truth) | set(a[0]) | set(b[0]))
    index = {n: i for i, n in enumerate(names)}
    y = np.array([index[t] for t in truth])
    pa, pb = np.array([index[p] for p in a[0]]), np.array([index[p] for p in b[0]])
    right_a, right_b = pa == y, pb == y
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(y), size=(BOOTSTRAP_SAMPLES, len(y)))
    accuracy_diff = right_b[rows].mean(axis=1) - right_a[rows].mean(axis=1)
    f1_diff = _macro_f1(y[rows], pb[rows], len(names)) - _macro_f1(y[rows], pa[rows], len(names))
    only_a, only_b = int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())
    mcnemar = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    per_class = {n: {"a": _class_f1(y, pa, index[n]), "b": _class_f1(y, pb, index[n]),
                     "support": int((y == index[n]).sum())} for n in sorted(set(truth))}
    figures = {}
    for key, predicted, right, confidence in (("a", pa, right_a, a[1]), ("b", pb, right_b, b[1])):
        figures[key] = {"accuracy": float(right.mean()), "macro_f1": float(_macro_f1(y, predicted, len(names))[0]),
                        "ece": calibration_error(np.asarray(confidence), right)}
    return {
        "mode": "labelled",
        "rows": len(y),
        **figures,
        "difference": {
            "accuracy": _interval(figures["b"]["accuracy"] - figures["a"]["accuracy"], accuracy_diff),
            "macro_f1": _interval(figures["b"]["macro_f1"] - figures["a"]["macro_f1"], f1_diff),
            "ece": figures["b"]["ece"] - figures["a"]["ece"],
        },
        "mcnemar": {"only_a_right": only_a, "only_b_right": only_b, "p_value": float(mcnemar)},
        "per_class_f1": per_class,
        "agreement": float((pa == pb).mean()),
    }


def _class_f1(y: np.ndarray, predicted: np.ndarray, c: int) -> float:
    tp = int(((predicted == c) & (y == c)).sum())
    denominator = int((y == c).sum() + (predicted == c).sum())
    return 2 * tp / denominator if denominator else 0.0


def _interval(observed: float, resampled: np.ndarray) -> dict:
    low, high = np.percentile(resampled, [2.5, 97.5])
    return {"observed": float(observed), "ci95": [float(low), float(high)],
            "excludes_zero": bool(low > 0 or high < 0)}


def unlabelled(a: tuple[list[str], np.ndarray], b: tuple[list[str], np.ndarray]) -> dict:
    """How the two models' labels differ on rows nobody has labelled."""
    pairs = Counter(zip(a[0], b[0], strict=True))
    count_a, count_b = Counter(a[0]), Counter(b[0])
    change = {n: count_b.get(n, 0) - count_a.get(n, 0) for n in sorted(set(count_a) | set(count_b))}
    ranked = sorted(change.items(), key=lambda kv: kv[1])
    return {
        "mode": "unlabelled",
        "rows": len(a[0]),
        "agreement": sum(n for (x, y), n in pairs.items() if x == y) / max(len(a[0]), 1),
        "flips": [{"a": x, "b": y, "rows": n} for (x, y), n in pairs.most_common() if x != y],
        "flip_matrix": {x: {y: n for (x2, y), n in pairs.items() if x2 == x} for x in sorted(count_a)},
        "change_by_label": change,
        "gains": [{"label": n, "rows": d} for n, d in reversed(ranked) if d > 0][:5],
        "losses": [{"label": n, "rows": d} for n, d in ranked if d < 0][:5],
        "a": {"mean_confidence": float(np.mean(a[1])) if len(a[1]) else None},
        "b": {"mean_confidence": float(np.mean(b[1])) if len(b[1]) else None},
    }
