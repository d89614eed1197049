"""Remote runs are not silent: where a job runs elsewhere, the terminal says which job and where to watch it.

Beam's Dataflow runner logs the console address at INFO, which the command line
keeps quiet; this prints it on stderr as one line. (The Dask runner prints its
scheduler and dashboard itself, `pipelines.plumbing.dask_runner`.)
"""

from __future__ import annotations

import sys

from apache_beam.options.pipeline_options import GoogleCloudOptions

CONSOLE = "https://console.cloud.google.com/dataflow/jobs/{region}/{job}?project={project}"


def watch_line(result, options) -> str | None:
    """The line to print for a submitted job, or None for one that runs here."""
    job_id = getattr(result, "job_id", None)
    if not callable(job_id) or not job_id():
        return None
    cloud = options.view_as(GoogleCloudOptions)
    url = CONSOLE.format(region=cloud.region, job=job_id(), project=cloud.project)
    return f"Dataflow job {job_id()} submitted; watch it at {url}"


def announce(result, options) -> None:
    line = watch_line(result, options)
    if line:
        print(line, file=sys.stderr, flush=True)
