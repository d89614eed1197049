"""Config objects for the jobs, and the Beam options they run with.

Pipeline construction is a pure function of these configs (`build_batch(p, config)`);
turning command-line leftovers into PipelineOptions, with a local runner that never
downloads anything, happens here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from apache_beam.options.pipeline_options import (
    DirectOptions,
    GoogleCloudOptions,
    PipelineOptions,
    SetupOptions,
    StandardOptions,
    TestOptions,
)

from model.errors import UserError
from pipelines.drift import DEFAULT_THRESHOLD
from pipelines.lease_settings import STOP_TIMEOUT_SECS, UNHEALTHY_AFTER_SECS, LeaseSettings
from pipelines.lock import DEFAULT_STALE_SECS
from worker.transform import WorkerConfig

# Beam 2.77's plain DirectRunner first tries Prism, whose binary it downloads. These
# run in-process and never reach the network.
LOCAL_BATCH_RUNNER = "FnApiRunner"
LOCAL_STREAM_RUNNER = "BundleBasedDirectRunner"
LOCAL_RUNNERS = {"FnApiRunner", "BundleBasedDirectRunner", "DirectRunner", "SwitchingDirectRunner", "PrismRunner"}

# How the live job reads Pub/Sub: the project's late-acknowledging read (local
# runners), or Beam's native ReadFromPubSub (Dataflow; locally for comparison only).
LATE_ACK = "late-ack"
BEAM_READ = "beam"


@dataclass(frozen=True)
class BatchConfig:
    """The nightly job: which archive, which model, where the labels go."""

    input_pattern: str
    output: str
    worker: WorkerConfig
    id_column: str = "id"
    text_column: str = "text"
    keep_columns: tuple[str, ...] = ()
    derive_missing_id: bool = True  # the id column is the default one and may be absent
    progress: bool = True
    validate: bool = True  # check input files before building the pipeline
    passthrough_fields: tuple = field(default=())  # pyarrow fields of keep_columns, filled by the pre-flight
    drift_threshold: float | None = DEFAULT_THRESHOLD  # None: derived per signal for tonight's size (drift.py)
    compare_to: str | None = None  # a previous run's output: its label distribution is compared too
    xla_min_rows: int = 0  # smaller archives are served in graph mode (the compile would cost more than it saves)
    lock_stale_secs: float = DEFAULT_STALE_SECS  # object stores: a hold not renewed for this long is taken over


@dataclass(frozen=True)
class StreamConfig:
    """The live job: subscription in, topics out, optional Parquet archive."""

    subscription: str
    output_topic: str
    worker: WorkerConfig
    dead_letter_topic: str | None = None
    archive_output: str | None = None
    window_seconds: int = 60
    read: str = "auto"  # LATE_ACK on local runners, BEAM_READ elsewhere; stream_options() resolves it
    lease: LeaseSettings = field(default_factory=LeaseSettings)  # the late-ack read's flow control and deadline
    stop_timeout_secs: float = STOP_TIMEOUT_SECS  # after SIGINT/SIGTERM, the longest the late-ack job takes to stop
    metrics_port: int | None = None  # late-ack job: Prometheus metrics and /healthz on this port
    metrics_host: str = "127.0.0.1"
    unhealthy_after_secs: float = UNHEALTHY_AFTER_SECS  # /healthz fails when no pull has succeeded for this long


def beam_options(beam_args: list[str] | None, streaming: bool = False) -> PipelineOptions:
    """PipelineOptions from leftover arguments, with our local runner as the default."""
    options = PipelineOptions(beam_args or [])
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = LOCAL_STREAM_RUNNER if streaming else LOCAL_BATCH_RUNNER
    if streaming:
        standard.streaming = True
    # Everything the job pickles imports from the installed package, not __main__.
    options.view_as(SetupOptions).save_main_session = False
    return options


def stream_options(beam_args: list[str] | None, read: str = "auto") -> tuple[PipelineOptions, str]:
    """Options for the live job, and which read it uses.

    The late-ack read runs on the in-process FnApiRunner as one endless fused stage
    (not in Beam's streaming mode, whose local runner cannot run a splittable read);
    it needs the reading and publishing steps in one process.
    """
    requested = PipelineOptions(beam_args or []).view_as(StandardOptions).runner
    local = not requested or requested in LOCAL_RUNNERS
    if read == "auto":
        read = LATE_ACK if local else BEAM_READ
    options = beam_options(beam_args, streaming=read != LATE_ACK)
    if read == LATE_ACK:
        if not local:
            raise UserError(f"the late-acknowledging Pub/Sub read runs on the local runner only, not on "
                            f"{requested}: leave the read to Beam there")
        if options.view_as(DirectOptions).direct_running_mode == "multi_processing":
            raise UserError("the live job runs in one process locally: drop --direct_running_mode=multi_processing")
        options.view_as(StandardOptions).runner = LOCAL_BATCH_RUNNER  # whichever local runner was named
    return options, read


def create_local_locations(options: PipelineOptions) -> None:
    """Create local --temp_location/--staging_location directories.

    Beam's Dataflow stager retries a missing local staging directory with exponential
    backoff for about eight minutes before failing; gs:// locations need no creation.
    """
    import os

    cloud = options.view_as(GoogleCloudOptions)
    for location in (cloud.temp_location, cloud.staging_location):
        if location and "://" not in location:
            os.makedirs(location, exist_ok=True)


def is_local(options: PipelineOptions) -> bool:
    return (options.view_as(StandardOptions).runner or "") in LOCAL_RUNNERS


def template_only(options: PipelineOptions) -> bool:
    """`--template_location` or `--dry_run` build the Dataflow job without running it."""
    dry_run = options.view_as(TestOptions).dry_run
    return bool(options.view_as(GoogleCloudOptions).template_location) or dry_run not in (False, "False", None)
