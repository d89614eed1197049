"""The nightly job's source: Parquet through Beam's filesystems (local paths, globs, gs://).

Writing is the sinks' (`pipelines.sinks.parquet_files`).

Reading goes by row group: the driver-side pre-flight checks every file's footer
(so a bad path or column fails in one line before any work), and the pipeline
reads exactly the files it saw, each row group as Arrow tables, which the worker
classifies a table at a time. A file that vanished or changed in between fails the
run. Knowing the row offset of each row group gives stable derived ids
(`<the file's full path>:<row number>`, unique across the archive and across nights:
`…/2026-11-27/part-0.parquet:17` is not `…/2026-11-28/part-0.parquet:17`) for
archives without an id column.

What is not data is skipped, and counted by reason (`InputSpec.skip_reason`): names
starting with `.` or `_` (staging folders, `_SUCCESS`, Spark and Hive markers),
`beam-temp-*` folders, the run's own `--output`, and files whose footer says a
labelling run wrote them. Arrow's view layouts (`string_view`, which newer writers
choose) are read as their plain equivalents.
"""

from __future__ import annotations

import os
import posixpath
from collections import Counter
from dataclasses import dataclass

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems

from model import files
from model.errors import UserError


def plain_type(t: pa.DataType) -> pa.DataType:
    """The type without Arrow's view layouts, which newer writers choose and Parquet stores the same way."""
    if pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_binary_view(t):
        return pa.binary()
    if pa.types.is_dictionary(t):
        return pa.dictionary(t.index_type, plain_type(t.value_type), t.ordered)
    if pa.types.is_list_view(t) or pa.types.is_list(t):
        return pa.list_(t.value_field.with_type(plain_type(t.value_type)))
    if pa.types.is_large_list_view(t) or pa.types.is_large_list(t):
        return pa.large_list(t.value_field.with_type(plain_type(t.value_type)))
    if pa.types.is_fixed_size_list(t):
        return pa.list_(t.value_field.with_type(plain_type(t.value_type)), t.list_size)
    if pa.types.is_struct(t):
        return pa.struct([t.field(i).with_type(plain_type(t.field(i).type)) for i in range(t.num_fields)])
    if pa.types.is_map(t):
        return pa.map_(t.key_field.with_type(plain_type(t.key_type)), t.item_field.with_type(plain_type(t.item_type)))
    return t


def plain_column(column: pa.ChunkedArray | pa.Array):
    plain = plain_type(column.type)
    return column if plain == column.type else column.cast(plain)


def _is_text(t: pa.DataType) -> bool:
    """Strings of any Arrow layout, bytes (decoded as UTF-8 row by row), their dictionary encodings (pandas
    categoricals), and the null type (a column Arrow wrote with no value at all: every row is dead-lettered as
    missing_text)."""
    t = plain_type(t)
    if pa.types.is_dictionary(t):
        return _is_text(t.value_type)
    return (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
            or pa.types.is_large_binary(t) or pa.types.is_null(t))


def _is_id(t: pa.DataType) -> bool:
    """What `_is_text` takes, and integers (also dictionary-encoded); floats are refused: 1e16 + 1 == 1e16."""
    value = t.value_type if pa.types.is_dictionary(t) else t
    return pa.types.is_integer(value) or _is_text(t)


# Why a matched file is not read; the summary counts skipped files by these reasons.
HIDDEN = "hidden"  # a name on its path (below the input's folder) starts with "." or "_": staging, markers
TEMPORARY = "temporary"  # under a beam-temp-* folder: a file sink's unfinished shards
OWN_OUTPUT = "own_output"  # under this run's --output
LABELLED_OUTPUT = "labelled_output"  # predictions or dead letters of a labelling run (footer metadata)
NOT_PARQUET = "not_parquet_name"  # --input DIR: a file whose name says it is something else
PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
_GLOB = "*?["


