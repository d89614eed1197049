"""The live job's Parquet sink: its predictions as Parquet files, one per window of labelling time.

Committed means: a window's file appears under its final name once complete (it is
written under a temporary name first). A killed local job may miss up to one
window: the output topic, not this archive, is the record of what was labelled.

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

from pipelines.options import LATE_ACK
from pipelines.sinks import PREDICTIONS, Sink
from worker import prediction


def archive_schema() -> pa.Schema:
    """Read when a writer is built, so it follows `worker.prediction.FIELDS`."""
    return prediction.schema([pa.field("message_id", pa.string())])


def _row(record: dict, schema: pa.Schema) -> dict:
    return {name: record.get(name) for name in schema.names}


def _write(rows: list[dict], handle, schema: pa.Schema) -> None:
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), handle, compression="zstd")


class ParquetSink(fileio.FileSink):
    """Buffers one window's records and writes them as one Parquet table on flush."""

    def __init__(self, schema: pa.Schema | None = None):
        self.schema = schema or archive_schema()
        self._rows: list[dict] = []
        self._handle = None

    def open(self, fh):
        self._handle = fh
        self._rows = []

    def write(self, record):
        self._rows.append(_row(record, self.schema))

    def flush(self):
        if self._rows:
            _write(self._rows, self._handle, self.schema)
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
        schema = archive_schema()
        return (
            predictions
            | "StampLabellingTime" >> beam.Map(_stamp_now)
            | "Window" >> beam.WindowInto(window.FixedWindows(self.window_seconds))
            | "WriteWindows" >> fileio.WriteToFiles(
                path=self.prefix,
                sink=lambda _destination: ParquetSink(schema),
                file_naming=fileio.default_file_naming("predictions", ".parquet"),
                shards=1,
            )
        )


class ArchiveByWallClock(beam.DoFn):
    """The local runner's archive: a window's rows are written once the wall clock passes its end.

    Rows are kept in memory until then; the last window is written when the job
    stops cleanly (teardown). The input messages are acknowledged once their
    predictions are published, not once archived, so a killed job may miss up to one
    window here: the output topic is the record of what was labelled.
    """

    def __init__(self, prefix: str, window_seconds: int, schema: pa.Schema | None = None):
        self.prefix = prefix
        self.window_seconds = window_seconds
        self.schema = schema or archive_schema()

    def setup(self):
        self._rows: list[dict] = []
        self._start: float | None = None

    def process(self, prediction: dict):
        start = math.floor(time.time() / self.window_seconds) * self.window_seconds
        if self._start is not None and start != self._start:
            self._flush()
        self._start = start
        self._rows.append(_row(prediction, self.schema))

    def finish_bundle(self):
        if self._start is not None and time.time() >= self._start + self.window_seconds:
            self._flush()

    def teardown(self):
        self._flush()

    def _flush(self):
        if self._rows:
            start, end = Timestamp(self._start), Timestamp(self._start + self.window_seconds)
            name = f"predictions-{start.to_rfc3339()}-{end.to_rfc3339()}-{uuid.uuid4().hex[:8]}.parquet"
            final, temporary = FileSystems.join(self.prefix, name), FileSystems.join(self.prefix, ".writing-" + name)
            with FileSystems.create(temporary) as handle:
                _write(self._rows, handle, self.schema)
            FileSystems.rename([temporary], [final])
        self._rows, self._start = [], None


class ParquetWindows(Sink):
    COMMITTED = "a window's file is under its final name once complete; a killed local job may miss one window"

    def __init__(self, prefix: str, window_seconds: int, read: str):
        super().__init__()
        self.prefix, self.window_seconds, self.read = prefix, window_seconds, read

    def expand(self, classified):
        predictions = classified[PREDICTIONS]
        if self.read == LATE_ACK:
            return predictions | "ArchiveByWallClock" >> beam.ParDo(
                ArchiveByWallClock(self.prefix, self.window_seconds))
        return predictions | "ArchiveWindows" >> ArchivePredictions(self.prefix, self.window_seconds)
