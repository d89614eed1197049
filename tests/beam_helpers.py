"""Run pipeline stages on the in-process runner and gather their outputs through files.

Outputs come back through real files (one pickle per bundle), not class-level state,
so a helper works on any runner whose workers share the test's file system.
"""

from __future__ import annotations

import glob
import os
import pickle
import tempfile
import uuid

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter

from worker import record_columns
from worker.transform import DEAD_LETTER_PARTS, PREDICTIONS, ClassifyComplaints, WorkerConfig


class _WriteBundle(beam.DoFn):
    def __init__(self, directory: str):
        self.directory = directory

    def start_bundle(self):
        self.elements = []

    def process(self, element):
        self.elements.append(element)

    def finish_bundle(self):
        if self.elements:
            with open(os.path.join(self.directory, f"{uuid.uuid4().hex}.pickle"), "wb") as f:
                pickle.dump(self.elements, f)


class Gathered:
    """Where each named PCollection's elements are written; `get(name)` reads them back after the run."""

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="gathered-")

    def add(self, pcoll, name: str) -> None:
        directory = os.path.join(self.root, name)
        os.makedirs(directory, exist_ok=True)
        pcoll | f"Gather{name}" >> beam.ParDo(_WriteBundle(directory))

    def get(self, name: str) -> list:
        found = []
        for path in sorted(glob.glob(os.path.join(self.root, name, "*.pickle"))):
            with open(path, "rb") as f:
                found.extend(pickle.load(f))
        return found


def classify(records: list, config: WorkerConfig):
    """(prediction records, dead letters, PipelineResult) for `records`, run on the FnApiRunner."""
    gathered = Gathered()
    p = beam.Pipeline(runner="FnApiRunner")
    results = p | beam.Create(records, reshuffle=False) | ClassifyComplaints(config)
    gathered.add(results[PREDICTIONS] | "ToRecords" >> beam.FlatMap(record_columns.records), "predictions")
    gathered.add([results[part] for part in DEAD_LETTER_PARTS] | "DeadLetters" >> beam.Flatten(), "dead_letters")
    result = p.run()
    result.wait_until_finish()
    return gathered.get("predictions"), gathered.get("dead_letters"), result


def metric(result, name: str, kind: str = "counters"):
    """Sum of a committed counter, or the list of committed distributions, by name."""
    found = result.metrics().query(MetricsFilter().with_name(name))[kind]
    if kind == "counters":
        return sum(m.committed for m in found)
    return [m.committed for m in found]
