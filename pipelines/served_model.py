"""Which model directory the workers read, and what the outputs say about it.

A `models:/` path was resolved on the launcher to a local copy (`pipelines.app.registered`).
That copy is all a local runner (or a Dask cluster on this machine) needs. Remote workers
(Dataflow) cannot read the launcher's disk, so for them the copy is staged under the
job's `--temp_location`, once per version, and they load it from there like any gs://
model. The registry lineage goes into the worker config, from where the sinks write it
into the Parquet footers.
"""

from __future__ import annotations

import json
from dataclasses import replace

from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, StandardOptions

from model import files, registry
from model.errors import UserError
from pipelines.options import DASK_RUNNERS, is_local
from worker.config import WorkerConfig


def served_from(worker: WorkerConfig, metadata: dict, options: PipelineOptions) -> WorkerConfig:
    """`worker` with the registry lineage of its model, read from a place the runner's workers can reach."""
    lineage = registry.lineage_of(metadata)
    if lineage is None:
        return worker
    worker = replace(worker, lineage=json.dumps(lineage, sort_keys=True))
    if is_local(options) or files.remote(worker.model_dir) or _dask(options):
        return worker
    temp = options.view_as(GoogleCloudOptions).temp_location
    if not temp or not files.remote(temp):
        raise UserError(f"{registry.described(lineage)} was resolved to {worker.model_dir} on this machine, which "
                        "remote workers cannot read: give --temp_location gs://BUCKET/tmp, where it is staged")
    return replace(worker, model_dir=registry.stage(worker.model_dir, temp, lineage))


def _dask(options: PipelineOptions) -> bool:
    return (options.view_as(StandardOptions).runner or "") in DASK_RUNNERS


def challenger(worker: WorkerConfig, shadow_dir: str | None, champion_version: str,
               options: PipelineOptions) -> tuple[WorkerConfig | None, dict | None]:
    """(`--shadow`'s model as the workers serve it, or None; what the summary says about it).

    Loaded once here, so a challenger that does not load, or cannot be served at the
    asked precision, fails the run in one line before any work. It is served as the
    champion is (batching, precision setting), but never explains, never follows a
    watch, and keeps its own lineage. A challenger that is the champion's own version
    (the alias just moved to it) is not scored twice: a scheduled night goes on, and
    says so.
    """
    if not shadow_dir:
        return None, None
    from model import artifact
    from worker.precision_choice import PrecisionSetting, candidates

    loaded = artifact.load(shadow_dir)
    if loaded.version == champion_version:
        return None, {"not_scored": f"it is the champion's own model {champion_version}"}
    shadow = replace(worker, model_dir=shadow_dir, explain=0, explain_all=False, watch_models=None, lineage=None)
    candidates(PrecisionSetting.of(shadow), loaded.metadata, shadow_dir, loaded.model)
    return served_from(shadow, loaded.metadata, options), {"model_dir": shadow_dir}
