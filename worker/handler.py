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

import logging
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
from apache_beam.ml.inference.base import ModelHandler

from model import artifact, compiled
from worker import core, record_columns, telemetry
from worker.config import WorkerConfig
from worker.defaults import METRICS_NAMESPACE
from worker.precision_choice import PrecisionSetting
from worker.slot import ModelSlot


class _DropBeamMemoryWarning(logging.Filter):
    """Beam 2.77 imports `resource` and its torch-only ModelManager in one try block,
    so without torch installed it logs "Resource module is not available" (on the root
    logger) on every batch. The message is false on Linux and says nothing about our job."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Resource module is not available")


_MEMORY_WARNING_FILTER = _DropBeamMemoryWarning()


def _drop_beam_memory_warning() -> None:
    """Installed when a model handler is built or unpickled on a worker, not at import:
    importing the worker (as the CLI and notebooks do) leaves the root logger untouched."""
    root = logging.getLogger()
    if _MEMORY_WARNING_FILTER not in root.filters:
        root.addFilter(_MEMORY_WARNING_FILTER)


class ComplaintModelHandler(ModelHandler[core.Rows, core.Classified, ModelSlot]):
    """A batch of valid rows (`core.Rows`) in; what the core made of it (`core.Classified`) out."""

    def __init__(self, config: WorkerConfig, *, warm_up: bool = True, schema: pa.Schema | None = None,
                 word_counts: bool = False):
        """`config`: model, batch sizes and decoding (`worker.config`); `warm_up`: compile every padded batch size
        at load (jobs), or each when first seen; `schema`: of the prediction tables (default: records');
        `word_counts`: for the drift check."""
        super().__init__()
        self.model_dir = config.model_dir
        self.batch_sizes = (min(config.min_batch_size, config.max_batch_size), config.max_batch_size)
        self.decoding = core.Decoding(config.top_k, config.review_threshold, config.max_batch_size,
                                      schema or record_columns.schema(config.explain > 0), word_counts,
                                      config.explain, config.explain_all)
        self.watch_models = config.watch_models
        self.watch_interval_secs = config.watch_interval_secs
        self.registry_uri = config.registry_uri
        self.xla = config.xla
        self.asked = PrecisionSetting.of(config)
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
                                   sizes=compiled.buckets(self.batch_sizes[0], self.batch_sizes[1]), asked=self.asked)
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
            model.watch_beside(self.watch_models, self.watch_interval_secs, self.registry_uri)
        model.report_counts()
        serving = model.current  # one model for the whole batch, even if a swap lands meanwhile
        telemetry.BATCH_ROWS.observe(len(batch.texts))
        with telemetry.BATCH_LATENCY.time():
            return [core.classify(serving, batch, self.decoding)]

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE

    def get_num_bytes(self, batch: core.Rows) -> int:
        return sum(len(text) for text in batch.texts)
