"""The Parquet sink of both jobs: prediction tables as Parquet files, committed as each job can.

One class, two ways to commit, because one job ends and the other never does:
- **nightly** (`ParquetFiles.nightly`): predictions and dead letters in `--output`.
  Committed means: the files are in `--output` and the job has written `_SUCCESS`
  after them. Until then they sit in the run's staging directory, so a reader that
  waits for `_SUCCESS` never sees a half-written night.
- **live** (`ParquetFiles.live`): predictions in one file per window of labelling
  time (`pipelines.sinks.parquet_windows`), with the record's passthrough (its
  `message_id` and its other fields as one JSON column). Committed means: a window's
  file is under its final name once complete.

Dead letters are written like predictions: sharded, as they come, in tables of at
most `LETTER_TABLE_ROWS` letters, so an archive whose every row is dead-lettered
needs no worker to hold them all. Each table is sorted (by id, reason, detail), but
the order of tables and shards follows the workers, as for predictions: sort by id
when you compare two nights.

With `--shadow`, the challenger's verdicts for the same rows go to `shadow-*.parquet`
(live: `shadow-<window>.parquet`), with the prediction schema but never among the
predictions. The nightly commit always publishes the pattern, so a night re-run
without `--shadow` sets the previous run's shadow files aside with the rest.

Both kinds of file carry `complaints.output` in their footer's key-value metadata,
which is how a later run recognises this job's output under its input glob and
skips it (`pipelines.nightly.reading`). A model from the registry (`models:/…`) adds
`complaints.registry` to predictions and dead letters alike: the registry, name, version
and alias that served, as JSON (the live job's: the model it started with; each row's
`model_version` says which served it).
"""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindows

from pipelines.plumbing import commit
from pipelines.sinks import parquet_windows
from pipelines.sinks.base import DEAD_LETTERS, PREDICTIONS, SHADOW, Sink
from worker import prediction, record_columns
from worker.records import DEAD_LETTER_SCHEMA

PREDICTION_FILES = "predictions-*.parquet"
DEAD_LETTER_FILES = "dead_letters-*.parquet"
SHADOW_FILES = "shadow-*.parquet"
NIGHTLY_FILES = (PREDICTION_FILES, DEAD_LETTER_FILES, SHADOW_FILES)  # what a night publishes, whatever it staged
OUTPUT_KIND = b"complaints.output"  # footer metadata key: b"predictions" or b"dead_letters"
REGISTRY_KEY = b"complaints.registry"  # footer metadata key: the registry lineage (JSON), for models:/ models
LETTER_TABLE_ROWS = 10_000


def tagged(schema: pa.Schema, kind: str) -> pa.Schema:
    return schema.with_metadata({**(schema.metadata or {}), OUTPUT_KIND: kind.encode()})


def with_lineage(schema: pa.Schema, lineage: str | None) -> pa.Schema:
    return schema.with_metadata({**(schema.metadata or {}), REGISTRY_KEY: lineage.encode()}) if lineage else schema


class LettersToTables(beam.DoFn):
    """Dead-letter records → Arrow tables of at most `rows` letters, sorted within each table."""

    def __init__(self, rows: int = LETTER_TABLE_ROWS):
        self.rows = rows

    def start_bundle(self):
        self.letters: list[dict] = []

    def process(self, letter: dict):
        self.letters.append({name: letter.get(name) for name in DEAD_LETTER_SCHEMA.names})
        if len(self.letters) >= self.rows:
            yield self._table()

    def finish_bundle(self):
        if self.letters:
            yield GlobalWindows.windowed_value_at_end_of_window(self._table())

    def _table(self) -> pa.Table:
        letters = sorted(self.letters, key=lambda r: (r["id"] is not None, r["id"] or "", r["reason"], r["detail"],
                                                      r["payload"]))
        self.letters = []
        return pa.Table.from_pylist(letters, schema=DEAD_LETTER_SCHEMA)


