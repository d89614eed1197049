"""The RunInference model handler for a complaint model directory: both jobs' one handler.

A custom `ModelHandler` rather than Beam's stock `TFModelHandlerTensor`: the stock
handler imports tensorflow_hub, loads only `.keras` files and hands us raw
probabilities. Ours loads the artifact once per worker process (RunInference keeps it
in Beam's `shared.Shared`, across threads and across the DoFn instances a runner sets
up), serves it through one compiled function (strings in; probabilities, token and
out-of-vocabulary counts out), and hands each batch to the one classification core
(`worker.core.classify`). Its elements are batches the jobs form themselves
(`should_skip_batching`): the nightly job fills them across the tables of a bundle,
the live job with Beam's `BatchElements`, as RunInference itself would.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import tensorflow as tf
from apache_beam.ml.inference.base import ModelHandler

from model import artifact, baseline, files, precision
from model.errors import UserError
from model.text import standardizer
from worker import compiled, core, precision_cache, record_columns, records, telemetry
from worker.config import WorkerConfig
from worker.defaults import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MIN_BATCH_SIZE, METRICS_NAMESPACE
from worker.precision_choice import PrecisionSetting, candidates, described, fastest, probe_texts, why_served


class _DropBeamMemoryWarning(logging.Filter):
    """Beam 2.77 imports `resource` and its torch-only ModelManager in one try block,
    so without torch installed it logs "Resource module is not available" (on the root
    logger) on every batch. The message is false on Linux and says nothing about our job."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Resource module is not available")


_MEMORY_WARNING_FILTER = _DropBeamMemoryWarning()
log = logging.getLogger("complaints.worker")


def _drop_beam_memory_warning() -> None:
    """Installed when a model handler is built or unpickled on a worker, not at import:
    importing the worker (as the CLI and notebooks do) leaves the root logger untouched."""
    root = logging.getLogger()
    if _MEMORY_WARNING_FILTER not in root.filters:
        root.addFilter(_MEMORY_WARNING_FILTER)


class ServingModel:
    """An artifact plus its compiled serving function: what one worker process holds.

    The BiLSTM's numeric core runs as XLA programs behind its graph-mode vectoriser
    (`worker.compiled`); a model that cannot be split (the linear model) is served
    whole in graph mode, and the log says which (`path`).

    At bf16 (`model.precision.converted`) the numeric core runs in graph mode, where
    TensorFlow's oneDNN kernels use the CPU's bf16 instructions; XLA's CPU backend
    has no bf16 matrix kernels to gain from (`benchmarks/RESULTS.md`). At
    openvino-bf16 TensorFlow only vectorises, and OpenVINO computes the rest from the
    ids (`model.openvino_core`).
    """

    def __init__(self, loaded: artifact.Artifact, xla: bool = True,
                 sizes: tuple[int, ...] = compiled.buckets(DEFAULT_MIN_BATCH_SIZE, DEFAULT_MAX_BATCH_SIZE),
                 at: str = precision.FP32):
        self.labels = np.array(loaded.labels, dtype=object)
        self.version = loaded.version
        self.metadata = loaded.metadata
        self.precision = at
        self.choice: dict = {"served": at}  # how the precision was chosen (ModelSlot), for logs and summaries
        keras_model = precision.converted(loaded.model, at)
        count_tokens = baseline.TokenCounter(loaded.model, standardizer(loaded.locale))
        self._numeric: Callable[[np.ndarray], np.ndarray] | None = None  # the core outside TensorFlow, if it is
        if at in precision.OPENVINO:
            vectorizer, self._numeric = precision.numeric_core(loaded.model, at)
            probabilities, self.path = vectorizer, f"openvino-{self._numeric.hint}"  # TensorFlow hands over ids
        else:
            if not xla:
                parts = "XLA is switched off"
            elif at != precision.FP32:
                parts = f"at {at} the core runs in graph mode"
            else:
                parts = compiled.split(keras_model)
            if isinstance(parts, compiled.Split):
                probabilities, self.path = compiled.probabilities_fn(parts, sizes), "xla"
            else:
                self.path = "graph" if at == precision.FP32 else f"graph-{at}"
                probabilities = lambda texts: tf.cast(keras_model(texts, training=False), tf.float32)  # noqa: E731
                log.info("model %s served in graph mode: %s", loaded.version, parts)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], reduce_retracing=True)
        def serve(texts: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            """Probabilities (token ids, where OpenVINO computes them), and per text its tokens and
            out-of-vocabulary tokens (for the drift check)."""
            return (probabilities(texts), *count_tokens(texts))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], reduce_retracing=True)
        def serve_counting_words(texts: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
            """`serve`, and how often each word id occurs in the batch (the drift check's word signal)."""
            return (probabilities(texts), *count_tokens.counted(texts))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], reduce_retracing=True)
        def word_counts(texts: tf.Tensor) -> tf.Tensor:
            return count_tokens.histogram(texts)

        self.serve = serve
        self._serve_counting_words = serve_counting_words
        self._word_counts = word_counts
        self.vocabulary_size = count_tokens.size  # word ids 1…, 0 for out of vocabulary
        self.sizes = sizes
        self.warm = False
        self.warmed: set[int] = set()  # batch sizes already run (auto's timing runs the largest)

    def warm_up(self) -> None:
        """Trace the serving function and compile every padded size now, at load, not on the first batches:
        a first batch that takes seconds would also teach RunInference's batcher to keep batches small."""
        for size in self.sizes if self.path == "xla" or self._numeric else self.sizes[:1]:
            if size not in self.warmed:
                self(["warm up"] * size)
        self.warm = True

    def word_counts(self, texts: Sequence[str]) -> np.ndarray:
        """How often each word id occurs in `texts` (the drift check's word signal), as the model cuts them."""
        return self._word_counts(tf.constant(_cut(texts), dtype=tf.string)).numpy()

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(probabilities, tokens, out-of-vocabulary tokens); a text with no tokens is empty.

        Only the first `records.MAX_TEXT_CHARS` characters of a text reach the model, whoever calls.
        """
        return self._numbers(self.serve(tf.constant(_cut(texts), dtype=tf.string)))

    def counting_words(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """`self(texts)` and `self.word_counts(texts)` in one call, standardising each text once."""
        outputs = self._serve_counting_words(tf.constant(_cut(texts), dtype=tf.string))
        return (*self._numbers(outputs[:3]), outputs[3].numpy())

    def _numbers(self, outputs: Sequence[tf.Tensor]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        probabilities, tokens, oov = outputs
        probabilities = probabilities.numpy() if self._numeric is None else self._numeric(probabilities.numpy())
        return probabilities, tokens.numpy(), oov.numpy()


def _cut(texts: Sequence[str]) -> list[str]:
    """Each text's first `records.MAX_TEXT_CHARS` characters: all the model (and its word counts) ever see."""
    return [t if len(t) <= records.MAX_TEXT_CHARS else t[:records.MAX_TEXT_CHARS] for t in texts]


