"""`--input bq://PROJECT.DATASET.TABLE`: an archive read from BigQuery through the Storage Read API.

The pre-flight, on the launcher, does for a table what it does for Parquet footers:
it checks the columns and their types, fixes a snapshot time, counts the table's rows
at that snapshot (`FOR SYSTEM_TIME AS OF`), and opens one read session at the same
snapshot with only the columns the job needs. The session's streams are the job's
units of reading work, as row groups are for Parquet: each is read as Arrow record
batches on a worker and handed on as the same `{id, text, kept…}` tables. The books
then hold the rows read to the count, so a table that changed is read at its snapshot
and a stream that lost rows fails the run.

A table has no file name and row number to derive ids from, so the id column is required.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

import apache_beam as beam
import pyarrow as pa

from model.errors import UserError
from pipelines.nightly.reading import FILES, SLICE_ROWS, InputFile, plain_column
from pipelines.plumbing import bigquery
from pipelines.plumbing.bigquery import TableRef

PREFIX = "bq://"
_TEXT_TYPES = ("STRING", "BYTES")
_ID_TYPES = ("STRING", "INT64", "INTEGER")


def is_bigquery(pattern: str) -> bool:
    return pattern.startswith(PREFIX)


@dataclass(frozen=True)
class TableSession:
    """What the pre-flight opened: the read streams (the reading work) and their Arrow schema."""

    table: str
    streams: tuple[str, ...]
    arrow_schema: bytes  # the session's serialized Arrow schema, which each stream's batches follow
    rows: int  # at the snapshot
    snapshot: str

    def __len__(self) -> int:
        """The units the books count as files read."""
        return len(self.streams)


def open_table(pattern: str, required: list[str], id_column: str, text_column: str,
               derive_missing_id: bool) -> tuple[InputFile, TableSession]:
    """Check the table and open a read session on it at one snapshot; UserError on the first problem."""
    from google.api_core import exceptions

    ref = TableRef.parse(pattern, "--input")
    client = bigquery.client(ref.project)
    try:
        table = client.get_table(str(ref), retry=bigquery.retry())
    except exceptions.NotFound:
        raise UserError(f"--input {pattern}: there is no BigQuery table {ref}: check the name") from None
    except Exception as exc:  # noqa: BLE001 (transport errors of every kind)
        raise UserError(f"BigQuery did not answer for {ref} ({bigquery.where(exc)}): check the project, your "
                        "credentials and BIGQUERY_EMULATOR_HOST") from None
    types = {f.name: f.field_type for f in table.schema}
    if id_column not in types:
        hint = "a table has no file and row to derive ids from: " if derive_missing_id else ""
        raise UserError(f"{ref} has no id column {id_column!r} (columns: {', '.join(types)}): {hint}pass "
                        "--id-column")
    missing = [c for c in required if c not in types]
    if missing:
        raise UserError(f"{ref} has no column {', '.join(map(repr, missing))} (columns: {', '.join(types)}): pass "
                        "--text-column/--id-column/--keep-columns to match the table")
    if types[text_column] not in _TEXT_TYPES:
        raise UserError(f"{ref}: text column {text_column!r} is {types[text_column]}, not STRING or BYTES")
    if types[id_column] not in _ID_TYPES:
        raise UserError(f"{ref}: id column {id_column!r} is {types[id_column]}; use a STRING or INT64 column")
    # A moment already committed (a client clock ahead of the service's would name the future), and a
    # second after the table's last change: a snapshot before it is refused, or misses it. A table changed
    # within the last two seconds (just loaded) is waited for, once.
    changed = table.modified or table.created
    if changed is not None:
        time.sleep(max(0.0, (changed + dt.timedelta(seconds=2) - dt.datetime.now(dt.UTC)).total_seconds()))
    snapshot = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    micros = int(snapshot.timestamp() * 1_000_000)
    snapshot = dt.datetime.fromtimestamp(micros / 1_000_000, dt.UTC)
    columns = list(dict.fromkeys([id_column, text_column, *required]))
    try:
        counted = client.query(f"SELECT COUNT(*) AS n FROM {ref.sql} FOR SYSTEM_TIME AS OF "
                               f"TIMESTAMP_MICROS({micros})")
        rows = next(iter(counted.result(timeout=bigquery.DEADLINE_SECS)))["n"]
        session = _create_session(ref, columns, snapshot) if rows else None
    except Exception as exc:  # noqa: BLE001 (API and transport errors of every kind)
        raise UserError(f"BigQuery could not read {ref} as of {snapshot.isoformat()} ({bigquery.where(exc)}): "
                        "check the table and your access to the Storage Read API") from None
    if rows == 0:
        raise UserError(f"--input {pattern}: the table holds no rows: nothing to label. The output was not touched")
    schema = pa.ipc.read_schema(pa.py_buffer(session.arrow_schema.serialized_schema))
    found = TableSession(pattern, tuple(s.name for s in session.streams), schema.serialize().to_pybytes(), rows,
                         snapshot.isoformat())
    return InputFile(pattern, table.num_bytes or 0, rows, schema), found


def _create_session(ref: TableRef, columns: list[str], snapshot: dt.datetime):
    from google.cloud.bigquery_storage_v1 import types
    from google.protobuf import timestamp_pb2

    at = timestamp_pb2.Timestamp()
    at.FromDatetime(snapshot)
    request = types.ReadSession(
        table=f"projects/{ref.project}/datasets/{ref.dataset}/tables/{ref.table}",
        data_format=types.DataFormat.ARROW,
        read_options=types.ReadSession.TableReadOptions(selected_fields=columns),
        table_modifiers=types.ReadSession.TableModifiers(snapshot_time=at))
    return bigquery.read_client().create_read_session(parent=f"projects/{ref.project}", read_session=request,
                                                      max_stream_count=0)


class ReadStreamTables(beam.DoFn):
    """One read stream as Arrow tables of at most `slice_rows` rows, columns `id`, `text` and the kept ones; each
    stream reported on `FILES` with the rows it held."""

    def __init__(self, session: TableSession, id_column: str, text_column: str, keep_columns: tuple[str, ...],
                 slice_rows: int = SLICE_ROWS):
        self.session, self.id_column, self.text_column = session, id_column, text_column
        self.kept = [n for n in dict.fromkeys(keep_columns) if n not in ("id", "text")]
        self.slice_rows = slice_rows

    def setup(self):
        self.schema = pa.ipc.read_schema(pa.py_buffer(self.session.arrow_schema))
        self.client = bigquery.read_client()  # one per worker process's DoFn, for all its streams

    def process(self, stream: str):
        rows = 0
        for message in self.client.read_rows(stream):
            batch = pa.ipc.read_record_batch(pa.py_buffer(message.arrow_record_batch.serialized_record_batch),
                                             self.schema)
            for start in range(0, batch.num_rows, self.slice_rows):
                part = batch.slice(start, self.slice_rows)
                ids = plain_column(part.column(self.id_column))
                ids = ids if pa.types.is_string(ids.type) else ids.cast(pa.string())
                columns = [ids, *(plain_column(part.column(n)) for n in [self.text_column, *self.kept])]
                yield pa.Table.from_arrays(columns, names=["id", "text", *self.kept])
            rows += batch.num_rows
        yield beam.pvalue.TaggedOutput(FILES, {"path": stream, "rows": rows, "skipped": None})


class ReadTable(beam.PTransform):
    """The session's streams → `{"tables": input tables for the worker, FILES: one record per stream}`, the shape
    `pipelines.nightly.reading.ReadComplaints` gives for Parquet."""

    def __init__(self, session: TableSession, id_column: str, text_column: str, keep_columns: tuple[str, ...]):
        super().__init__()
        self.session = session
        self.reader = ReadStreamTables(session, id_column, text_column, keep_columns)

    def expand(self, pbegin):
        read = (
            pbegin
            | "Streams" >> beam.Create(list(self.session.streams))
            | "Distribute" >> beam.Reshuffle()
            | "ReadStreams" >> beam.ParDo(self.reader).with_outputs(FILES, main="tables")
        )
        return {"tables": read["tables"], FILES: read[FILES]}