class ParquetFiles(Sink):
    """Prediction tables (and, nightly, dead letters) as Parquet files; see the module for what committed means."""

    def __init__(self, output: str, schema: pa.Schema, staging: str | None = None,
                 window_seconds: int | None = None, wall_clock: bool = False, lineage: str | None = None,
                 shadow: tuple[pa.Schema, str | None] | None = None):
        """`shadow`: the challenger's file schema and lineage, when the job scores one (`--shadow`)."""
        super().__init__()
        self.lineage = lineage  # the registry lineage (JSON) of a models:/ model, for every file's footer
        self.output, self.schema, self.staging = output, with_lineage(schema, lineage), staging
        self.shadow_schema = with_lineage(shadow[0], shadow[1]) if shadow else None
        self.window_seconds, self.wall_clock = window_seconds, wall_clock
        self.committed = ("moved from the run's staging directory into --output, before the job writes _SUCCESS"
                          if window_seconds is None else
                          "a window's file is under its final name once complete; a killed local job may miss "
                          "one window")

    @classmethod
    def nightly(cls, output: str, staging: str, passthrough: tuple[pa.Field, ...] = (),
                lineage: str | None = None, explain: bool = False, shadow: bool = False,
                shadow_lineage: str | None = None) -> ParquetFiles:
        """`shadow`: the night scores a challenger; its files keep only the prediction's own fields."""
        return cls(output, prediction.schema(passthrough, explain), staging=staging, lineage=lineage,
                   shadow=(prediction.schema(), shadow_lineage) if shadow else None)

    @classmethod
    def live(cls, prefix: str, window_seconds: int, wall_clock: bool, lineage: str | None = None,
             explain: bool = False, shadow: bool = False, shadow_lineage: str | None = None) -> ParquetFiles:
        """`wall_clock`: the local runner's read, whose one endless stage no watermark moves on."""
        return cls(prefix, prediction.schema(record_columns.WRITTEN, explain), window_seconds=window_seconds,
                   wall_clock=wall_clock, lineage=lineage,
                   shadow=(prediction.schema(record_columns.WRITTEN), shadow_lineage) if shadow else None)

    def expand(self, classified) -> list:
        if self.window_seconds is not None:
            parquet_windows.write(classified[PREDICTIONS], self.output, self.window_seconds, self.schema,
                                  self.wall_clock)
            if self.shadow_schema is not None:
                parquet_windows.write(classified[SHADOW], self.output, self.window_seconds, self.shadow_schema,
                                      self.wall_clock, kind=SHADOW)
            return []
        if self.shadow_schema is not None:
            classified[SHADOW] | "WriteShadow" >> beam.io.WriteToParquetBatched(
                commit.join(self.staging, SHADOW), file_name_suffix=".parquet", codec="zstd",
                schema=tagged(self.shadow_schema, SHADOW))
        (
            classified[PREDICTIONS]  # Arrow tables of `schema`, one row group each (`worker.tables`)
            | "WritePredictions" >> beam.io.WriteToParquetBatched(
                commit.join(self.staging, "predictions"), file_name_suffix=".parquet", codec="zstd",
                schema=tagged(self.schema, "predictions"))
        )
        (
            tuple(classified[DEAD_LETTERS].values())
            | "AllDeadLetters" >> beam.Flatten()
            | "LetterTables" >> beam.ParDo(LettersToTables(LETTER_TABLE_ROWS))
            | "WriteDeadLetters" >> beam.io.WriteToParquetBatched(
                commit.join(self.staging, "dead_letters"), file_name_suffix=".parquet", codec="zstd",
                schema=tagged(with_lineage(DEAD_LETTER_SCHEMA, self.lineage), "dead_letters"))
        )
        return []

    def commit(self, transaction) -> None:
        if self.window_seconds is None:
            transaction.publish(NIGHTLY_FILES)


def matches(name: str, pattern: str) -> bool:
    prefix, suffix = pattern.split("*")
    return name.startswith(prefix) and name.endswith(suffix)


def footers(paths: list[str]):
    """(the first file's Arrow schema, or None without files; the rows all the files' footers hold). The load
    table takes the files' own schema: it has `explanation` exactly when the night was explained."""
    schema, rows = None, 0
    for path in paths:
        with FileSystems.open(path, compression_type="uncompressed") as f:
            parquet = pq.ParquetFile(f)
            schema = schema or parquet.schema_arrow
            rows += parquet.metadata.num_rows
    return schema, rows