_KEPT: dict[tuple, ServingModel] = {}  # see ModelSlot._serving: Beam's Shared alone would drop it
_LOADS: collections.Counter[str] = collections.Counter()  # ServingModels this process built, by directory


def loads() -> dict[str, int]:
    """How many times this process loaded each model directory: once a worker process, unless it was swapped
    (tests/test_dask.py asks every Dask worker)."""
    return dict(_LOADS)
_KEPT_LOCK = threading.Lock()
_CHOICES: dict[tuple, dict] = {}  # by (model version, setting): how this process chose (the nightly summary)


def precision_choice(model_version: str, asked: PrecisionSetting) -> dict | None:
    """How this process chose the precision it serves `model_version` at when `asked`, if it served it: on
    the local runner the job's worker is this process, so the summary can say what was served and why."""
    return _CHOICES.get((model_version, asked))


class ModelSlot:
    """The model one worker process serves, replaced in place when a newer model is accepted.

    RunInference holds on to what `load_model` returned for the life of the process;
    holding a slot rather than the model lets a swap take effect on the next batch,
    on any runner, with no reload of the pipeline. A candidate that does not load, or
    whose labels differ from the serving model's (a label or a `label_id` would change
    meaning without anyone noticing), is refused: the current model keeps serving.
    """

    def __init__(self, model_dir: str, serving: ServingModel | None = None, xla: bool = True,
                 sizes: tuple[int, ...] | None = None, warm_up: bool = False,
                 at: PrecisionSetting | None = None):
        self.xla, self.warm_up, self.at = xla, warm_up, at or PrecisionSetting()
        self.sizes = sizes or compiled.buckets(DEFAULT_MIN_BATCH_SIZE, DEFAULT_MAX_BATCH_SIZE)
        self.current = serving or self._serving(model_dir)
        self.model_dir = model_dir
        self._seen: dict[str, tuple | None] | None = None  # watched directories considered, by their files' state
        self._next_check = 0.0
        self._lock = threading.Lock()
        _announce(self.current, model_dir)

    def offer(self, model_dir: str) -> bool:
        """Serve `model_dir` from the next batch on, unless it is unfit; True if it was taken."""
        if model_dir.rstrip("/") == self.model_dir.rstrip("/"):
            return False
        try:
            candidate = self._serving(model_dir)
        except UserError as exc:
            return self._refuse(model_dir, str(exc))
        except Exception as exc:  # noqa: BLE001 (whatever a candidate does, the serving model stays)
            return self._refuse(model_dir, f"it does not load ({type(exc).__name__}: {str(exc)[:200]})")
        if list(candidate.labels) != list(self.current.labels):
            added = sorted(set(candidate.labels) - set(self.current.labels))
            removed = sorted(set(self.current.labels) - set(candidate.labels))
            why = f"its labels differ (added {added}, removed {removed})" if added or removed \
                else "its labels are in another order (label_id would change meaning)"
            return self._refuse(model_dir, why)
        self.current, self.model_dir = candidate, model_dir
        beam.metrics.Metrics.counter(METRICS_NAMESPACE, "model_swaps").inc()
        telemetry.MODEL_SWAPS.inc()
        _announce(candidate, model_dir)
        return True

    def watch(self, pattern: str, interval_secs: float) -> None:
        """At most every `interval_secs`: offer the directories that appeared under `pattern`, newest first,
        until one is taken (those older than it are passed over).

        A directory is offered again whenever its files change (size or modification
        time), so one seen while it was still being copied file by file (`gcloud
        storage cp -r` writes in no particular order) is served once it is complete.
        """
        now = time.monotonic()
        if now < self._next_check or not self._lock.acquire(blocking=False):
            return
        try:
            self._next_check = now + interval_secs
            try:
                found = {d: (_written_at(d), artifact.cache_key(d)) for d in artifact.complete_directories(pattern)}
            except (tf.errors.OpError, OSError) as exc:  # a directory removed while listing, a bucket hiccup
                log.warning("could not list %s (%s); looking again in %.0f s", pattern, exc, interval_secs)
                return
            if self._seen is None:  # what is there at start-up is not new
                self._seen = {d: state for d, (_, state) in found.items()}
                self._seen.setdefault(self.model_dir.rstrip("/"), None)
                return
            changed = [d for d, (_, state) in found.items() if d not in self._seen or self._seen[d] != state]
            for d in changed:
                if d in self._seen:
                    log.info("model directory %s changed since it was last considered; offering it again", d)
                self._seen[d] = found[d][1]
            for candidate in sorted(changed, key=lambda d: (found[d][0], d), reverse=True):
                if self.offer(candidate):
                    break
        finally:
            self._lock.release()

    def _serving(self, model_dir: str) -> ServingModel:
        """The process's ServingModel for this unchanged directory and settings, built and warmed up once.

        RunInference keeps the slot in Beam's `shared.Shared`, but Beam keeps only the
        most recently acquired shared object of a process alive, and the stateful
        `BatchElements` before RunInference acquires its own (`WithSharedKey`) each time
        a DoFn is set up. A runner that sets up fresh DoFns for every bundle (Beam's
        local streaming runner) would so drop the model and load and compile it again
        for every bundle. The last ServingModel is therefore kept here, one entry.
        """
        key = (artifact.cache_key(model_dir), self.xla, self.sizes, self.at)
        with _KEPT_LOCK:
            serving = _KEPT.get(key) if key[0] is not None else None
            if serving is None:
                serving = self._at_chosen_precision(artifact.load(model_dir), model_dir)
                _LOADS[model_dir] += 1
                if key[0] is not None:
                    _KEPT.clear()  # one entry, as artifact.load keeps: a swap frees the old model
                    _KEPT[key] = serving
            if self.warm_up and not serving.warm:
                serving.warm_up()
        return serving

    def _at_chosen_precision(self, loaded: artifact.Artifact, model_dir: str) -> ServingModel:
        """The model served at the precision `worker.precision_choice` picks; with several candidates, each is
        compiled and timed here, once, and the fastest kept, unless this machine already measured the same
        candidates for this model (`worker.precision_cache`): then only that one is built."""
        options, why = candidates(self.at, loaded.metadata, model_dir, loaded.model)
        rows, rates = self.sizes[-1], None
        entry_key = precision_cache.key(loaded.version, options, rows, self.xla) if len(options) > 1 else None
        kept = precision_cache.lookup(entry_key) if entry_key else None
        if kept and kept["served"] in options:
            chosen, rates = kept["served"], kept["rows_per_second"]
            built = {chosen: ServingModel(loaded, self.xla, self.sizes, chosen)}
            why = (f"{why}; as timed on this machine at "
                   f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(kept['measured_at']))} "
                   f"({precision_cache.path()})")
        else:
            built = {at: ServingModel(loaded, self.xla, self.sizes, at) for at in options}
            if len(built) > 1:
                texts = probe_texts(rows)
                chosen, measured = fastest({at: (lambda m=m: m(texts)) for at, m in built.items()}, rows,
                                           prefer=precision.FP32)
                rates = {at: round(r, 1) for at, r in measured.items()}  # as logged, kept and summarised
                built[chosen].warmed.add(rows)
                precision_cache.store(entry_key, chosen, rates)
            else:
                [chosen] = built
        serving = built[chosen]
        serving.choice = {"setting": self.at.setting, "served": chosen, "why": why_served(why, chosen, rates),
                          "rows_per_second": rates or None, "measured_now": len(built) > 1}
        _CHOICES[(loaded.version, self.at)] = serving.choice
        return serving

    def _refuse(self, model_dir: str, why: str) -> bool:
        beam.metrics.Metrics.counter(METRICS_NAMESPACE, "model_refused").inc()
        telemetry.MODEL_REFUSED.inc()
        log.warning("refused model %s: %s; still serving %s", model_dir, why, self.current.version)
        return False


