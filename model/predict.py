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
