"""The nightly job's Parquet sink: predictions and dead letters as Parquet files in `--output`.

Committed means: the files are in `--output` and the job has written `_SUCCESS`
after them. Until then they sit in the run's staging directory, so a reader that
waits for `_SUCCESS` never sees a half-written night.
"""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipelines import output as out
from pipelines.sinks import DEAD_LETTERS, PREDICTIONS, Sink
from worker import prediction
from worker.records import DEAD_LETTER_SCHEMA

PREDICTION_FILES = "predictions-*.parquet"
DEAD_LETTER_FILE = "dead_letters-00000-of-00001.parquet"
DEAD_LETTER_FILES = "dead_letters-*.parquet"


class WriteSortedDeadLetters(beam.DoFn):
    """All dead letters in one file, sorted by id, reason and payload: identical runs give identical files.

    Dead letters are the rare case, and ordered ones are what an operator diffs
    between two nights; predictions are sharded and come in the order workers finish.
    """

    def __init__(self, path: str):
        self.path = path

    def process(self, letters: list[dict]):
        rows = sorted(({name: letter.get(name) for name in DEAD_LETTER_SCHEMA.names} for letter in letters),
                      key=lambda r: (r["id"] is not None, r["id"] or "", r["reason"], r["detail"], r["payload"]))
        with FileSystems.create(self.path) as handle:
            pq.write_table(pa.Table.from_pylist(rows, schema=DEAD_LETTER_SCHEMA), handle, compression="zstd")
        yield self.path


class ParquetFiles(Sink):
    COMMITTED = "moved from the run's staging directory into --output, before the job writes _SUCCESS"

    def __init__(self, output: str, staging: str, passthrough: tuple[pa.Field, ...] = ()):
        super().__init__()
        self.output, self.staging, self.passthrough = output, staging, tuple(passthrough)

    def expand(self, classified):
        schema = prediction.schema(self.passthrough)
        (
            classified[PREDICTIONS]  # Arrow tables of `schema`, one row group each (`worker.tables`)
            | "WritePredictions" >> beam.io.WriteToParquetBatched(
                out.join(self.staging, "predictions"), schema=schema, file_name_suffix=".parquet", codec="zstd")
        )
        (
            tuple(classified[DEAD_LETTERS].values())
            | "AllDeadLetters" >> beam.Flatten()
            | "Gather" >> beam.combiners.ToList()
            | "WriteDeadLetters" >> beam.ParDo(WriteSortedDeadLetters(out.join(self.staging, DEAD_LETTER_FILE)))
        )

    def commit(self, staging: str) -> list[str]:
        return out.publish(self.output, staging, (PREDICTION_FILES, DEAD_LETTER_FILES))
