"""The nightly job: a Parquet archive in, labelled Parquet out, committed atomically.

`build_batch(p, config)` only wires transforms; `run(config, beam_args)` does the
pre-flight checks, runs the pipeline, commits the output and returns the summary.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from dataclasses import replace

import apache_beam as beam
import pyarrow as pa
from apache_beam.options.pipeline_options import GoogleCloudOptions

from model import artifact
from model.errors import UserError
from pipelines import drift
from pipelines import output as out
from pipelines.errors import JobFailed, cause
from pipelines.options import BatchConfig, beam_options, create_local_locations, is_local, template_only
from pipelines.parquet import ReadComplaints, inspect_inputs
from pipelines.progress import ReportProgress
from pipelines.sinks import DEAD_LETTERS, PREDICTIONS, Sink, batch_sinks
from pipelines.summary import ComputeRunStats, assemble
from worker import prediction
from worker.tables import ClassifyTables
from worker.transform import DEAD_LETTER_PARTS

STATS_FILE = "_stats.json"


def staging_of(config: BatchConfig, run_id: str) -> str:
    return out.staging_dir(config.output, run_id)


def build_batch(p: beam.Pipeline, config: BatchConfig, staging: str, total_rows: int | None = None,
                sinks: list[Sink] | None = None) -> dict:
    """Wire read → classify → the config's sinks (`pipelines.sinks.batch_sinks`), and the run statistics.

    Rows travel as Arrow tables (`worker.tables`): the predictions the sinks receive
    are tables of `prediction.schema`, the dead letters records, in two parts.
    """
    tables = p | "ReadArchive" >> ReadComplaints(
        config.input_pattern, config.id_column, config.text_column, config.keep_columns, config.derive_missing_id
    )
    if config.progress:
        tables = tables | "Progress" >> beam.ParDo(ReportProgress(total_rows))
    results = tables | "Classify" >> ClassifyTables(config.worker, prediction.schema(config.passthrough_fields))
    classified = {PREDICTIONS: results[PREDICTIONS], DEAD_LETTERS: {p: results[p] for p in DEAD_LETTER_PARTS}}
    for sink in sinks if sinks is not None else batch_sinks(config, staging):
        classified | type(sink).__name__ >> sink
    (
        (tables, classified[PREDICTIONS], classified[DEAD_LETTERS])
        | "RunStats" >> ComputeRunStats()
        | "WriteStats" >> beam.io.WriteToText(out.join(staging, STATS_FILE), shard_name_template="")
    )
    return classified


def preflight(config: BatchConfig) -> tuple[BatchConfig, list, dict]:
    """Check model and inputs before any work; fill in the passthrough column types.

    The model is loaded here once, so a directory that does not load fails in one
    line before any input is read; the workers load their own copy.
    """
    metadata = artifact.load(config.worker.model_dir).metadata
    required = [config.text_column, *config.keep_columns]
    if not config.derive_missing_id:
        required.append(config.id_column)
    files = inspect_inputs(config.input_pattern, required, config.id_column, config.text_column)
    fields = tuple(passthrough_field(files, name) for name in config.keep_columns if name not in ("id", "text"))
    return replace(config, passthrough_fields=fields), files, metadata


def passthrough_field(files: list, name: str) -> pa.Field:
    """A kept column's type in the predictions: the one type every file agrees on.

    Dictionary encoding counts as its values' type, and an all-null column agrees
    with any type; files that disagree otherwise fail here, in one line, rather than
    in the writer after the whole archive has been labelled.
    """
    chosen = None
    for f in files:
        field = f.schema.field(name)
        kind = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
        if pa.types.is_null(kind):
            continue
        if chosen is None:
            chosen = (f.path, kind)
        elif kind != chosen[1]:
            raise UserError(f"kept column {name!r} is {kind} in {f.path} but {chosen[1]} in {chosen[0]}: make the "
                            "files agree, or leave it out of --keep-columns")
    return pa.field(name, chosen[1] if chosen else pa.null())


def run(config: BatchConfig, beam_args: list[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> dict:
    """Run the job to completion and commit its output; returns the summary."""
    options = beam_options(beam_args)
    create_local_locations(options)
    if config.validate:
        config, files, metadata = preflight(config)
        total_rows = sum(f.rows for f in files)
        inputs = [{"path": f.path, "size_bytes": f.size_bytes, "rows": f.rows} for f in files]
    else:
        _, metadata = artifact.read_metadata(config.worker.model_dir)
        total_rows, inputs = None, [{"path": config.input_pattern}]
    if total_rows is not None and total_rows < config.xla_min_rows:
        config = replace(config, worker=replace(config.worker, xla=False))
    previous = out.read_summary(config.compare_to) if config.compare_to else None
    if not is_local(options):
        config = replace(config, progress=False)
    run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    staging = staging_of(config, run_id)
    out.prepare(config.output, staging)
    started, clock = dt.datetime.now(dt.UTC), time.monotonic()
    sinks = batch_sinks(config, staging)
    try:
        p = test_pipeline or beam.Pipeline(options=options)
        build_batch(p, config, staging, total_rows, sinks)
        result = p.run()
        if template_only(options):
            return {"template_location": options.view_as(GoogleCloudOptions).template_location,
                    "staging": staging}
        result.wait_until_finish()
        stats = json.loads(out.read_text(out.join(staging, STATS_FILE)))
    except UserError:
        _abort(sinks, staging)
        raise
    except Exception as exc:
        _abort(sinks, staging)
        raise JobFailed(f"the labelling job failed ({cause(exc)}); nothing was committed to {config.output}") \
            from exc
    summary = assemble(
        stats, model_version=metadata["model_version"], inputs=inputs, output=config.output,
        started=started.isoformat(timespec="seconds"), finished=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        seconds=time.monotonic() - clock,
    )
    if not summary["balanced"]:
        _abort(sinks, staging)
        raise JobFailed(f"rows in ({summary['rows_in']}) ≠ predicted + dead-lettered; nothing was committed")
    summary["drift"] = drift.section(summary, metadata.get("baseline"), config.drift_threshold, previous)
    out.write_bytes(out.join(staging, out.REPORT), drift.report_png(summary, metadata.get("baseline"), previous))
    published = [name for sink in sinks for name in sink.commit(staging)]
    return out.commit(config.output, staging, summary, published)


def _abort(sinks: list[Sink], staging: str) -> None:
    for sink in sinks:
        sink.abort(staging)
    out.abort(staging)
