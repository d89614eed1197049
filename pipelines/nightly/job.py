"""The nightly job: a Parquet archive in, labelled Parquet out, committed atomically.

`build_batch(p, config)` only wires transforms; `run(config, beam_args)` does the
pre-flight checks, takes the output (`pipelines.plumbing.hold`), runs the pipeline, checks the
books, commits the output (`pipelines.plumbing.commit`) and returns the summary.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
import posixpath
import time
import uuid
from dataclasses import dataclass, replace

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import GoogleCloudOptions

from model import artifact, registry
from model.errors import UserError
from pipelines import remote
from pipelines.errors import JobFailed, cause
from pipelines.nightly import drift, pending
from pipelines.nightly.bigquery_reading import ReadTable, TableSession, is_bigquery, open_table
from pipelines.nightly.outputs import batch_sinks
from pipelines.nightly.progress import ReportProgress
from pipelines.nightly.reading import (
    FILES,
    Expected,
    InputFile,
    InputSpec,
    ReadComplaints,
    describe_skipped,
    inspect_inputs,
    plain_type,
)
from pipelines.nightly.summary import WORDS, ComputeRunStats, assemble
from pipelines.options import BatchConfig, beam_options, create_local_locations, is_local, template_only
from pipelines.plumbing import commit, night
from pipelines.plumbing.hold import HoldLost, OutputLock, staging_alive
from pipelines.served_model import served_from
from pipelines.sinks import DEAD_LETTERS, PREDICTIONS, Sink, settlers
from pipelines.sinks.bigquery_tables import BigQueryTables, WarehouseBusy
from worker import prediction
from worker.precision_choice import PrecisionSetting, candidates
from worker.slot import precision_choice
from worker.tables import WORD_COUNTS, ClassifyTables
from worker.transform import DEAD_LETTER_PARTS

STATS_FILE = "_stats.json"
log = logging.getLogger(__name__)


def staging_of(config: BatchConfig, run_id: str) -> str:
    return commit.staging_dir(config.output, run_id)


def build_batch(p: beam.Pipeline, config: BatchConfig, staging: str, total_rows: int | None = None,
                sinks: list[Sink] | None = None, expected: list[Expected] | TableSession | None = None) -> dict:
    """Wire read → classify → the config's sinks (`pipelines.nightly.outputs.batch_sinks`), and the run statistics.

    Rows travel as Arrow tables (`worker.tables`): the predictions the sinks receive
    are tables of `prediction.schema`, the dead letters records, in two parts.
    `expected` are the pre-flight's files: exactly those are read; without them the
    input pattern is matched when the pipeline runs (`--skip-validation`, templates).
    For `--input bq://` it is the pre-flight's read session on the table.
    """
    if isinstance(expected, TableSession):  # --input bq://: the pre-flight's read session
        read = p | "ReadTable" >> ReadTable(expected, config.id_column, config.text_column, config.keep_columns)
    else:
        read = p | "ReadArchive" >> ReadComplaints(
            InputSpec.of(config.input_pattern, config.output), expected, config.id_column, config.text_column,
            config.keep_columns, config.derive_missing_id,
        )
    tables = read["tables"]
    if config.progress:
        tables = tables | "Progress" >> beam.ParDo(ReportProgress(total_rows))
    results = tables | "Classify" >> ClassifyTables(config.worker, prediction.schema(config.passthrough_fields,
                                                                                     config.worker.explain > 0))
    classified = {PREDICTIONS: results[PREDICTIONS], DEAD_LETTERS: {p: results[p] for p in DEAD_LETTER_PARTS}}
    for sink in sinks if sinks is not None else batch_sinks(config, staging):
        classified | type(sink).__name__ >> sink
    (
        (tables, classified[PREDICTIONS], classified[DEAD_LETTERS], read[FILES], results[WORD_COUNTS])
        | "RunStats" >> ComputeRunStats()
        | "WriteStats" >> beam.io.WriteToText(commit.join(staging, STATS_FILE), shard_name_template="")
    )
    return classified


def preflight(config: BatchConfig) -> tuple[BatchConfig, list[InputFile], dict[str, int], dict, TableSession | None]:
    """Check model and inputs before any work; fill in the passthrough column types.

    The model is loaded here once, so a directory that does not load fails in one
    line before any input is read; the workers load their own copy. A `bq://` input
    is checked and opened at one snapshot (`pipelines.nightly.bigquery_reading`).
    """
    metadata = artifact.load(config.worker.model_dir).metadata
    required = [config.text_column, *config.keep_columns]
    session = None
    if is_bigquery(config.input_pattern):
        table, session = open_table(config.input_pattern, required, config.id_column, config.text_column,
                                    config.derive_missing_id)
        files, skipped = [table], {}
    else:
        if not config.derive_missing_id:
            required.append(config.id_column)
        files, skipped = inspect_inputs(InputSpec.of(config.input_pattern, config.output), required,
                                        config.id_column, config.text_column)
    fields = tuple(passthrough_field(files, name) for name in config.keep_columns if name not in ("id", "text"))
    return replace(config, passthrough_fields=fields), files, skipped, metadata, session


def passthrough_field(files: list, name: str) -> pa.Field:
    """A kept column's type in the predictions: the one type every file agrees on.

    Dictionary encoding counts as its values' type, Arrow's view layouts as the plain
    ones, and an all-null column agrees with any type; files that disagree otherwise
    fail here, in one line, rather than in the writer after the whole archive has been
    labelled.
    """
    chosen = None
    for f in files:
        field = f.schema.field(name)
        kind = plain_type(field.type.value_type if pa.types.is_dictionary(field.type) else field.type)
        if pa.types.is_null(kind):
            continue
        if chosen is None:
            chosen = (f.path, kind)
        elif kind != chosen[1]:
            raise UserError(f"kept column {name!r} is {kind} in {f.path} but {chosen[1]} in {chosen[0]}: make the "
                            "files agree, or leave it out of --keep-columns")
    return pa.field(name, chosen[1] if chosen else pa.null())


def run(config: BatchConfig, beam_args: list[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> dict:
    """Run the job to completion and commit its output; returns the summary.

    The output is held (`pipelines.plumbing.hold`) from before anything in it changes until
    after the commit; a template build (`--template_location`, `--dry_run`) never
    touches it at all.
    """
    options = beam_options(beam_args)
    config = replace(config, output=night.normalised(config.output))  # one spelling for both stores
    date, night_from = night.of_run(config.output, config.night,
                                        needed_by="--bigquery-table" if config.bigquery_table else None)
    config = replace(config, night=date)
    create_local_locations(options)
    building = template_only(options)
    expected, skipped = None, {}
    if is_bigquery(config.input_pattern) and (building or not config.validate):
        raise UserError("--input bq:// is read through a session the pre-flight opens on this machine: run it "
                        "without --skip-validation and --template_location/--dry_run")
    if config.validate:
        config, files, skipped, metadata, session = preflight(config)
        total_rows = sum(f.rows for f in files)
        inputs = [{"path": f.path, "size_bytes": f.size_bytes, "rows": f.rows} for f in files]
        expected = None if building else session or [Expected(f.path, f.size_bytes, f.rows) for f in files]
    else:
        _, metadata = artifact.read_metadata(config.worker.model_dir)
        total_rows, inputs = None, [{"path": config.input_pattern}]
    candidates(PrecisionSetting.of(config.worker), metadata, config.worker.model_dir)  # a refusal: one line, now
    config = replace(config, worker=served_from(config.worker, metadata, options))
    found = Found(metadata, inputs, total_rows, expected, skipped, night_from)
    if total_rows is not None and total_rows < config.xla_min_rows:
        config = replace(config, worker=replace(config.worker, xla=False))
    previous = commit.read_summary(config.compare_to) if config.compare_to else None
    compared = drift.Compared.of(config.worker.model_dir, metadata, previous)  # a broken reference: one line, now
    if not is_local(options):
        config = replace(config, progress=False)
    run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    staging = staging_of(config, run_id)
    if building and config.bigquery_table:
        raise UserError("--bigquery-table loads the night when this command commits it, which a template build "
                        "never does: run the job without --template_location/--dry_run, or load the committed "
                        "files yourself (docs/bigquery.md)")
    if building:  # a template runs later, on that night's files: nothing here is read or written
        p = test_pipeline or beam.Pipeline(options=options)
        build_batch(p, config, staging, total_rows, batch_sinks(config, staging))
        p.run()
        return {"template_location": options.view_as(GoogleCloudOptions).template_location, "staging": staging}
    sinks = batch_sinks(config, staging)
    for sink in sinks:
        sink.check()  # a BigQuery table whose schema differs: one line, before the output is touched
    existed = FileSystems.exists(config.output)
    lock = OutputLock(config.output, run_id, config.lock_stale_secs, options).acquire()
    try:
        alive = functools.partial(staging_alive, stale_secs=config.lock_stale_secs)
        settled, leftovers = commit.recover(config.output, staging, alive, settlers())  # a killed commit settled
        for line in settled:
            log.warning("%s", line)
        commit.prepare(config.output, staging)
        lock.claim(staging)
        job = Job(config, options, staging, run_id, found, compared, sinks, lock.check)
        summary = job.run(test_pipeline)
    finally:
        lock.release()
        if not existed:
            _remove_if_empty(config.output)
    if lock.taken_over is not None:
        summary["took_over_hold_of"] = lock.taken_over.describe()
    if leftovers:
        summary["cleared_leftovers"] = [posixpath.basename(f) for f in leftovers]
    if settled:
        summary["settled_commits"] = settled
    return summary


@dataclass(frozen=True)
class Found:
    """What the pre-flight found: the model's metadata and the inputs (none of it with --skip-validation)."""

    metadata: dict
    inputs: list[dict]  # for the summary: path, and size and rows when known
    total_rows: int | None
    expected: list[Expected] | TableSession | None  # exactly these files (or this table session) are read
    skipped: dict[str, int]  # by the pre-flight; with --skip-validation the reader counts them
    night_from: str = "given"  # where the night's date came from (`pipelines.plumbing.night.of_run`)


