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

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import GoogleCloudOptions

from model import files, registry
from model.errors import UserError
from pipelines import remote
from pipelines.errors import JobFailed, cause
from pipelines.nightly import drift, pending, shadow
from pipelines.nightly.bigquery_reading import ReadTable, TableSession
from pipelines.nightly.facts import RunFacts, decide
from pipelines.nightly.outputs import batch_sinks
from pipelines.nightly.progress import ReportProgress
from pipelines.nightly.reading import (
    FILES,
    InputSpec,
    ReadComplaints,
    describe_skipped,
)
from pipelines.nightly.summary import WORDS, ComputeRunStats, assemble, served
from pipelines.options import BatchConfig, beam_options, create_local_locations
from pipelines.plumbing import commit
from pipelines.plumbing.hold import HoldLost, OutputLock, new_run_id, staging_alive
from pipelines.sinks import DEAD_LETTERS, PREDICTIONS, SHADOW, Sink, settlers
from pipelines.sinks.bigquery_tables import BigQueryTables, WarehouseBusy
from worker import prediction
from worker.tables import WORD_COUNTS, ClassifyTables
from worker.transform import DEAD_LETTER_PARTS, SERVED

STATS_FILE = "_stats.json"
log = logging.getLogger(__name__)


def build_batch(p: beam.Pipeline, config: BatchConfig, facts: RunFacts, staging: str,
                sinks: list[Sink] | None = None) -> dict:
    """Wire read → classify → the config's sinks (`pipelines.nightly.outputs.batch_sinks`), and the run statistics.

    Rows travel as Arrow tables (`worker.tables`): the predictions the sinks receive
    are tables of `prediction.schema`, the dead letters records, in two parts.
    `facts.expected` are the pre-flight's files: exactly those are read; without them the
    input pattern is matched when the pipeline runs (`--skip-validation`, templates).
    For `--input bq://` it is the pre-flight's read session on the table.
    """
    expected = facts.expected
    if isinstance(expected, TableSession):  # --input bq://: the pre-flight's read session
        read = p | "ReadTable" >> ReadTable(expected, config.id_column, config.text_column, config.keep_columns)
    else:
        read = p | "ReadArchive" >> ReadComplaints(
            InputSpec.of(config.input_pattern, facts.output), expected, config.id_column, config.text_column,
            config.keep_columns, config.derive_missing_id,
        )
    tables = read["tables"]
    if facts.progress:
        tables = tables | "Progress" >> beam.ParDo(ReportProgress(facts.total_rows))
    results = tables | "Classify" >> ClassifyTables(facts.worker, prediction.schema(facts.passthrough_fields,
                                                                                    facts.worker.explain > 0))
    classified = {PREDICTIONS: results[PREDICTIONS], DEAD_LETTERS: {p: results[p] for p in DEAD_LETTER_PARTS}}
    if facts.shadow is not None:  # the challenger scores the same tables; its rows go to their own files
        classified[SHADOW] = (tables | "Shadow" >> ClassifyTables(facts.shadow, prediction.schema()))[PREDICTIONS]
    for sink in sinks if sinks is not None else batch_sinks(config, facts, staging):
        classified | type(sink).__name__ >> sink
    (
        (tables, classified[PREDICTIONS], classified[DEAD_LETTERS], read[FILES], results[WORD_COUNTS],
         results[SERVED])
        | "RunStats" >> ComputeRunStats()
        | "WriteStats" >> beam.io.WriteToText(commit.join(staging, STATS_FILE), shard_name_template="")
    )
    return classified


