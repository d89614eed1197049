"""The Beam options the jobs run with; their config objects are in `pipelines.config`.

Pipeline construction is a pure function of those configs (`build_batch(p, config)`);
turning command-line leftovers into PipelineOptions, with a local runner that never
downloads anything, happens here.
"""

from __future__ import annotations

import contextlib
import difflib

from apache_beam.options.pipeline_options import (
    DirectOptions,
    GoogleCloudOptions,
    PipelineOptions,
    SetupOptions,
    StandardOptions,
    TestOptions,
)

from model import files
from model.errors import UserError
from pipelines.config import BEAM_READ, LATE_ACK, BatchConfig, StreamConfig

__all__ = ["BEAM_READ", "LATE_ACK", "BatchConfig", "StreamConfig", "beam_options", "stream_options"]

# Beam 2.77's plain DirectRunner first tries Prism, whose binary it downloads. These
# run in-process and never reach the network.
LOCAL_BATCH_RUNNER = "FnApiRunner"
LOCAL_STREAM_RUNNER = "BundleBasedDirectRunner"
# Beam's own DaskRunner computes only one branch of a job; ours (pipelines/plumbing/dask_runner.py) runs them all.
DASK_RUNNERS = {"DaskRunner", "apache_beam.runners.dask.dask_runner.DaskRunner",
                "pipelines.plumbing.dask_runner.DaskRunner"}  # the last: dask_runner.DASK_RUNNER (tested)
LOCAL_RUNNERS = {"FnApiRunner", "BundleBasedDirectRunner", "DirectRunner", "SwitchingDirectRunner", "PrismRunner"}

def refuse_unknown(args: list[str], own: list[str]) -> None:
    """Refuse, in one line naming the nearest option, what neither the command (`own`) nor Beam knows.

    The commands hand options they do not know to Beam, which drops what it does not
    know with a log warning: `--kep-columns store` would run with the defaults and
    exit 0."""
    if not args:
        return
    if any("DaskRunner" in arg for arg in args):
        with contextlib.suppress(ImportError):  # registers the Dask options (without Dask: refused later)
            import apache_beam.runners.dask.dask_runner  # noqa: F401
    options = PipelineOptions(args)
    known = options.get_all_options(retain_unknown_options=False)
    unknown = set(options.get_all_options(retain_unknown_options=True)) - set(known)
    for arg in args:
        name = arg.split("=", 1)[0]
        if arg.startswith("-") and name.lstrip("-").replace("-", "_") in unknown:
            nearest = difflib.get_close_matches(name, [*own, *(f"--{k}" for k in known)], n=1, cutoff=0.6)
            hint = f"did you mean {nearest[0]}?" if nearest else "see --help for this command's options"
            raise UserError(f"no such option: {name} (neither this command nor Apache Beam knows it): {hint}")


def beam_options(beam_args: list[str] | None, streaming: bool = False) -> PipelineOptions:
    """PipelineOptions from leftover arguments, with our local runner as the default."""
    options = PipelineOptions(beam_args or [])
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = LOCAL_STREAM_RUNNER if streaming else LOCAL_BATCH_RUNNER
    if standard.runner in DASK_RUNNERS:
        if streaming:
            raise UserError("the Dask runner runs batch jobs only: run the live job on the local runner or Dataflow")
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise UserError("--runner DaskRunner needs Dask: pip install -e '.[dask]'") from None
        import apache_beam

        from pipelines.plumbing import dask_runner

        dask_runner.refuse_other_beam(apache_beam.__version__)
        standard.runner = dask_runner.DASK_RUNNER  # Beam's, with its gaps closed
    if streaming:
        standard.streaming = True
    # Everything the job pickles imports from the installed package, not __main__.
    options.view_as(SetupOptions).save_main_session = False
    # The job's own file work (pre-flight, lock, commit) uses these options too, so --no_auth, a project or a
    # storage emulator apply before the pipeline runs, not only inside it.
    from apache_beam.io.filesystems import FileSystems

    from model.files import emulator_without_credentials

    FileSystems.set_options(options)
    emulator_without_credentials()
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
        if location and not files.remote(location):
            os.makedirs(location, exist_ok=True)


def is_local(options: PipelineOptions) -> bool:
    return (options.view_as(StandardOptions).runner or "") in LOCAL_RUNNERS


def template_only(options: PipelineOptions) -> bool:
    """`--template_location` or `--dry_run` build the Dataflow job without running it."""
    dry_run = options.view_as(TestOptions).dry_run
    return bool(options.view_as(GoogleCloudOptions).template_location) or dry_run not in (False, "False", None)
