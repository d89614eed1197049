"""Parquet files per fixed window, so the live stream feeds the nightly archive format."""

from __future__ import annotations

import time

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io import fileio
from apache_beam.transforms import window

from worker.records import prediction_schema

STREAM_ARCHIVE_SCHEMA = prediction_schema([pa.field("message_id", pa.string())])


class ParquetSink(fileio.FileSink):
    """Buffers one window's records and writes them as one Parquet table on flush."""

    def __init__(self, schema: pa.Schema = STREAM_ARCHIVE_SCHEMA):
        self.schema = schema
        self._rows: list[dict] = []
        self._handle = None

    def open(self, fh):
        self._handle = fh
        self._rows = []

    def write(self, record):
        self._rows.append({name: record.get(name) for name in self.schema.names})

    def flush(self):
        if self._rows:
            pq.write_table(pa.Table.from_pylist(self._rows, schema=self.schema), self._handle, compression="zstd")
            self._rows = []


def _stamp_now(record):
    return window.TimestampedValue(record, time.time())


class ArchivePredictions(beam.PTransform):
    """Window predictions by labelling time and write one Parquet file per window.

    Predictions are re-stamped with the wall clock first: after RunInference's
    stateful batching a batch flushed by its timer carries the timer's timestamp,
    not its messages', so windows are taken over labelling time.
    """

    def __init__(self, prefix: str, window_seconds: int):
        super().__init__()
        self.prefix = prefix
        self.window_seconds = window_seconds

    def expand(self, predictions):
        return (
            predictions
            | "StampLabellingTime" >> beam.Map(_stamp_now)
            | "Window" >> beam.WindowInto(window.FixedWindows(self.window_seconds))
            | "WriteWindows" >> fileio.WriteToFiles(
                path=self.prefix,
                sink=lambda _destination: ParquetSink(),
                file_naming=fileio.default_file_naming("predictions", ".parquet"),
                shards=1,
            )
        )