def _announce(serving: ServingModel, model_dir: str) -> None:
    """A model taken into service: the log line, and the live job's precision gauges."""
    log.info("serving model %s from %s (%s, %s)", serving.version, model_dir, serving.path, described(serving.choice))
    telemetry.served_precision(serving.choice["served"], serving.choice.get("rows_per_second"))


def _written_at(model_dir: str) -> float:
    return files.stat(files.join(model_dir, artifact.METADATA_FILE)).mtime_nsec / 1e9


class ComplaintModelHandler(ModelHandler[core.Rows, core.Classified, ModelSlot]):
    """A batch of valid rows (`core.Rows`) in; what the core made of it (`core.Classified`) out."""

    def __init__(self, config: WorkerConfig, *, warm_up: bool = True, schema: pa.Schema | None = None,
                 word_counts: bool = False):
        """`config`: model, batch sizes and decoding (`worker.config`); the rest as `WorkerConfig.handler`."""
        super().__init__()
        self.model_dir = config.model_dir
        self.batch_sizes = (min(config.min_batch_size, config.max_batch_size), config.max_batch_size)
        self.decoding = core.Decoding(config.top_k, config.review_threshold, config.max_batch_size,
                                      schema or record_columns.schema(), word_counts)
        self.watch_models = config.watch_models
        self.watch_interval_secs = config.watch_interval_secs
        self.xla = config.xla
        self.at = PrecisionSetting.of(config)
        self.warm_up = warm_up
        self._candidate: str | None = None
        self._slot: ModelSlot | None = None
        _drop_beam_memory_warning()

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        _drop_beam_memory_warning()  # before RunInference measures memory around the first load

    def load_model(self) -> ModelSlot:
        """The process's slot; after `update_model_path`, the same slot offered the new model."""
        if self._slot is None:
            self._slot = ModelSlot(self.model_dir, xla=self.xla, warm_up=self.warm_up,
                                   sizes=compiled.buckets(self.batch_sizes[0], self.batch_sizes[1]), at=self.at)
        if self._candidate:
            self._slot.offer(self._candidate)
            self._candidate = None
        return self._slot

    def update_model_path(self, model_path: str | None = None) -> None:
        """Beam's model-update hook (RunInference's `model_metadata_pcoll`): a model directory,
        or its metadata.json as `WatchFilePattern` reports it."""
        if model_path:
            suffix = "/" + artifact.METADATA_FILE
            self._candidate = model_path[: -len(suffix)] if model_path.endswith(suffix) else model_path

    def should_skip_batching(self) -> bool:
        return True  # the jobs form the batches (see the module's docstring)

    def run_inference(self, batch: core.Rows, model: ModelSlot,
                      inference_args: dict[str, Any] | None = None) -> Iterable[core.Classified]:
        if self.watch_models:
            model.watch(self.watch_models, self.watch_interval_secs)
        serving = model.current  # one model for the whole batch, even if a swap lands meanwhile
        with telemetry.BATCH_LATENCY.time():
            return [core.classify(serving, batch, self.decoding)]

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE

    def get_num_bytes(self, batch: core.Rows) -> int:
        return sum(len(text) for text in batch.texts)
