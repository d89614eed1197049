"""Each lower precision's agreement with FP32, measured through the serving function the jobs serve with.

The records `precision.refusal` judges are only as good as the probabilities they
compare, so they come from `model.serving.ServingModel` at each precision (graph mode,
as a job serves a lower precision and as `--xla off` serves FP32), not from a loop
of their own.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from model.artifact import Artifact
from model.precision import FP32, PRECISIONS, agreement, unmeasured
from model.serving import ServingModel


def served_probabilities(loaded: Artifact, texts: Sequence[str], precision: str = FP32) -> np.ndarray:
    """`loaded`'s probabilities for `texts` as served at `precision`."""
    return ServingModel(loaded, xla=False, precision=precision).probabilities(texts)


def measure(loaded: Artifact, texts: Sequence[str], review_threshold: float, rows_of: str) -> dict:
    """Each lower precision's agreement record against FP32 on `texts` (held-out rows), for metadata.json, and
    OpenVINO's f32's, which shows whether it computes the same (`precision.computes_the_same`).

    A precision this installation cannot serve (`precision.unavailable`) gets no
    record, and so is not allowed until one is measured (`complaints precision`). Nor
    does `openvino-bf16` where OpenVINO does not compute in bfloat16 (its CPU plugin
    falls back to f32 without bf16 instructions): such a record would describe another
    classifier.
    """
    texts = list(texts)
    fp32 = served_probabilities(loaded, texts)
    return {p: {**agreement(fp32, served_probabilities(loaded, texts, p), review_threshold), "rows_of": rows_of}
            for p in PRECISIONS if p != FP32 and not unmeasured(loaded.model, p)}
