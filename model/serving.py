"""The one serving function: an artifact and its compiled function, texts in, probabilities out.

Strings in; probabilities, token and out-of-vocabulary counts out, each text cut to
`MAX_TEXT_CHARS` first: the one serving function behind the classification
core (`worker.core`), the model slot (`worker.slot`) and every caller that needs a
model's probabilities: training's test split and drift reference, the precision
records (`model.agreement`), benchmarks and the tests' oracle. It lives in the model
room so that training, which cannot import the worker, serves through it too.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from model import artifact, baseline, compiled
from model.config import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MIN_BATCH_SIZE, MAX_TEXT_CHARS
from model.openvino_core import OpenVinoCore
from model.precision import FP32, OPENVINO, converted, numeric_core
from model.text import standardizer

log = logging.getLogger("complaints.worker")


class ServingModel:
    """An artifact plus its compiled serving function: what one worker process holds.

    The BiLSTM's numeric core runs as XLA programs behind its graph-mode vectoriser
    (`model.compiled`); a model that cannot be split (the linear model) is served
    whole in graph mode, and the log says which (`path`).

    At bf16 (`model.precision.converted`) the numeric core runs in graph mode, where
    TensorFlow's oneDNN kernels use the CPU's bf16 instructions; XLA's CPU backend
    has no bf16 matrix kernels to gain from (`benchmarks/RESULTS.md`). At
    openvino-bf16 TensorFlow only vectorises, and OpenVINO computes the rest from the
    ids (`model.openvino_core`).
    """

    def __init__(self, loaded: artifact.Artifact, xla: bool = True,
                 sizes: tuple[int, ...] = compiled.buckets(DEFAULT_MIN_BATCH_SIZE, DEFAULT_MAX_BATCH_SIZE),
                 precision: str = FP32):
        self.labels = np.array(loaded.labels, dtype=object)
        self.version = loaded.version
        self.metadata = loaded.metadata
        self.precision = precision
        self.choice: dict = {"served": precision}  # how it was chosen (`worker.precision_choice.choose`)
        keras_model = converted(loaded.model, precision)
        standardize = standardizer(loaded.locale)
        count_tokens = baseline.TokenCounter(loaded.model, standardize)
        once = False  # the probabilities take standardised texts: each text is standardised once per call
        self.openvino: OpenVinoCore | None = None  # the numeric core, where OpenVINO computes it (ids → probabilities)
        if precision in OPENVINO:
            vectorizer, self.openvino = numeric_core(loaded.model, precision)
            probabilities, self.path = vectorizer, f"openvino-{self.openvino.hint}"  # TensorFlow hands over ids
        else:
            if not xla:
                parts = "XLA is switched off"
            elif precision != FP32:
                parts = f"at {precision} the core runs in graph mode"
            else:
                parts = compiled.split(keras_model)
            if isinstance(parts, compiled.Split):
                probabilities, self.path, once = compiled.probabilities_fn(parts, sizes), "xla", True
            else:
                self.path = "graph" if precision == FP32 else f"graph-{precision}"
                probabilities = lambda texts: tf.cast(keras_model(texts, training=False), tf.float32)  # noqa: E731
                log.info("model %s served in graph mode: %s", loaded.version, parts)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], reduce_retracing=True)
        def serve(texts: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            """Probabilities (token ids, where OpenVINO computes them), and per text its tokens and
            out-of-vocabulary tokens (for the drift check)."""
            texts = standardize(texts) if once else texts
            return (probabilities(texts), *count_tokens(texts, standardized=once))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], reduce_retracing=True)
        def serve_counting_words(texts: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
            """`serve`, and how often each word id occurs in the batch (the drift check's word signal)."""
            texts = standardize(texts) if once else texts
            return (probabilities(texts), *count_tokens.counted(texts, standardized=once))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], reduce_retracing=True)
        def word_counts(texts: tf.Tensor) -> tf.Tensor:
            return count_tokens.histogram(texts)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], reduce_retracing=True)
        def standardized(texts: tf.Tensor) -> tf.Tensor:
            return standardize(texts)

        self.serve = serve
        self._serve_counting_words = serve_counting_words
        self._word_counts = word_counts
        self._standardized = standardized
        self.vocabulary_size = count_tokens.size  # word ids 1…, 0 for out of vocabulary
        self.words_read = compiled.words_read(loaded.model)  # what an explanation needs to vary (model.explain)
        self.sizes = sizes
        self.warm = False
        self.warmed: set[int] = set()  # batch sizes already run (auto's timing runs the largest)

    def warm_up(self) -> None:
        """Trace the serving function and compile every padded size now, at load, not on the first batches:
        a first batch that takes seconds would also teach RunInference's batcher to keep batches small."""
        for size in self.sizes if self.path == "xla" or self.openvino else self.sizes[:1]:
            if size not in self.warmed:
                self(["warm up"] * size)
        self.warm = True

    def word_counts(self, texts: Sequence[str]) -> np.ndarray:
        """How often each word id occurs in `texts` (the drift check's word signal), as the model cuts them."""
        return self._word_counts(tf.constant(_cut(texts), dtype=tf.string)).numpy()

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(probabilities, tokens, out-of-vocabulary tokens); a text with no tokens is empty.

        Only the first `MAX_TEXT_CHARS` characters of a text reach the model, whoever calls.
        """
        return self._numbers(self.serve(tf.constant(_cut(texts), dtype=tf.string)))

    def words(self, texts: Sequence[str]) -> list[list[str]]:
        """Each text's words as the model's standardisation splits them (what an explanation names)."""
        if not texts:
            return []
        standardized = self._standardized(tf.constant(_cut(texts), tf.string)).numpy()
        return [t.decode("utf-8", "replace").split() for t in standardized]

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Every class's probability for any number of texts, in batches of the largest compiled size: what
        a caller outside a job scores with (training's test split and drift reference, the precision
        records, `evaluate` through the core, benchmarks, the tests' oracle)."""
        texts, size = list(texts), max(self.sizes)
        parts = [self(texts[i:i + size])[0] for i in range(0, len(texts), size)]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.labels)), np.float32)

    def counting_words(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """`self(texts)` and `self.word_counts(texts)` in one call, standardising each text once."""
        outputs = self._serve_counting_words(tf.constant(_cut(texts), dtype=tf.string))
        return (*self._numbers(outputs[:3]), outputs[3].numpy())

    def _numbers(self, outputs: Sequence[tf.Tensor]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        probabilities, tokens, oov = outputs
        probabilities = probabilities.numpy() if self.openvino is None else self.openvino(probabilities.numpy())
        return probabilities, tokens.numpy(), oov.numpy()


def _cut(texts: Sequence[str]) -> list[str]:
    """Each text's first `MAX_TEXT_CHARS` characters: all the model (and its word counts) ever see."""
    return [t if len(t) <= MAX_TEXT_CHARS else t[:MAX_TEXT_CHARS] for t in texts]
