"""The nightly job's BigQuery tables: a night's rows replace that night's, in the commit, all or nothing.

`--bigquery-table P.D.T` sends the night's predictions to `T` and its dead letters to
`T_dead_letters`, each row with the `run_id` that wrote it and the night's `output`
(its `--output`). The tables are filled from the Parquet files the night commits, by
load jobs: never by streaming inserts (append-only: a rerun would double the night),
and never inside the pipeline (Beam's FILE_LOADS would load before the books balance).

**The rule that ties the two stores together** (docs/bigquery.md):
1. Before any work: the tables' schemas are checked against the night's records
   (`check`); a table that differs stops the run in one line.
2. In the commit, once the Parquet files are in `--output` (`_SUCCESS` still aside):
   the committed files are loaded into two load tables of this run (`T__load_RUN`),
   and their rows counted against the files' footers (`commit`). A failure here
   undoes the Parquet commit; the tables were not touched.
3. Last before `_SUCCESS`: one multi-statement transaction keeps the night's present
   rows in two undo tables, deletes them, and inserts the load tables' rows (`apply`).
   BigQuery commits it whole or not at all.
4. `_SUCCESS`. If that fails, the transaction is undone the same way (`undo`) and the
   Parquet commit rolled back: both stores are as they were.

A run killed between 3 and 4 leaves the table holding the night the output's files
hold, with no `_SUCCESS` beside them; the next run of the night replaces both. The
load and undo tables expire after a day whatever happens, and are dropped at the end.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import posixpath
import re
import time

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from model.errors import UserError
from pipelines import bigquery
from pipelines.bigquery import TableRef
from pipelines.nightly import commit as out
from pipelines.sinks import bigquery_schema as schemas
from pipelines.sinks.base import Sink
from worker import prediction
from worker.records import DEAD_LETTER_SCHEMA

LOG = logging.getLogger(__name__)
PREDICTION_FILES, DEAD_LETTER_FILES = "predictions-*.parquet", "dead_letters-*.parquet"
WORK_TABLES_EXPIRE = dt.timedelta(days=1)
CONFLICT_RETRIES = 4  # concurrent transactions on one table abort each other; nights into one table may overlap
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,299}")


def literal(text: str) -> str:
    """A string as a SQL expression that no character of it can break out of (nights are paths: quotes,
    backslashes and newlines are all allowed there). Multi-statement scripts cannot take query parameters on
    the emulator, so the value is spelled in base64."""
    encoded = base64.b64encode(text.encode("utf-8", errors="surrogateescape")).decode("ascii")
    return f"SAFE_CONVERT_BYTES_TO_STRING(FROM_BASE64('{encoded}'))"


class BigQueryTables(Sink):
    """`--bigquery-table`: writes nothing while the pipeline runs; loads and swaps in the commit (module docstring)."""

    committed = "in the same commit as the night's Parquet files, just before _SUCCESS"

    def __init__(self, table: TableRef, output: str, run_id: str, passthrough: tuple = ()):
        """`passthrough`: the kept columns' Arrow fields (the table always has `explanation`: empty unless
        --explain)."""
        super().__init__()
        self.table, self.output, self.run_id, self.passthrough = table, output, run_id, passthrough
        self._client = None
        self.work_tables: list[TableRef] = []
        self.loaded: dict[str, int] = {}
        self.applied = False

    def expand(self, classified) -> list:
        return []

    # -- before any work ----------------------------------------------------------------------------------------

    def check(self) -> None:
        """The dataset exists and each table that exists has this night's schema; else one line, now."""
        wanted = self._wanted()
        for fields in wanted.values():
            for f in fields:
                if not _NAME.fullmatch(f["name"]):
                    raise UserError(f"column {f['name']!r} is not a BigQuery column name (letters, digits and _, "
                                    "not starting with a digit): rename it, or leave it out of --keep-columns")
        from google.api_core import exceptions

        # A client of its own, not kept: this sink is applied to the pipeline after the check, and Beam must be
        # able to pickle it (a client cannot be); the commit makes its own after the pipeline.
        client = bigquery.client(self.table.project)
        try:
            client.get_dataset(f"{self.table.project}.{self.table.dataset}", retry=bigquery.retry())
        except exceptions.NotFound:
            raise UserError(f"BigQuery dataset {self.table.project}.{self.table.dataset} does not exist: create it "
                            f"(bq mk --dataset {self.table.project}:{self.table.dataset}) or name another "
                            "--bigquery-table") from None
        except Exception as exc:  # noqa: BLE001 (transport errors of every kind)
            raise UserError(f"BigQuery did not answer for {self.table} ({bigquery.where(exc)}): check the "
                            "project, your credentials and BIGQUERY_EMULATOR_HOST") from None
        for ref, fields in wanted.items():
            self._same_schema(ref, fields, client)

    def _same_schema(self, ref: TableRef, fields: list[dict], client=None) -> bool:
        """True if the table exists (with this schema); raises if it exists with another."""
        from google.api_core import exceptions

        try:
            found = (client or self.client()).get_table(str(ref), retry=bigquery.retry())
        except exceptions.NotFound:
            return False
        problem = schemas.difference(schemas.of_table(found.schema), fields)
        if problem:
            raise UserError(f"BigQuery table {ref} does not match this night's records: {problem}. Label into "
                            "another --bigquery-table, or migrate the table (docs/bigquery.md)")
        return True

    def _wanted(self) -> dict[TableRef, list[dict]]:
        """Each table's schema for this night's records."""
        return {self.table: schemas.predictions(self.passthrough), self.table.dead_letters: schemas.dead_letters()}

    # -- in the commit ------------------------------------------------------------------------------------------

    def commit(self, transaction) -> None:
        """Load the committed Parquet files into this run's load tables; the swap waits for `apply`."""
        names = transaction.published
        files = {
            self.table: [out.join(self.output, n) for n in names if _matches(n, PREDICTION_FILES)],
            self.table.dead_letters: [out.join(self.output, n) for n in names if _matches(n, DEAD_LETTER_FILES)],
        }
        wanted = self._wanted()
        for ref, paths in files.items():
            if not self._same_schema(ref, wanted[ref]):  # changed since the pre-flight: refused the same way
                self._create(ref, wanted[ref])
            schema, expected = _footers(paths)
            fallback = prediction.schema(self.passthrough) if ref is self.table else DEAD_LETTER_SCHEMA
            load = self._work_table(ref, "load", schemas.of_schema(schema or fallback))
            self._load(paths, load)
            self._work_table(ref, "undo", wanted[ref])
            self.loaded[str(ref)] = self._rows(load)
            if self.loaded[str(ref)] != expected:
                raise RuntimeError(f"BigQuery loaded {self.loaded[str(ref)]:,} rows into {load} from files that "
                                   f"hold {expected:,}")
        transaction.external(self)
        transaction.notes["bigquery"] = {
            "table": str(self.table), "dead_letters_table": str(self.table.dead_letters),
            "rows": self.loaded[str(self.table)], "dead_letters": self.loaded[str(self.table.dead_letters)],
            "run_id": self.run_id, "output": self.output,
        }

    def apply(self) -> None:
        """The swap: the night's rows replaced by this run's, both tables in one transaction."""
        statements = []
        for ref in (self.table, self.table.dead_letters):
            load, undo, every = self._named(ref, "load"), self._named(ref, "undo"), self._columns(ref)
            columns = self._columns(load)
            statements += [
                f"INSERT INTO {undo.sql} ({every}) SELECT {every} FROM {ref.sql} "
                f"WHERE `{schemas.OUTPUT}` = {literal(self.output)};",
                f"DELETE FROM {ref.sql} WHERE `{schemas.OUTPUT}` = {literal(self.output)};",
                f"INSERT INTO {ref.sql} ({columns}, `{schemas.RUN_ID}`, `{schemas.OUTPUT}`) SELECT {columns}, "
                f"{literal(self.run_id)}, {literal(self.output)} FROM {load.sql};",
            ]
        try:
            self._script(statements)
        except Exception:
            if not self._has_run_rows():  # the transaction did not commit: nothing to undo
                raise
        self.applied = True

    def undo(self) -> None:
        """After `apply`, if a later commit step failed: the night's rows as they were before it."""
        if not self.applied:
            return
        statements = []
        for ref in (self.table, self.table.dead_letters):
            every = self._columns(ref)
            statements += [f"DELETE FROM {ref.sql} WHERE `{schemas.OUTPUT}` = {literal(self.output)};",
                           f"INSERT INTO {ref.sql} ({every}) SELECT {every} FROM {self._named(ref, 'undo').sql};"]
        self._script(statements)
        self.applied = False

    def close(self) -> None:
        """Drop this run's load and undo tables (best effort: they expire by themselves)."""
        for ref in self.work_tables:
            try:
                self.client().delete_table(str(ref), not_found_ok=True, retry=bigquery.retry())
            except Exception as exc:  # noqa: BLE001
                LOG.warning("could not drop %s (%s); it expires within a day", ref, bigquery.where(exc))
        self.work_tables = []

    def abort(self, staging: str) -> None:
        self.close()

    # -- BigQuery calls -----------------------------------------------------------------------------------------

    def client(self):
        if self._client is None:
            self._client = bigquery.client(self.table.project)
        return self._client

    def _named(self, ref: TableRef, kind: str) -> TableRef:
        return ref.sibling(f"{ref.table}__{kind}_{re.sub(r'[^A-Za-z0-9_]', '_', self.run_id)}")

    def _create(self, ref: TableRef, fields: list[dict], expires: bool = False) -> None:
        from google.cloud.bigquery import Table

        table = Table(str(ref), schema=schemas.to_api(fields))
        if expires:
            table.expires = dt.datetime.now(dt.UTC) + WORK_TABLES_EXPIRE
        else:  # the swap finds a night's rows by `output`: clustered, it reads only that night's blocks
            table.clustering_fields = [schemas.OUTPUT]
        table.description = ("complaint labels, one row per complaint and night (complaints label "
                             "--bigquery-table)") if not expires else "complaints label: a run's work table"
        self.client().create_table(table, exists_ok=not expires, retry=bigquery.retry())

    def _work_table(self, ref: TableRef, kind: str, fields: list[dict]) -> TableRef:
        work = self._named(ref, kind)
        self.client().delete_table(str(work), not_found_ok=True, retry=bigquery.retry())
        self.work_tables.append(work)
        self._create(work, fields, expires=True)
        return work

    def _load(self, paths: list[str], target: TableRef) -> None:
        """Load jobs, appending into the (new, empty) load table: gs:// files by URI in one job, local ones
        uploaded. The emulator resolves gs:// under its own local root (`BQEMU_GCS_LOCAL_ROOT`)."""
        from google.cloud import bigquery as bq

        if not paths:
            return
        config = bq.LoadJobConfig(source_format=bq.SourceFormat.PARQUET,
                                  write_disposition=bq.WriteDisposition.WRITE_APPEND)
        options = bq.format_options.ParquetOptions()
        options.enable_list_inference = True
        options.map_target_type = "ARRAY_OF_STRUCT"
        config.parquet_options = options
        remote = [p for p in paths if "://" in p]
        jobs = [self.client().load_table_from_uri(remote, str(target), job_config=config)] if remote else []
        for path in (p for p in paths if "://" not in p):
            with open(path, "rb") as f:
                jobs.append(self.client().load_table_from_file(f, str(target), job_config=config))
                jobs[-1].result(timeout=bigquery.DEADLINE_SECS * 5)
        for job in jobs:
            job.result(timeout=bigquery.DEADLINE_SECS * 5)

    def _columns(self, ref: TableRef) -> str:
        """A table's columns, named: never `SELECT *` (explicit lists survive a column added elsewhere, and the
        emulator drops columns from `SELECT *` under some filters)."""
        return ", ".join(f"`{f.name}`" for f in self.client().get_table(str(ref), retry=bigquery.retry()).schema)

    def _rows(self, ref: TableRef) -> int:
        query = f"SELECT COUNT(*) AS n FROM {ref.sql}"
        return next(iter(self.client().query(query).result(timeout=bigquery.DEADLINE_SECS)))["n"]

    def _has_run_rows(self) -> bool:
        """Whether this run's rows are in the tables (a transaction whose answer was lost may have committed)."""
        try:
            return any(
                next(iter(self.client().query(
                    f"SELECT COUNT(*) AS n FROM {ref.sql} WHERE `{schemas.RUN_ID}` = {literal(self.run_id)}"
                ).result(timeout=bigquery.DEADLINE_SECS)))["n"] > 0
                for ref in (self.table, self.table.dead_letters))
        except Exception:  # noqa: BLE001 (cannot tell: the caller reports the transaction's own error)
            return False

    def _script(self, statements: list[str]) -> None:
        """One transaction; retried while concurrent transactions on the same table make BigQuery abort it."""
        script = "BEGIN TRANSACTION;\n" + "\n".join(statements) + "\nCOMMIT TRANSACTION;"
        for attempt in range(CONFLICT_RETRIES):
            try:
                self.client().query(script).result(timeout=bigquery.DEADLINE_SECS * 5)
                return
            except Exception as exc:
                if "concurrent update" not in str(exc).lower() or attempt == CONFLICT_RETRIES - 1:
                    raise
                time.sleep(2 ** attempt)


def _matches(name: str, pattern: str) -> bool:
    prefix, suffix = pattern.split("*")
    return name.startswith(prefix) and name.endswith(suffix)


def _footers(paths: list[str]):
    """(the first file's Arrow schema, or None without files; the rows all the files' footers hold). The load
    table takes the files' own schema: it has `explanation` exactly when the night was explained."""
    schema, rows = None, 0
    for path in paths:
        with FileSystems.open(path, compression_type="uncompressed") as f:
            parquet = pq.ParquetFile(f)
            schema = schema or parquet.schema_arrow
            rows += parquet.metadata.num_rows
    return schema, rows


def run_id_of(staging: str) -> str:
    return posixpath.basename(staging.rstrip("/")).split("-", 1)[1]