def run(config: BatchConfig, beam_args: list[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> dict:
    """Run the job to completion and commit its output; returns the summary.

    The output is held (`pipelines.plumbing.hold`) from before anything in it changes until
    after the commit; a template build (`--template_location`, `--dry_run`) never
    touches it at all.
    """
    options = beam_options(beam_args)
    create_local_locations(options)
    facts = decide(config, options)
    compared = drift.Compared.of(facts.worker.model_dir, facts.metadata,  # a broken reference: one line, now
                                 commit.read_summary(config.compare_to) if config.compare_to else None)
    run_id = new_run_id()
    staging = commit.staging_dir(facts.output, run_id)
    sinks = batch_sinks(config, facts, staging)
    if facts.building:  # a template runs later, on that night's files: nothing here is read or written
        p = test_pipeline or beam.Pipeline(options=options)
        build_batch(p, config, facts, staging, sinks)
        p.run()
        return {"template_location": options.view_as(GoogleCloudOptions).template_location, "staging": staging}
    for sink in sinks:
        sink.check()  # a BigQuery table whose schema differs: one line, before the output is touched
    existed = FileSystems.exists(facts.output)
    lock = OutputLock(facts.output, run_id, config.lock_stale_secs, options).acquire()
    try:
        alive = functools.partial(staging_alive, stale_secs=config.lock_stale_secs)
        settled, leftovers = commit.recover(facts.output, staging, alive, settlers())  # a killed commit settled
        for line in settled:
            log.warning("%s", line)
        commit.prepare(facts.output, staging)
        lock.claim(staging)
        job = Job(config, facts, options, staging, run_id, compared, sinks, lock.check)
        summary = job.run(test_pipeline)
    finally:
        lock.release()
        if not existed:
            _remove_if_empty(facts.output)
    if lock.taken_over is not None:
        summary["took_over_hold_of"] = lock.taken_over.describe()
    if leftovers:
        summary["cleared_leftovers"] = [posixpath.basename(f) for f in leftovers]
    if settled:
        summary["settled_commits"] = settled
    return summary


class Job:
    """One run while the output is held: pipeline, books, drift and report, commit; any failure undone."""

    def __init__(self, config: BatchConfig, facts: RunFacts, options, staging: str, run_id: str,
                 compared: drift.Compared, sinks: list[Sink], fence=commit.unfenced):
        self.config, self.facts, self.options, self.staging, self.run_id = config, facts, options, staging, run_id
        self.fence = fence  # raises HoldLost once another run holds the output
        self.compared = compared
        self.sinks = sinks  # the ones run() checked before taking the output

    def run(self, test_pipeline: beam.Pipeline | None = None) -> dict:
        output, facts = self.facts.output, self.facts
        try:
            stats, started, seconds = self._pipeline(test_pipeline)
            summary = assemble(
                stats, model_version=facts.metadata["model_version"], inputs=facts.inputs, output=output,
                started=started, finished=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), seconds=seconds,
                lineage=registry.lineage_of(facts.metadata),
            )
            summary["source"] = {"input": self.config.input_pattern, "id_column": self.config.id_column,
                                 "text_column": self.config.text_column,
                                 "derive_missing_id": self.config.derive_missing_id}  # `review export` joins by it
            self._check_books(summary, stats)
            summary["precision"] = served(stats, facts.worker.precision)
            summary["night"] = {"date": facts.night, "from": facts.night_from}
            if facts.review is not None:
                summary["review"] = facts.review
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
                                                     self.facts.worker.review_threshold)
        except Exception as exc:  # noqa: BLE001 (any monitor failure: the labels are still good)
            summary["drift"] = drift.not_checked(f"the drift check failed: {cause(exc)}")
        try:
            commit.write_bytes(commit.join(self.staging, commit.REPORT),
                            drift.report_png(summary, self.compared.baseline, self.compared.previous))
        except Exception as exc:  # noqa: BLE001
            summary["report"] = f"not written: {cause(exc)}"
        if self.facts.shadow_note is not None:
            summary["shadow"] = self._shadow()

    def _shadow(self) -> dict:
        """The challenger against the champion, from the staged files (`pipelines.nightly.shadow`); a comparison
        that fails is said, and the night and its shadow files are committed all the same."""
        note = dict(self.facts.shadow_note)
        if "not_scored" in note:
            return note
        lineage = self.facts.shadow.lineage
        if lineage:
            note["registry"] = json.loads(lineage)
        try:
            return {**note, **shadow.section(self.staging, self.facts.reviewed)}
        except Exception as exc:  # noqa: BLE001 (a monitor: the labels are still good)
            return {**note, "not_compared": cause(exc)}

    def _pipeline(self, test_pipeline) -> tuple[dict, str, float]:
        started, clock = dt.datetime.now(dt.UTC), time.monotonic()
        p = test_pipeline or beam.Pipeline(options=self.options)
        build_batch(p, self.config, self.facts, self.staging, self.sinks)
        result = p.run()
        remote.announce(result, self.options)  # a Dataflow job: its id and console address; then followed to its end
        result.wait_until_finish()
        stats = json.loads(commit.read_text(commit.join(self.staging, STATS_FILE)))
        for reason, count in self.facts.skipped.items():
            stats["files"]["skipped"][reason] = stats["files"]["skipped"].get(reason, 0) + count
        return stats, started.isoformat(timespec="seconds"), time.monotonic() - clock

    def _check_books(self, summary: dict, stats: dict) -> None:
        """Nothing read, nothing committed; rows read = rows the footers promised = rows the pre-flight saw."""
        files, pattern, skipped = stats["files"], self.config.input_pattern, summary["inputs_skipped"]
        if files["read"] == 0:
            found = f"all {sum(skipped.values())} matched files skipped ({describe_skipped(skipped)})" if skipped \
                else "nothing matched"
            raise JobFailed(f"no input file was read from {pattern!r} ({found}); nothing was committed")
        if self.facts.expected is not None and files["read"] != len(self.facts.expected):
            raise JobFailed(f"{files['read']} input files were read, the pre-flight found {len(self.facts.expected)}; "
                            "nothing was committed")
        promised = self.facts.total_rows if self.facts.total_rows is not None else files["footer_rows"]
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
        output = self.facts.output
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
    if not files.remote(folder):
        try:
            os.rmdir(folder)
        except OSError:
            pass
