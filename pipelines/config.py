"""The jobs' config objects, importable without Apache Beam (the CLI derives its options from them for --help).

Each field's metadata is its command-line option's help (`pipelines.app.config_options`),
so every default and its explanation are written once, here or in `worker.config`
and `pipelines.plumbing.lease_settings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.plumbing.bigquery import DEADLINE_SECS as BIGQUERY_DEADLINE_SECS
from pipelines.plumbing.hold import DEFAULT_STALE_SECS
from pipelines.plumbing.lease_settings import STOP_TIMEOUT_SECS, UNHEALTHY_AFTER_SECS, LeaseSettings
from worker.config import WorkerConfig

DEFAULT_THRESHOLD = None  # drift: derived per night; --drift-threshold sets one for every divergence signal

# How the live job reads Pub/Sub: the project's late-acknowledging read (local
# runners), or Beam's native ReadFromPubSub (Dataflow; locally for comparison only).
LATE_ACK = "late-ack"
BEAM_READ = "beam"


@dataclass(frozen=True)
class BatchConfig:
    """The nightly job: which archive, which model, where the labels go. Field metadata: the CLI's help."""

    input_pattern: str = field(metadata={"option": "--input", "help": "Parquet file or glob (local or gs://)."})
    output: str = field(metadata={"help": "Output directory: predictions, dead letters, summary, _SUCCESS."})
    worker: WorkerConfig
    id_column: str = field(default="id", metadata={
        "help": "Left at the default and absent from a file, ids are derived as FILE_NAME:ROW."})
    text_column: str = field(default="text", metadata={"help": "The column holding the complaint."})
    keep_columns: tuple[str, ...] = ()
    derive_missing_id: bool = True  # the id column is the default one and may be absent
    progress: bool = field(default=True, metadata={"help": "Show a progress bar (local runners)."})
    validate: bool = True  # check input files before building the pipeline
    drift_threshold: float | None = field(default=DEFAULT_THRESHOLD, metadata={
        "low": 0, "high": 1, "help": "One Jensen–Shannon / L-infinity threshold for every divergence signal "
        "(default: each derived for tonight's row count from the model's drift reference)."})
    compare_to: str | None = field(default=None, metadata={
        "help": "A previous night's --output: compare today's label distribution with it too."})
    corrections: str | None = field(default=None, metadata={
        "help": "The review answers file (`review import`'s --out): the summary gains a `review` section "
        "(correction rate per model version and category, accuracy on reviewed rows, kappa, disagreements)."})
    shadow: str | None = field(default=None, metadata={
        "help": "A challenger (a model directory, or models:/NAME@challenger) that scores the same rows beside "
        "--model: its verdicts go to shadow-*.parquet (and TABLE_shadow with --bigquery-table), never to the "
        "predictions, and the summary compares the two (docs/registry.md#champion-and-challenger)."})
    bigquery_table: str | None = field(default=None, metadata={
        "help": "Also load the night into this BigQuery table (PROJECT.DATASET.TABLE; dead letters into "
        "TABLE_dead_letters), in the same commit: a rerun replaces the night's rows (docs/bigquery.md)."})
    night: str | None = field(default=None, metadata={
        "help": "The night's date (YYYY-MM-DD): the BigQuery rows' `night` and partition. Default: the last date "
        "--output spells (…/2026-12-01), else the day the run starts (UTC); --bigquery-table needs one of the two."})
    bigquery_deadline_secs: float = field(default=BIGQUERY_DEADLINE_SECS, metadata={
        "low": 1, "help": "Each BigQuery call's deadline; a job (a load, the swap) gets five of them before it is "
        "cancelled. A warehouse that stops answering fails the night in one line."})
    bigquery_busy_wait_secs: float = field(default=900.0, metadata={
        "low": 0, "help": "How long the swap waits out concurrent transactions on the table (backfills), with "
        "jitter; past it the labelled night stays staged and `complaints commit` commits it later."})
    bigquery_scratch_dataset: str | None = field(default=None, metadata={
        "help": "The dataset for the run's load and undo tables (default: the table's own)."})
    bigquery_dead_letter_text: bool = field(default=False, metadata={
        "help": "Put the dead letters' payload (the complaint's text) into the warehouse; by default only its "
        "SHA-256."})
    xla_min_rows: int = 0  # smaller archives are served in graph mode (the compile would cost more than it saves)
    lock_stale_secs: float = field(default=DEFAULT_STALE_SECS, metadata={
        "low": 60, "help": "gs:// outputs: a hold on the output not renewed for this long is taken over (local "
        "holds end with their process)."})


@dataclass(frozen=True)
class StreamConfig:
    """The live job: subscription in, topics out, optional Parquet archive. Field metadata: the CLI's help."""

    subscription: str = field(metadata={"help": "projects/P/subscriptions/S to read complaints from."})
    output_topic: str = field(metadata={"help": "projects/P/topics/T for labelled complaints."})
    worker: WorkerConfig
    dead_letter_topic: str | None = field(default=None, metadata={
        "help": "projects/P/topics/D for messages that cannot be labelled."})
    archive_output: str | None = field(default=None, metadata={
        "help": "Also write predictions as Parquet per window under this prefix."})
    shadow: str | None = field(default=None, metadata={
        "help": "A challenger (a model directory, or models:/NAME@challenger) that scores the same rows beside "
        "--model: its verdicts go to --archive-output's shadow-*.parquet, never to the output topic "
        "(docs/registry.md#champion-and-challenger)."})
    window_seconds: int = field(default=60, metadata={"low": 1, "help": "The archive's window of labelling time."})
    read: str = field(default="auto", metadata={
        "choices": ("auto", LATE_ACK, BEAM_READ), "help": "auto: the late-acknowledging read on local runners, "
        "Beam's ReadFromPubSub elsewhere; beam: Beam's own reader (locally it acknowledges on pull, see "
        "docs/live-job.md)."})  # stream_options() resolves auto
    lease: LeaseSettings = field(default_factory=LeaseSettings)  # the late-ack read's flow control and deadline
    stop_timeout_secs: float = field(default=STOP_TIMEOUT_SECS, metadata={
        "low": 1, "help": "Local read: after SIGINT/SIGTERM, the longest the job takes to stop; what it could not "
        "publish by then is redelivered."})
    metrics_port: int | None = field(default=None, metadata={
        "low": 1, "high": 65535, "help": "Local read: serve Prometheus metrics on /metrics and a health check on "
        "/healthz at this port (off by default)."})
    metrics_host: str = field(default="127.0.0.1", metadata={"help": "Address the metrics endpoint binds."})
    unhealthy_after_secs: float = field(default=UNHEALTHY_AFTER_SECS, metadata={
        "low": 1, "help": "/healthz fails once no pull has succeeded for this long, or at once when a thread "
        "died."})
