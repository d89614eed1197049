"""The nightly job's BigQuery tables: a night's rows replace that night's, in the commit, all or nothing.

`--bigquery-table P.D.T` sends the night's predictions to `T` and its dead letters to
`T_dead_letters`; with `--shadow`, the challenger's to `T_shadow` (once made, it is in every
swap: a rerun without a challenger takes the replaced run's shadow rows out). Each row
carries the `run_id` that wrote it, the night's `night` (a DATE: the partitioning column),
`output` (normalised) and `labelled_at`. The tables are filled from the night's committed
Parquet files by load jobs: never by streaming inserts (append-only: a rerun would double
the night), nor inside the pipeline (Beam's FILE_LOADS would load before the books balance).

**The rule that ties the two stores together** (docs/bigquery.md):
1. Before any work: the tables' schemas are checked against the night's records
   (`check`); a table that differs stops the run in one line; a table made before
   `night` and `labelled_at` gains them by a schema update.
2. In the commit, before any file moves: the staged files are loaded into this run's
   load tables, their rows counted against the files' footers, and the run ids of the
   rows tonight replaces are read (`commit`). A failure here changes nothing anywhere.
3. Last before `_SUCCESS`: the swap, one transaction polled to DONE, its job id in the
   commit's journal; concurrent transactions' aborts waited out (`apply`).
4. `_SUCCESS`. If that fails, or the run dies first, the swap is undone from the
   journal (`pipelines.sinks.bigquery_swap.Settler`).

The wait for a busy table (`apply`) is a loop of its own, not a retry library's: each
try's job id must be in the journal before it is submitted (the undo reads them), which
BigQuery's own `job_retry` (it names its jobs) cannot do.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import re
import time
from dataclasses import dataclass, field

import pyarrow as pa

from model import files
from model.errors import UserError
from pipelines.plumbing import bigquery
from pipelines.plumbing.bigquery import TableRef
from pipelines.sinks import bigquery_schema, bigquery_swap, parquet_files
from pipelines.sinks.base import Sink
from pipelines.sinks.parquet_files import DEAD_LETTER_FILES, PREDICTION_FILES, SHADOW_FILES
from worker import prediction
from worker.records import DEAD_LETTER_SCHEMA

LOG = logging.getLogger(__name__)
KIND = "bigquery"  # the journal record's kind (`pipelines.sinks.settlers`)
LABELS = {"written-by": "complaints-label"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,299}")


class WarehouseBusy(Exception):
    """The swap kept being aborted by concurrent transactions for longer than the stated wait."""


@dataclass(frozen=True)
class Warehouse:
    """How the night meets BigQuery: plain values from the job's options."""

    deadline_secs: float = bigquery.DEADLINE_SECS  # each call; a job gets JOB_DEADLINE_FACTOR of them
    busy_wait_secs: float = 900.0  # how long concurrent transactions may keep aborting the swap
    scratch_dataset: str | None = None  # where work tables go (default: the table's dataset)
    dead_letter_text: bool = False  # the dead letters' payload (the complaint's text) into the warehouse
    labels: dict = field(default_factory=lambda: dict(LABELS))

    def settings(self) -> dict:
        """What a night kept staged needs to meet the warehouse the same way later (`pipelines.nightly.pending`)."""
        return {"deadline_secs": self.deadline_secs, "busy_wait_secs": self.busy_wait_secs,
                "scratch_dataset": self.scratch_dataset, "dead_letter_text": self.dead_letter_text}