class Job:
    """One run while the output is held: pipeline, books, drift and report, commit; any failure undone."""

    def __init__(self, config: BatchConfig, options, staging: str, run_id: str, found: Found,
                 compared: drift.Compared, sinks: list[Sink], fence=commit.unfenced):
        self.config, self.options, self.staging, self.run_id = config, options, staging, run_id
        self.fence = fence  # raises HoldLost once another run holds the output
        self.metadata, self.inputs, self.total_rows = found.metadata, found.inputs, found.total_rows
        self.expected, self.compared, self.skipped = found.expected, compared, found.skipped
        self.night_from = found.night_from
        self.sinks = sinks  # the ones run() checked before taking the output

    def run(self, test_pipeline: beam.Pipeline | None = None) -> dict:
        output = self.config.output
        try:
            stats, started, seconds = self._pipeline(test_pipeline)
            summary = assemble(
                stats, model_version=self.metadata["model_version"], inputs=self.inputs, output=output,
                started=started, finished=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), seconds=seconds,
                lineage=registry.lineage_of(self.metadata),
            )
            summary["source"] = {"input": self.config.input_pattern, "id_column": self.config.id_column,
                                 "text_column": self.config.text_column,
                                 "derive_missing_id": self.config.derive_missing_id}  # `review export` joins by it
            self._check_books(summary, stats)
            asked = PrecisionSetting.of(self.config.worker)
            summary["precision"] = precision_choice(self.metadata["model_version"], asked) or {
                "setting": asked.setting, "served": None,
                "why": "chosen by each worker process as it loads the model: see the workers' logs"}
            summary["night"] = {"date": self.config.night, "from": self.night_from}
            self._monitor(summary, stats)
            transaction = commit.Commit(output, self.staging, self.run_id, self.fence)
            committed = transaction.run(lambda planned: self._publish(planned, summary), settlers())
            pending.supersede(output, self.run_id)  # older nights kept staged for `complaints commit` are moot
            return committed
        except commit.CommitFailed as exc:
            raise self._failed_commit(exc) from exc
        except UserError:
            self._abort()
            raise
        except Exception as exc:
            self._abort()
            raise JobFailed(f"the labelling job failed ({cause(exc)}); nothing was committed to {output}, "
                            "which is as it was") from exc

    def _monitor(self, summary: dict, stats: dict) -> None:
        """Drift and the report, after the books balance: a monitor that fails never discards a labelled night.

        What they read was checked before the pipeline started (`drift.Compared.of`,
        `commit.read_summary`); if they fail all the same, the night is committed with
        `drift: not checked` and the reason, and `--fail-on-drift` exits non-zero."""
        try:
            summary["drift"] = self.compared.section(summary, stats.get(WORDS), self.config.drift_threshold,
                                                     self.config.worker.review_threshold)
        except Exception as exc:  # noqa: BLE001 (any monitor failure: the labels are still good)
            summary["drift"] = drift.not_checked(f"the drift check failed: {cause(exc)}")
        try:
            commit.write_bytes(commit.join(self.staging, commit.REPORT),
                            drift.report_png(summary, self.compared.baseline, self.compared.previous))
        except Exception as exc:  # noqa: BLE001
            summary["report"] = f"not written: {cause(exc)}"

    def _pipeline(self, test_pipeline) -> tuple[dict, str, float]:
        started, clock = dt.datetime.now(dt.UTC), time.monotonic()
        p = test_pipeline or beam.Pipeline(options=self.options)
        build_batch(p, self.config, self.staging, self.total_rows, self.sinks, self.expected)
        result = p.run()
        remote.announce(result, self.options)  # a Dataflow job: its id and console address; then followed to its end
        result.wait_until_finish()
        stats = json.loads(commit.read_text(commit.join(self.staging, STATS_FILE)))
        for reason, count in self.skipped.items():
            stats["files"]["skipped"][reason] = stats["files"]["skipped"].get(reason, 0) + count
        return stats, started.isoformat(timespec="seconds"), time.monotonic() - clock

    def _check_books(self, summary: dict, stats: dict) -> None:
        """Nothing read, nothing committed; rows read = rows the footers promised = rows the pre-flight saw."""
        files, pattern, skipped = stats["files"], self.config.input_pattern, summary["inputs_skipped"]
        if files["read"] == 0:
            found = f"all {sum(skipped.values())} matched files skipped ({describe_skipped(skipped)})" if skipped \
                else "nothing matched"
            raise JobFailed(f"no input file was read from {pattern!r} ({found}); nothing was committed")
        if self.expected is not None and files["read"] != len(self.expected):
            raise JobFailed(f"{files['read']} input files were read, the pre-flight found {len(self.expected)}; "
                            "nothing was committed")
        promised = self.total_rows if self.total_rows is not None else files["footer_rows"]
        if summary["rows_in"] != promised or files["footer_rows"] != promised:
            raise JobFailed(f"{summary['rows_in']:,} rows were read but the input files hold {promised:,} "
                            "(did they change during the run?); nothing was committed")
        if summary["rows_in"] == 0:
            raise JobFailed(f"the {files['read']} input files hold no rows: nothing to label; nothing was "
                            "committed")
        if not summary["balanced"]:
            raise JobFailed(f"rows in ({summary['rows_in']}) ≠ predicted + dead-lettered; nothing was committed")

    def _failed_commit(self, exc: commit.CommitFailed) -> JobFailed:
        """Say what the failed commit left, in one line; the staging folder stays only where it can still commit."""
        output = self.config.output
        if isinstance(exc.cause, WarehouseBusy) and exc.restored and not exc.unsettled:
            sink = next(s for s in self.sinks if isinstance(s, BigQueryTables))
            pending.keep(self.staging, str(sink.table), sink.night, sink.passthrough, sink.warehouse.settings())
            return JobFailed(f"{exc.cause}; the previous night is as it was in both stores, and tonight's labelled "
                             f"night is kept staged: commit it later with `complaints commit --output {output}`")
        if exc.restored and not exc.unsettled:
            self._abort()  # else the journal still needs the staged files and the undo tables
        if exc.unsettled:
            return JobFailed(f"committing {output} failed ({cause(exc.cause)}); its files are as they were, but "
                             f"{exc.unsettled}. Run `complaints unlock --output {output}` once BigQuery answers")
        if isinstance(exc.cause, HoldLost):
            state = "its moves were undone" if exc.restored else "its moves could not all be undone"
            return JobFailed(f"{exc.cause}; {state}, and the other run's hold and files were left alone")
        state = ("the previous output is as it was" if exc.restored
                 else "the output is left without _SUCCESS, so it does not claim to be complete; the next run or "
                 f"`complaints unlock --output {output}` undoes the rest from its journal")
        return JobFailed(f"committing {output} failed ({cause(exc.cause)}); {state}")

    def _publish(self, transaction: commit.Commit, summary: dict) -> dict:
        for sink in self.sinks:
            sink.commit(transaction)
        return transaction.finish(summary, settlers())

    def _abort(self) -> None:
        for sink in self.sinks:
            sink.abort(self.staging)
        commit.abort(self.staging)


def _remove_if_empty(folder: str) -> None:
    """A failed first run leaves no output folder behind (local paths; object stores have no folders)."""
    if "://" not in folder:
        try:
            os.rmdir(folder)
        except OSError:
            pass
