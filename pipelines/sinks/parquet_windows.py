"""The live job's Parquet writers: prediction tables as Parquet files, one per window of labelling time.

`ParquetFiles.live` (`pipelines.sinks.parquet_files`) writes through them. A window's
file appears under its final name once complete (it is written under a temporary
name first). A killed local job may miss up to one window: the output topic, not
this archive, is the record of what was labelled.

Two writers of the same files, because the runners differ in what moves a window on:
on Dataflow, Beam's windowed `WriteToFiles` (the watermark closes each window); on
the local runner, whose read runs as one endless fused stage, a DoFn in that stage
that writes each window's rows once the wall clock has passed its end.
"""

from __future__ import annotations

import math
import time
import uuid

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms import window
from apache_beam.utils.timestamp import Timestamp


def _write(tables: list[pa.Table], handle, schema: pa.Schema) -> None:
    table = pa.concat_tables([t.select(schema.names) for t in tables])
    pq.write_table(table.replace_schema_metadata(schema.metadata), handle, compression="zstd")


class ParquetSink(fileio.FileSink):
    """Buffers one window's prediction tables and writes them as one Parquet table on flush."""

    def __init__(self, schema: pa.Schema):
        self.schema = schema
        self._tables: list[pa.Table] = []
        self._handle = None

    def open(self, fh):
        self._handle = fh
        self._tables = []

    def write(self, table: pa.Table):
        self._tables.append(table)

    def flush(self):
        if self._tables:
            _write(self._tables, self._handle, self.schema)
            self._tables = []


def _stamp_now(record):
    return window.TimestampedValue(record, time.time())


class ArchivePredictions(beam.PTransform):
    """Window predictions by labelling time and write one Parquet file per window.

    Predictions are re-stamped with the wall clock first: after RunInference's
    stateful batching a batch flushed by its timer carries the timer's timestamp,
    not its messages', so windows are taken over labelling time.
    """

    def __init__(self, prefix: str, window_seconds: int, schema: pa.Schema, kind: str = "predictions"):
        super().__init__()
        self.prefix, self.window_seconds, self.schema, self.kind = prefix, window_seconds, schema, kind

    def expand(self, predictions):
        schema = self.schema
        return (
            predictions
            | "StampLabellingTime" >> beam.Map(_stamp_now)
            | "Window" >> beam.WindowInto(window.FixedWindows(self.window_seconds))
            | "WriteWindows" >> fileio.WriteToFiles(
                path=self.prefix,
                sink=lambda _destination: ParquetSink(schema),
                file_naming=fileio.default_file_naming(self.kind, ".parquet"),
                shards=1,
            )
        )


class ArchiveByWallClock(beam.DoFn):
    """The local runner's archive: a window's rows are written once the wall clock passes its end.

    Tables are kept in memory until then; the last window is written when the job
    stops cleanly (teardown). The input messages are acknowledged once their
    predictions are published, not once archived, so a killed job may miss up to one
    window here: the output topic is the record of what was labelled.
    """

    def __init__(self, prefix: str, window_seconds: int, schema: pa.Schema, kind: str = "predictions"):
        self.prefix = prefix
        self.window_seconds = window_seconds
        self.schema = schema
        self.kind = kind  # the files' name: predictions-…, or shadow-… for --shadow's verdicts

    def setup(self):
        self._tables: list[pa.Table] = []
        self._start: float | None = None

    def process(self, table: pa.Table):
        start = math.floor(time.time() / self.window_seconds) * self.window_seconds
        if self._start is not None and start != self._start:
            self._flush()
        self._start = start
        self._tables.append(table)

    def finish_bundle(self):
        if self._start is not None and time.time() >= self._start + self.window_seconds:
            self._flush()

    def teardown(self):
        self._flush()

    def _flush(self):
        if self._tables:
            start, end = Timestamp(self._start), Timestamp(self._start + self.window_seconds)
            name = f"{self.kind}-{start.to_rfc3339()}-{end.to_rfc3339()}-{uuid.uuid4().hex[:8]}.parquet"
            final, temporary = FileSystems.join(self.prefix, name), FileSystems.join(self.prefix, ".writing-" + name)
            with FileSystems.create(temporary) as handle:
                _write(self._tables, handle, self.schema)
            FileSystems.rename([temporary], [final])
        self._tables, self._start = [], None


def write(predictions, prefix: str, window_seconds: int, schema: pa.Schema, wall_clock: bool,
          kind: str = "predictions"):
    """Apply the writer the runner needs: the wall clock's on the local read, Beam's windows elsewhere. `kind`
    names the files (and, other than predictions, prefixes the steps' labels)."""
    step = "" if kind == "predictions" else kind.capitalize()
    if wall_clock:
        return predictions | f"{step}ArchiveByWallClock" >> beam.ParDo(
            ArchiveByWallClock(prefix, window_seconds, schema, kind))
    return predictions | f"{step}ArchiveWindows" >> ArchivePredictions(prefix, window_seconds, schema, kind)
