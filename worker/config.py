"""What the worker needs to serve a model, importable without TensorFlow (the CLI reads it for --help).

Each field's metadata is its command-line option's help (`pipelines.app.config_options`),
so a default and its explanation are written once, here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from model.predict import DEFAULT_REVIEW_THRESHOLD, DEFAULT_TOP_K
from worker.defaults import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MIN_BATCH_SIZE


@dataclass(frozen=True)
class WorkerConfig:
    """Which model, and how to batch and decode."""

    model_dir: str = field(metadata={"option": "--model", "help": "Model directory (local or gs://), or a registered "
                                     "model: models:/NAME@ALIAS or models:/NAME/VERSION (docs/registry.md)."})
    registry_uri: str | None = field(default=None, metadata={
        "help": "MLflow registry for models:/ paths (default: $MLFLOW_TRACKING_URI), e.g. sqlite:///registry.db."})
    top_k: int = field(default=DEFAULT_TOP_K, metadata={"low": 1, "help": "Categories listed per prediction."})
    review_threshold: float = field(default=DEFAULT_REVIEW_THRESHOLD, metadata={
        "low": 0, "high": 1, "help": "needs_review is true below this confidence."})
    min_batch_size: int = field(default=DEFAULT_MIN_BATCH_SIZE, metadata={
        "low": 1, "help": "Fewest rows a batch waits for."})
    max_batch_size: int = field(default=DEFAULT_MAX_BATCH_SIZE, metadata={
        "low": 1, "help": "Most rows one call of the model takes."})
    max_batch_duration_secs: int | None = field(default=None, metadata={
        "low": 1, "help": "Longest a message waits for its batch to fill."})  # streaming: batches across bundles
    explain: int = field(default=0, metadata={
        "low": 0, "help": "Add to each prediction the K words that pushed most towards its label (the explanation "
        "field; 0: none). The jobs explain the needs_review rows only, unless --explain-all."})
    explain_all: bool = field(default=False, metadata={
        "help": "With --explain: explain every row (one more prediction per distinct word of each)."})
    watch_models: str | None = field(default=None, metadata={
        "help": "Glob of model directories (models/* or gs://B/models/*): serve each newer complete one that "
                "appears, without a restart; or models:/NAME@ALIAS: serve the version the alias points at."})
    watch_interval_secs: float = field(default=60.0, metadata={
        "low": 1, "help": "How often --watch-models is looked at."})
    precision: str = field(default="auto", metadata={
        "choices": ("auto", "fp32", "bf16", "openvino-bf16", "openvino-f32"),
        "help": "Numeric precision of the model. fp32 runs on TensorFlow or on OpenVINO, whichever is faster here "
                "where the model's record shows OpenVINO computes the same; auto also serves bf16 (OpenVINO's, or "
                "TensorFlow's) where the record allows it and this CPU is faster at it (measured at load) "
                "(docs/precision.md)."})
    force_precision: bool = field(default=False, metadata={
        "help": "Serve --precision bf16, openvino-bf16 or openvino-f32 even where the model's agreement record "
                "forbids it."})
    lineage: str | None = None  # the registry lineage (JSON) of the model the job started with: Parquet footers
    xla: bool = True  # the BiLSTM's numeric core as XLA programs (model/compiled.py); False: all graph mode
