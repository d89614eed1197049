"""Probabilities to ranked categories, and the two decisions every consumer shares.

The defaults live here, the bottom layer, so training's baseline, the worker and
every command read the same numbers.
"""

from __future__ import annotations

import numpy as np

DEFAULT_TOP_K = 3  # categories listed with each prediction
DEFAULT_REVIEW_THRESHOLD = 0.5  # needs_review below this confidence


def top_k(probabilities: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and probabilities of the k most likely classes per row, best first.

    Ties are broken by the lower class index, the same choice as `argmax`.
    """
    k = max(1, min(k, probabilities.shape[1]))
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(probabilities, order, axis=1)
