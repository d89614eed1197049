"""The nightly job's Parquet sink: predictions and dead letters as Parquet files in `--output`.

Committed means: the files are in `--output` and the job has written `_SUCCESS`
after them. Until then they sit in the run's staging directory, so a reader that
waits for `_SUCCESS` never sees a half-written night.

Dead letters are written like predictions: sharded, as they come, in tables of at
most `LETTER_TABLE_ROWS` letters, so an archive whose every row is dead-lettered
needs no worker to hold them all. Each table is sorted (by id, reason, detail), but
the order of tables and shards follows the workers, as for predictions: sort by id
when you compare two nights.

Both kinds of file carry `complaints.output` in their footer's key-value metadata,
which is how a later run recognises this job's output under its input glob and
skips it (`pipelines.parquet`).
"""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
from apache_beam.transforms.window import GlobalWindows

from pipelines import output as out
from pipelines.sinks import DEAD_LETTERS, PREDICTIONS, Sink
from worker import prediction
from worker.records import DEAD_LETTER_SCHEMA

PREDICTION_FILES = "predictions-*.parquet"
DEAD_LETTER_FILES = "dead_letters-*.parquet"
OUTPUT_KIND = b"complaints.output"  # footer metadata key: b"predictions" or b"dead_letters"
LETTER_TABLE_ROWS = 10_000


def tagged(schema: pa.Schema, kind: str) -> pa.Schema:
    return schema.with_metadata({**(schema.metadata or {}), OUTPUT_KIND: kind.encode()})


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
    COMMITTED = "moved from the run's staging directory into --output, before the job writes _SUCCESS"

    def __init__(self, output: str, staging: str, passthrough: tuple[pa.Field, ...] = ()):
        super().__init__()
        self.output, self.staging, self.passthrough = output, staging, tuple(passthrough)

    def expand(self, classified):
        (
            classified[PREDICTIONS]  # Arrow tables of `schema`, one row group each (`worker.tables`)
            | "WritePredictions" >> beam.io.WriteToParquetBatched(
                out.join(self.staging, "predictions"), file_name_suffix=".parquet", codec="zstd",
                schema=tagged(prediction.schema(self.passthrough), "predictions"))
        )
        (
            tuple(classified[DEAD_LETTERS].values())
            | "AllDeadLetters" >> beam.Flatten()
            | "LetterTables" >> beam.ParDo(LettersToTables(LETTER_TABLE_ROWS))
            | "WriteDeadLetters" >> beam.io.WriteToParquetBatched(
                out.join(self.staging, "dead_letters"), file_name_suffix=".parquet", codec="zstd",
                schema=tagged(DEAD_LETTER_SCHEMA, "dead_letters"))
        )

    def commit(self, transaction) -> None:
        transaction.publish((PREDICTION_FILES, DEAD_LETTER_FILES))
