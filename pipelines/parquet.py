"""The nightly job's source: Parquet through Beam's filesystems (local paths, globs, gs://).

Writing is the sinks' (`pipelines.sinks.parquet_files`).

Reading goes by row group: the driver-side pre-flight checks every file's footer
(so a bad path or column fails in one line before any work), and the pipeline
reads each row group as Arrow tables, which the worker classifies a table at a
time. Knowing the row offset of each row group gives stable derived ids
(`<file name>:<row number>`) for archives without an id column.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems

from model.errors import UserError


def _is_text(t: pa.DataType) -> bool:
    """Strings, bytes (decoded as UTF-8 row by row), their dictionary encodings (pandas categoricals), and the
    null type (a column Arrow wrote with no value at all: every row is dead-lettered as missing_text)."""
    if pa.types.is_dictionary(t):
        return _is_text(t.value_type)
    return (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
            or pa.types.is_large_binary(t) or pa.types.is_null(t))


def _is_id(t: pa.DataType) -> bool:
    """What `_is_text` takes, and integers (also dictionary-encoded); floats are refused: 1e16 + 1 == 1e16."""
    value = t.value_type if pa.types.is_dictionary(t) else t
    return pa.types.is_integer(value) or _is_text(t)


def is_data_file(path: str) -> bool:
    """Hidden and underscore files (`_SUCCESS`, `.staging-…`) are markers, not data."""
    return not posixpath.basename(path).startswith((".", "_"))


@dataclass(frozen=True)
class InputFile:
    path: str
    size_bytes: int
    rows: int
    schema: pa.Schema


def _open_parquet(path: str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(FileSystems.open(path, compression_type="uncompressed"))
    except (pa.ArrowException, OSError) as exc:
        raise UserError(
            f"{path} is not a readable Parquet file ({str(exc).splitlines()[0]}): "
            "remove it from the input or re-export it"
        ) from None


def inspect_inputs(pattern: str, required: list[str], id_column: str | None, text_column: str) -> list[InputFile]:
    """Match the pattern and check each file's footer; UserError on the first problem."""
    try:
        matches = FileSystems.match([pattern])[0].metadata_list
    except Exception as exc:  # noqa: BLE001 (filesystems raise their own types)
        raise UserError(f"cannot list {pattern}: {str(exc).splitlines()[0]}") from None
    files = sorted((m for m in matches if is_data_file(m.path)), key=lambda m: m.path)
    if not files:
        raise UserError(f"no input file matches {pattern!r}: check the path or glob (quote it in the shell)")
    out = []
    for meta in files:
        parquet = _open_parquet(meta.path)
        schema = parquet.schema_arrow
        missing = [c for c in required if c not in schema.names]
        if missing:
            raise UserError(
                f"{meta.path} has no column {', '.join(map(repr, missing))} (columns: {', '.join(schema.names)}): "
                "pass --text-column/--id-column/--keep-columns to match the file"
            )
        text_type = schema.field(text_column).type
        if not _is_text(text_type):
            raise UserError(f"{meta.path}: text column {text_column!r} is {text_type}, not a string column")
        if id_column and id_column in schema.names:
            id_type = schema.field(id_column).type
            if not _is_id(id_type):
                raise UserError(f"{meta.path}: id column {id_column!r} is {id_type}; use a string or integer column")
        out.append(InputFile(meta.path, meta.size_in_bytes, parquet.metadata.num_rows, schema))
    return out


# Rows per table the reader hands on: enough that a table's own costs (a DoFn call, an output table, a row
# group in the output file) are small against its rows; few enough that a table is a few megabytes.
SLICE_ROWS = 10_240


class CorruptInput(RuntimeError):
    """A file whose footer was fine but whose data is not: the run fails, naming the file."""


@dataclass(frozen=True)
class RowGroup:
    """One unit of reading work: a row group and the file row number it starts at."""

    path: str
    index: int
    first_row: int


class ListRowGroups(beam.DoFn):
    """Expand each matched file into its row groups, so big files read in parallel."""

    def process(self, file_metadata):
        path = file_metadata.path
        if not is_data_file(path):
            return
        metadata = _open_parquet(path).metadata
        first = 0
        for index in range(metadata.num_row_groups):
            yield RowGroup(path, index, first)
            first += metadata.row_group(index).num_rows


class ReadRowGroupTables(beam.DoFn):
    """A row group as Arrow tables of at most `slice_rows` rows, columns `id`, `text` and the kept ones.

    Tables, not records: the nightly job classifies a table at a time
    (`worker.tables`), so no per-row object is made until the worker needs one.
    A row group is read in slices so that memory stays bounded whatever the writer's
    row-group size (pandas and Arrow write up to a million rows in one).
    """

    def __init__(self, id_column: str, text_column: str, keep_columns: tuple[str, ...], derive_missing_id: bool,
                 slice_rows: int = SLICE_ROWS):
        self.id_column = id_column
        self.text_column = text_column
        self.keep_columns = keep_columns
        self.derive_missing_id = derive_missing_id
        self.slice_rows = slice_rows

    def process(self, group: RowGroup):
        parquet = _open_parquet(group.path)
        has_id = self.id_column in parquet.schema_arrow.names
        if not has_id and not self.derive_missing_id:
            raise UserError(f"{group.path} has no id column {self.id_column!r}")
        kept = [name for name in dict.fromkeys(self.keep_columns) if name not in ("id", "text")]
        columns = list(dict.fromkeys([self.text_column, *kept] + ([self.id_column] if has_id else [])))
        first = group.first_row
        try:
            for batch in parquet.iter_batches(self.slice_rows, row_groups=[group.index], columns=columns):
                if has_id:
                    ids = batch.column(self.id_column)
                else:
                    base = posixpath.basename(group.path)
                    ids = pa.array([f"{base}:{first + i}" for i in range(batch.num_rows)], pa.string())
                first += batch.num_rows
                yield pa.Table.from_arrays([ids, batch.column(self.text_column), *(batch.column(n) for n in kept)],
                                           names=["id", "text", *kept])
        except (pa.ArrowException, OSError) as exc:
            raise CorruptInput(
                f"{group.path}: row group {group.index} (rows from {group.first_row}) cannot be read: "
                f"{' '.join(str(exc).split())}"
            ) from exc


class ReadComplaints(beam.PTransform):
    """Parquet files matching a pattern → input tables for the worker (`ReadRowGroupTables`)."""

    def __init__(self, pattern: str, id_column: str, text_column: str, keep_columns: tuple[str, ...],
                 derive_missing_id: bool):
        super().__init__()
        self.pattern = pattern
        self.reader = ReadRowGroupTables(id_column, text_column, keep_columns, derive_missing_id)

    def expand(self, pbegin):
        return (
            pbegin
            | "Match" >> fileio.MatchFiles(self.pattern)
            | "ListRowGroups" >> beam.ParDo(ListRowGroups())
            | "Distribute" >> beam.Reshuffle()
            | "ReadTables" >> beam.ParDo(self.reader)
        )