class BigQueryTables(Sink):
    """`--bigquery-table`: writes nothing while the pipeline runs; loads and swaps in the commit (module docstring)."""

    committed = "in the same commit as the night's Parquet files, just before _SUCCESS"

    def __init__(self, table: TableRef, output: str, run_id: str, night: str, passthrough: tuple = (),
                 warehouse: Warehouse = Warehouse()):
        """`passthrough`: the kept columns' Arrow fields (the table always has `explanation`: empty unless
        --explain). `output` is normalised and `night` an ISO date (`pipelines.plumbing.night`)."""
        super().__init__()
        self.table, self.output, self.run_id, self.night = table, output, run_id, night
        self.passthrough, self.warehouse = passthrough, warehouse
        self.notes: list[str] = []  # schema updates and warnings, for the summary
        self._client = None
        self._record: dict | None = None
        self._tables = [table, table.dead_letters]  # and the shadow table, once the commit finds it in use

    def expand(self, classified) -> list:
        return []

    # -- before any work ----------------------------------------------------------------------------------------

    def check(self) -> None:
        """The datasets exist and each table that exists has this night's schema (a table made before `night`
        and `labelled_at` gains them); else one line, now: a BigQuery that does not answer too."""
        try:
            self._check()
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 (transport errors and timeouts of every kind)
            raise UserError(f"BigQuery did not answer for {self.table} within its deadline of "
                            f"{self.warehouse.deadline_secs:.0f} s ({bigquery.where(exc)}); nothing was changed: "
                            "check BigQuery's status, or raise --bigquery-deadline-secs") from None
        finally:
            self._client = None  # Beam pickles this sink with the pipeline: a client cannot be

    def _check(self) -> None:
        for fields in self._wanted().values():
            for f in fields:
                if not _NAME.fullmatch(f["name"]):
                    raise UserError(f"column {f['name']!r} is not a BigQuery column name (letters, digits and _, "
                                    "not starting with a digit): rename it, or leave it out of --keep-columns")
        for dataset in {self.table.dataset, self._scratch}:
            self._dataset_exists(dataset)
        for ref, fields in self._wanted().items():
            self._same_schema(ref, fields, update=True)

    @property
    def _scratch(self) -> str:
        return self.warehouse.scratch_dataset or self.table.dataset

    def _dataset_exists(self, dataset: str) -> None:
        from google.api_core import exceptions

        name = f"{self.table.project}.{dataset}"
        try:
            self.client().get_dataset(name, **self._bounded())
        except exceptions.NotFound:
            raise UserError(f"BigQuery dataset {name} does not exist: create it (bq mk --dataset "
                            f"{self.table.project}:{dataset}) or name another") from None
        except Exception as exc:  # noqa: BLE001 (transport errors of every kind)
            raise UserError(f"BigQuery did not answer for {name} within {self.warehouse.deadline_secs:.0f} s "
                            f"({bigquery.where(exc)}): check the project, your credentials and "
                            "BIGQUERY_EMULATOR_HOST") from None

    def _same_schema(self, ref: TableRef, fields: list[dict], update: bool = False):
        """The table if it exists (with this schema); None if not; raises if it exists with another."""
        from google.api_core import exceptions

        try:
            found = self.client().get_table(str(ref), **self._bounded())
        except exceptions.NotFound:
            return None
        have = bigquery_schema.of_table(found.schema)
        missing = bigquery_schema.missing_added(have)
        if missing and update:
            self._add_columns(ref, found, missing)
            found = self.client().get_table(str(ref), **self._bounded())
            have = bigquery_schema.of_table(found.schema)
        problem = bigquery_schema.difference(have, fields)
        if problem:
            raise UserError(f"BigQuery table {ref} does not match this night's records: {problem}. Label into "
                            "another --bigquery-table, or migrate the table (docs/bigquery.md)")
        if update and bigquery_swap.partitioned_by(found) != bigquery_schema.NIGHT:
            self.notes.append(f"{ref} is not partitioned by night: each night's swap reads the whole table "
                              "(docs/bigquery.md#migrating-a-table-from-before-partitions)")
        return found

    def _add_columns(self, ref: TableRef, found, missing: list[dict]) -> None:
        """The schema update: `ALTER TABLE … ADD COLUMN IF NOT EXISTS`, as BigQuery adds a NULLABLE column to a table
        with data. (The emulator changes the stored rows but not the table's metadata; that is updated after.)"""
        for f in missing:
            self._query(f"ALTER TABLE {ref.sql} ADD COLUMN IF NOT EXISTS `{f['name']}` {f['type']}")
        now = self.client().get_table(str(ref), **self._bounded())
        have = {f.name for f in now.schema}
        if any(f["name"] not in have for f in missing):
            now.schema = [*now.schema, *bigquery_schema.to_api([f for f in missing if f["name"] not in have])]
            self.client().update_table(now, ["schema"], **self._bounded())
        self.notes.append(f"{ref}: added column{'s' if len(missing) > 1 else ''} "
                          f"{', '.join(f['name'] for f in missing)} (schema update)")

    def _wanted(self) -> dict[TableRef, list[dict]]:
        """Each table's schema for this night's records."""
        return {self.table: self._typed_nulls(bigquery_schema.predictions(self.passthrough)),
                self.table.dead_letters: bigquery_schema.dead_letters(self._letters_with_text()),
                self.table.shadow: bigquery_schema.predictions()}

    def _typed_nulls(self, fields: list[dict]) -> list[dict]:
        """A kept column written with no type (all null, as pandas writes an all-None column) takes the type the
        table already gives it: tonight's NULLs fit any type, and typing them STRING would refuse the night."""
        untyped = {f.name for f in self.passthrough if pa.types.is_null(f.type)}
        if not untyped:
            return fields
        from google.api_core import exceptions

        try:
            found = bigquery_schema.of_table(self.client().get_table(str(self.table), **self._bounded()).schema)
        except exceptions.NotFound:
            return fields
        have = {f["name"]: f for f in found if f["name"] in untyped}
        return [{**have[f["name"]], "mode": "NULLABLE"} if f["name"] in have else f for f in fields]

    def _letters_with_text(self) -> bool:
        """Asked for, or a dead-letter table from before the hash that already holds payloads."""
        if self.warehouse.dead_letter_text:
            return True
        from google.api_core import exceptions

        try:
            found = self.client().get_table(str(self.table.dead_letters), **self._bounded())
        except exceptions.NotFound:
            return False
        return any(f.name == "payload" for f in found.schema)

    # -- in the commit, before any file moves -------------------------------------------------------------------

    def commit(self, transaction) -> None:
        """Load the staged Parquet files into this run's load tables and read what the swap replaces; a failure
        names BigQuery (its tables are untouched: only this run's load tables were written)."""
        try:
            self._load_night(transaction)
        except (UserError, RuntimeError):
            raise
        except Exception as exc:  # noqa: BLE001 (transport errors and timeouts of every kind)
            raise RuntimeError(f"BigQuery failed or did not answer while loading the night into this run's load "
                               f"tables, within deadlines of {self.warehouse.deadline_secs:.0f} s "
                               f"({bigquery.where(exc)}); its tables were not touched") from None

    def _load_night(self, transaction) -> None:
        names = transaction.published
        staged = {ref: transaction.staged([n for n in names if parquet_files.matches(n, pattern)])
                  for ref, pattern in ((self.table, PREDICTION_FILES), (self.table.dead_letters, DEAD_LETTER_FILES),
                                       (self.table.shadow, SHADOW_FILES))}
        wanted, loaded, replaces = self._wanted(), {}, set()
        if not staged[self.table.shadow] and self._same_schema(self.table.shadow, wanted[self.table.shadow]) is None:
            del staged[self.table.shadow]  # no challenger tonight, nor any night before
        self._tables = list(staged)
        for ref, paths in staged.items():
            if self._same_schema(ref, wanted[ref]) is None:  # changed since the pre-flight: refused the same way
                self._create(ref, wanted[ref])
            schema, expected = parquet_files.footers(paths)
            fallback = {self.table: prediction.schema(self.passthrough), self.table.shadow: prediction.schema()}.get(
                ref, DEAD_LETTER_SCHEMA)
            typed = {f["name"]: f for f in wanted[ref]}
            untyped = {f.name for f in (schema or fallback) if pa.types.is_null(f.type)}
            load = self._work_table(ref, "load", [typed.get(f["name"], f) if f["name"] in untyped else f
                                                  for f in bigquery_schema.of_schema(schema or fallback)])
            self._load(paths, load)
            self._work_table(ref, "undo", wanted[ref])
            loaded[str(ref)] = self._count(f"SELECT COUNT(*) AS n FROM {load.sql}")
            if loaded[str(ref)] != expected:
                raise RuntimeError(f"BigQuery loaded {loaded[str(ref)]:,} rows into {load} from files that "
                                   f"hold {expected:,}")
            replaces |= self._runs_of_night(ref)
        self._record = {
            **self._base_record(), "night": self.night, "output": self.output,
            "replaces": sorted(replaces - {self.run_id}), "legacy": self._legacy(),
            "labelled_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00"),
            "hash_letters": not self._letters_with_text(), "jobs": [], "labels": self.warehouse.labels,
        }
        transaction.external(self)
        transaction.notes["bigquery"] = {
            "table": str(self.table), "dead_letters_table": str(self.table.dead_letters),
            "rows": loaded[str(self.table)], "dead_letters": loaded[str(self.table.dead_letters)],
            "run_id": self.run_id, "output": self.output, "night": self.night,
            "replaces": self._record["replaces"], **({"notes": self.notes} if self.notes else {}),
            **({"shadow_table": str(self.table.shadow), "shadow_rows": loaded[str(self.table.shadow)]}
               if self.table.shadow in staged else {}),
        }

    def _runs_of_night(self, ref: TableRef) -> set[str]:
        where = bigquery_swap.night_filter(self.night, self._legacy())
        query = (f"SELECT DISTINCT `{bigquery_schema.RUN_ID}` AS r FROM {ref.sql} WHERE {where} "
                 f"AND `{bigquery_schema.OUTPUT}` = {bigquery_swap.literal(self.output)}")
        return {row["r"] for row in self._query(query)}

    def _legacy(self) -> bool:
        """A table made before partitions: its rows from then have no `night`, so the night is found by output."""
        found = self.client().get_table(str(self.table), **self._bounded())
        return bigquery_swap.partitioned_by(found) != bigquery_schema.NIGHT

    def _base_record(self) -> dict:
        return {"kind": KIND, "project": self.table.project, "run_id": self.run_id, "scratch": self._scratch,
                "tables": [str(ref) for ref in self._tables],
                "deadline_secs": self.warehouse.deadline_secs}

    def record(self) -> dict:
        """What the journal keeps of this store: enough to undo or finish its swap with no other state."""
        return self._record

    def apply(self, save) -> None:
        """The swap, as a job polled to its end; concurrent transactions' aborts waited out with jitter. Each try's
        job id goes into the journal (`save()`) before it is submitted."""
        record, give_up, attempt = self._record, time.monotonic() + self.warehouse.busy_wait_secs, 0
        while True:
            job_id = bigquery_swap.swap_job_id(self.run_id, attempt)
            record["jobs"].append(job_id)
            save()
            try:
                bigquery.run_job(self.client(), bigquery_swap.swap_script(record), job_id, self.warehouse.deadline_secs,
                                 labels=self.warehouse.labels)
                return
            except bigquery.JobError as exc:
                if not exc.conflict:
                    raise
                if time.monotonic() > give_up:
                    raise WarehouseBusy(
                        f"BigQuery kept aborting the swap into {self.table} for concurrent transactions on it for "
                        f"{self.warehouse.busy_wait_secs:.0f} s") from None
            attempt += 1
            pause = min(60.0, 2.0 ** min(attempt, 6)) * random.uniform(0.5, 1.5)
            LOG.warning("BigQuery aborted the swap into %s for a concurrent transaction; trying again in %.0f s",
                        self.table, pause)
            time.sleep(max(0.0, min(pause, give_up - time.monotonic() + 1)))

    def abort(self, staging: str) -> None:
        """A run that failed and whose commit was settled: its work tables, if it made any."""
        bigquery_swap.Settler().forward(self._record or self._base_record())

    # -- BigQuery calls -----------------------------------------------------------------------------------------

    def client(self):
        if self._client is None:
            self._client = bigquery.client(self.table.project)
        return self._client

    def _bounded(self) -> dict:
        deadline = self.warehouse.deadline_secs
        return {"timeout": deadline, "retry": bigquery.retry(deadline)}

    def _query(self, sql: str):
        return bigquery.query(self.client(), sql, self.warehouse.deadline_secs)

    def _count(self, sql: str) -> int:
        return bigquery.count(self.client(), sql, self.warehouse.deadline_secs)

    def _create(self, ref: TableRef, fields: list[dict]) -> None:
        """A night's table: partitioned by night (a swap reads and writes one partition), clustered by category
        (or reason), described, labelled."""
        from google.cloud.bigquery import Table, TimePartitioning

        table = Table(str(ref), schema=bigquery_schema.to_api(fields))
        table.time_partitioning = TimePartitioning(field=bigquery_schema.NIGHT)
        table.clustering_fields = ["reason" if ref == self.table.dead_letters else "label", bigquery_schema.OUTPUT]
        table.labels = dict(self.warehouse.labels)
        kind = {self.table.dead_letters: "dead letters, one row per unlabelled", self.table.shadow: "labels by a "
                "challenger (--shadow), one row per"}.get(ref, "labels, one row per")
        table.description = f"complaint {kind} complaint and night (complaints label --bigquery-table)"
        self.client().create_table(table, exists_ok=True, **self._bounded())
        if ref == self.table:
            self._create_nights_view()

    def _create_nights_view(self) -> None:
        """`TABLE_nights`: one row per committed night (BigQuery has no `_SUCCESS`: a row in the table is
        committed, since an undone swap takes its rows with it): its date, output, run and when it landed."""
        from google.cloud.bigquery import Table

        view = Table(str(self.table.nights))
        night, output, run, at = (bigquery_schema.NIGHT, bigquery_schema.OUTPUT, bigquery_schema.RUN_ID,
                                  bigquery_schema.LABELLED_AT)
        view.view_query = (f"SELECT `{night}`, `{output}`, `{run}`, MAX(`{at}`) AS `{at}`, COUNT(*) AS predictions "
                           f"FROM {self.table.sql} GROUP BY 1, 2, 3")
        view.labels = dict(self.warehouse.labels)
        view.description = f"the nights committed into {self.table}, one row each (complaints label)"
        self.client().create_table(view, exists_ok=True, **self._bounded())

    def _work_table(self, ref: TableRef, kind: str, fields: list[dict]) -> TableRef:
        from google.cloud.bigquery import Table

        work = bigquery_swap.work_table(ref, kind, self.run_id, self._scratch)
        self.client().delete_table(str(work), not_found_ok=True, **self._bounded())
        table = Table(str(work), schema=bigquery_schema.to_api(fields))
        table.expires = dt.datetime.now(dt.UTC) + bigquery_swap.WORK_TABLES_EXPIRE
        table.labels = {**self.warehouse.labels, "complaints-work": kind}
        table.description = f"complaints label: run {self.run_id}'s {kind} table for {ref}"
        self.client().create_table(table, **self._bounded())
        return work

    def _load(self, paths: list[str], target: TableRef) -> None:
        """Load jobs, appending into the (new, empty) load table: gs:// files by URI in one job, local ones
        uploaded. The emulator resolves gs:// under its own local root (`BQEMU_GCS_LOCAL_ROOT`)."""
        from google.cloud import bigquery as bq

        if not paths:
            return
        config = bq.LoadJobConfig(source_format=bq.SourceFormat.PARQUET, labels=dict(self.warehouse.labels),
                                  write_disposition=bq.WriteDisposition.WRITE_APPEND)
        config.parquet_options = bq.format_options.ParquetOptions.from_api_repr(
            {"enableListInference": True, "mapTargetType": "ARRAY_OF_STRUCT"})
        wait = {"timeout": self.warehouse.deadline_secs * bigquery.JOB_DEADLINE_FACTOR,
                "retry": bigquery.retry(self.warehouse.deadline_secs)}
        remote = [p for p in paths if files.remote(p)]
        if remote:
            self.client().load_table_from_uri(remote, str(target), job_config=config,
                                              timeout=self.warehouse.deadline_secs).result(**wait)
        for path in (p for p in paths if not files.remote(p)):
            with open(path, "rb") as f:
                self.client().load_table_from_file(f, str(target), job_config=config,
                                                   timeout=self.warehouse.deadline_secs).result(**wait)