@dataclass(frozen=True)
class InputSpec:
    """What `--input` names: a pattern to match, the folder that ids and skip rules are relative to, and the
    run's own output (never read)."""

    pattern: str
    base: str
    own_output: str = ""
    directory: bool = False

    @classmethod
    def of(cls, given: str, own_output: str = "") -> InputSpec:
        if not any(c in given for c in _GLOB) and _is_directory(given):
            folder = given.rstrip("/")
            return cls(folder + "/**", folder, own_output, directory=True)
        literal = given
        for i, c in enumerate(given):
            if c in _GLOB:
                literal = given[:i]
                break
        return cls(given, posixpath.dirname(literal) if literal != given else posixpath.dirname(given), own_output)

    def relative(self, path: str) -> str:
        prefix = self.base.rstrip("/") + "/" if self.base else ""
        return path[len(prefix):] if prefix and path.startswith(prefix) else posixpath.basename(path)

    def skip_reason(self, path: str) -> str | None:
        """Why `path` is not data for this run, by its path alone (the footer check is `LABELLED_OUTPUT`)."""
        if self.own_output and _under(path, self.own_output):
            return OWN_OUTPUT
        parts = self.relative(path).split("/")
        if any(part.startswith("beam-temp-") for part in parts[:-1]):
            return TEMPORARY
        if any(part.startswith((".", "_")) for part in parts):
            return HIDDEN
        name = parts[-1]
        if self.directory and "." in name and not name.lower().endswith(PARQUET_SUFFIXES):
            return NOT_PARQUET
        return None


def _is_directory(path: str) -> bool:
    if not files.remote(path):
        return os.path.isdir(path)
    try:
        return bool(FileSystems.match([path.rstrip("/") + "/**"], limits=[1])[0].metadata_list)
    except Exception:  # noqa: BLE001 (then it is not a folder we can list)
        return False


def _under(path: str, folder: str) -> bool:
    if not files.remote(path) and not files.remote(folder):
        path, folder = os.path.abspath(path), os.path.abspath(folder)
    return path.rstrip("/").startswith(folder.rstrip("/") + "/")


def is_labelled_output(schema: pa.Schema) -> bool:
    """A file this job wrote (`pipelines.sinks.parquet_files` tags its footers)."""
    return b"complaints.output" in (schema.metadata or {})


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


def inspect_inputs(spec: InputSpec, required: list[str], id_column: str | None,
                   text_column: str) -> tuple[list[InputFile], dict[str, int]]:
    """Match the input, skip what is not data, check each file's footer; UserError on the first problem.

    Returns the files to read and the skipped files counted by reason.
    """
    try:
        matches = FileSystems.match([spec.pattern])[0].metadata_list
    except Exception as exc:  # noqa: BLE001 (filesystems raise their own types)
        raise UserError(f"cannot list {spec.pattern}: {str(exc).splitlines()[0]}") from None
    skipped: Counter = Counter()
    out = []
    for meta in sorted(matches, key=lambda m: m.path):
        reason = spec.skip_reason(meta.path)
        if reason:
            skipped[reason] += 1
            continue
        parquet = _open_parquet(meta.path)
        schema = parquet.schema_arrow
        if is_labelled_output(schema):
            skipped[LABELLED_OUTPUT] += 1
            continue
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
    if not out:
        found = f"{sum(skipped.values())} matched, all skipped ({describe_skipped(skipped)})" if skipped else \
            "nothing matches"
        raise UserError(f"no input file to read in {spec.pattern!r}: {found}; check the path or glob (quote it "
                        "in the shell). The output was not touched")
    return out, dict(skipped)


def describe_skipped(skipped: dict[str, int]) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in sorted(skipped.items()))


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


class InputChangedError(RuntimeError):
    """A file differs from what the pre-flight saw: the run fails rather than label a different archive."""


FILES = "files"  # ListRowGroups' second output: one record per matched file, read or skipped


@dataclass(frozen=True)
class Expected:
    """A file as the pre-flight saw it; the reader refuses it if it has changed since."""

    path: str
    size_bytes: int
    rows: int


