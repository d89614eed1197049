"""The RunInference model handler for a complaint model directory.

A custom `ModelHandler` rather than Beam's stock `TFModelHandlerTensor`: the stock
handler imports tensorflow_hub, loads only `.keras` files and hands us raw
probabilities. Ours loads the artifact once per worker process, serves it through
one graph-compiled function (strings in, probabilities and an "empty after
standardisation" mask out), decodes labels/top-k for the whole batch with NumPy, and
never lets one bad record fail its batch: a failing batch is bisected until the
culprit stands alone and is returned as an error for the dead-letter output.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from model import artifact
from model.predict import decode
from model.text import standardizer
from worker.defaults import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MIN_BATCH_SIZE, METRICS_NAMESPACE


class _DropBeamMemoryWarning(logging.Filter):
    """Beam 2.77 imports `resource` and its torch-only ModelManager in one try block,
    so without torch installed it logs "Resource module is not available" on every
    batch. The message is false on Linux and says nothing about our job."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Resource module is not available")


logging.getLogger().addFilter(_DropBeamMemoryWarning())


@dataclass(frozen=True)
class InferenceError:
    """Stands in for a prediction when the record itself made inference fail."""

    detail: str


class ServingModel:
    """An artifact plus its compiled serving function: what one worker process holds."""

    def __init__(self, loaded: artifact.Artifact):
        self.labels = np.array(loaded.labels, dtype=object)
        self.version = loaded.version
        keras_model = loaded.model
        standardize = standardizer(loaded.locale)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], reduce_retracing=True)
        def serve(texts: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            probabilities = keras_model(texts, training=False)
            empty = tf.equal(tf.strings.length(standardize(texts)), 0)
            return probabilities, empty

        self.serve = serve

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        probabilities, empty = self.serve(tf.constant(list(texts), dtype=tf.string))
        return probabilities.numpy(), empty.numpy()


class ComplaintModelHandler(ModelHandler[str, Any, ServingModel]):
    """Raw complaint texts in; per text a decoded prediction (or an InferenceError) out."""

    def __init__(
        self,
        model_dir: str,
        *,
        top_k: int = 3,
        review_threshold: float = 0.5,
        min_batch_size: int = DEFAULT_MIN_BATCH_SIZE,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_batch_duration_secs: int | None = None,
    ):
        super().__init__(
            min_batch_size=min_batch_size,
            max_batch_size=max_batch_size,
            max_batch_duration_secs=max_batch_duration_secs,
        )
        self.model_dir = model_dir
        self.top_k = top_k
        self.review_threshold = review_threshold

    def load_model(self) -> ServingModel:
        return ServingModel(artifact.load(self.model_dir))

    def run_inference(
        self, batch: Sequence[str], model: ServingModel, inference_args: dict[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        return [PredictionResult(text, result) for text, result in zip(batch, self._infer(batch, model), strict=True)]

    def _infer(self, batch: Sequence[str], model: ServingModel) -> list:
        try:
            probabilities, empty = model(batch)
        except (tf.errors.OpError, ValueError, UnicodeError) as exc:
            if len(batch) == 1:
                return [InferenceError(_first_line(exc))]
            middle = len(batch) // 2
            return self._infer(batch[:middle], model) + self._infer(batch[middle:], model)
        return self._decode(probabilities, empty, model)

    def _decode(self, probabilities: np.ndarray, empty: np.ndarray, model: ServingModel) -> list:
        """Labels, confidences and top-k for the whole batch at once; None for empty texts."""
        decoded = decode(probabilities, model.labels, self.top_k, self.review_threshold)
        return [None if is_empty else {**row, "model_version": model.version}
                for row, is_empty in zip(decoded, empty, strict=True)]

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE

    def get_num_bytes(self, batch: Sequence[str]) -> int:
        return sum(len(text) for text in batch)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:500]
