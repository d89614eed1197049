"""Turning probabilities into labels, confidences and top-k, shared by every consumer.

Vectorised over a whole batch with NumPy: the worker calls this on the hot path.
"""

from __future__ import annotations

import numpy as np


def top_k(probabilities: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and probabilities of the k most likely classes per row, best first.

    Ties are broken by the lower class index, the same choice as `argmax`.
    """
    k = max(1, min(k, probabilities.shape[1]))
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(probabilities, order, axis=1)


def decode(probabilities: np.ndarray, labels: np.ndarray, k: int, review_threshold: float) -> list[dict]:
    """Per row: label, label_id, confidence, top_k [{label, confidence}] and needs_review.

    The one place that turns probabilities into the fields users route work on, so
    the worker, `complaints predict` and the web page can never disagree.
    """
    indices, values = top_k(probabilities, k)
    names = labels[indices]
    return [
        {
            "label": row_names[0],
            "label_id": int(row_ids[0]),
            "confidence": row_values[0],
            "top_k": [{"label": n, "confidence": v} for n, v in zip(row_names, row_values, strict=True)],
            "needs_review": row_values[0] < review_threshold,
        }
        for row_names, row_ids, row_values in zip(names, indices, values.tolist(), strict=True)
    ]