class ListRowGroups(beam.DoFn):
    """Expand each file into its row groups, so big files read in parallel; report each file on `FILES`.

    Its input is either the pre-flight's files (`Expected`: checked again here, as a file
    may change or vanish in between) or, with `--skip-validation`, the matches of the
    pattern, which get the pre-flight's skip rules here instead.
    """

    def __init__(self, spec: InputSpec):
        self.spec = spec

    def process(self, item):
        if isinstance(item, Expected):
            path = item.path
            size = FileSystems.match([path])[0].metadata_list
            if not size:
                raise InputChangedError(f"{path} was removed after the pre-flight")
            if size[0].size_in_bytes != item.size_bytes:
                raise InputChangedError(f"{path} changed after the pre-flight ({item.size_bytes} → "
                                        f"{size[0].size_in_bytes} bytes)")
        else:
            path = item.path
            reason = self.spec.skip_reason(path)
            if reason:
                yield beam.pvalue.TaggedOutput(FILES, {"path": path, "rows": 0, "skipped": reason})
                return
        parquet = _open_parquet(path)
        metadata = parquet.metadata
        if isinstance(item, Expected) and metadata.num_rows != item.rows:
            raise InputChangedError(f"{path} changed after the pre-flight ({item.rows} → {metadata.num_rows} rows)")
        if is_labelled_output(parquet.schema_arrow):
            yield beam.pvalue.TaggedOutput(FILES, {"path": path, "rows": 0, "skipped": LABELLED_OUTPUT})
            return
        yield beam.pvalue.TaggedOutput(FILES, {"path": path, "rows": metadata.num_rows, "skipped": None})
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

    def __init__(self, spec: InputSpec, id_column: str, text_column: str, keep_columns: tuple[str, ...],
                 derive_missing_id: bool, slice_rows: int = SLICE_ROWS):
        self.spec = spec
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
                    ids = plain_column(batch.column(self.id_column))
                else:
                    ids = pa.array(derived_ids(group.path, first, batch.num_rows), pa.string())
                first += batch.num_rows
                columns = [ids, *(plain_column(batch.column(n)) for n in [self.text_column, *kept])]
                yield pa.Table.from_arrays(columns, names=["id", "text", *kept])
        except (pa.ArrowException, OSError) as exc:
            raise CorruptInput(
                f"{group.path}: row group {group.index} (rows from {group.first_row}) cannot be read: "
                f"{' '.join(str(exc).split())}"
            ) from exc


def derived_ids(path: str, first_row: int, rows: int) -> list[str]:
    """Ids for rows without one: the file's full path and the row's number in it, so no two files' rows (two
    nights' `part-0.parquet` included) share an id. `complaints review export` derives them the same way."""
    return [f"{path}:{first_row + i}" for i in range(rows)]


class ReadComplaints(beam.PTransform):
    """The input → `{"tables": input tables for the worker, FILES: one record per file, read or skipped}`.

    With the pre-flight's files, exactly those are read (the pattern is not matched
    again); without (`--skip-validation`), the pattern is matched here.
    """

    def __init__(self, spec: InputSpec, expected: list[Expected] | None, id_column: str, text_column: str,
                 keep_columns: tuple[str, ...], derive_missing_id: bool):
        super().__init__()
        self.spec, self.expected = spec, expected
        self.reader = ReadRowGroupTables(spec, id_column, text_column, keep_columns, derive_missing_id)

    def expand(self, pbegin):
        files = (pbegin | "Files" >> beam.Create(self.expected) if self.expected is not None
                 else pbegin | "Match" >> fileio.MatchFiles(self.spec.pattern))
        listed = files | "ListRowGroups" >> beam.ParDo(ListRowGroups(self.spec)).with_outputs(FILES, main="groups")
        tables = (
            listed["groups"]
            | "Distribute" >> beam.Reshuffle()
            | "ReadTables" >> beam.ParDo(self.reader)
        )
        return {"tables": tables, FILES: listed[FILES]}
