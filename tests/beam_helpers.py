"""Run ClassifyComplaints on the in-process runner and collect its outputs."""

from __future__ import annotations

import typing

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter

from worker import record_columns
from worker.transform import DEAD_LETTER_PARTS, DEAD_LETTERS, PREDICTIONS, ClassifyComplaints, WorkerConfig


class _Collect(beam.DoFn):
    store: typing.ClassVar[dict[str, list]] = {}

    def __init__(self, name):
        self.name = name

    def process(self, element):
        _Collect.store.setdefault(self.name, []).append(element)


def classify(records: list, config: WorkerConfig):
    """(predictions, dead letters, PipelineResult) for `records`, run on the FnApiRunner."""
    _Collect.store = {}
    p = beam.Pipeline(runner="FnApiRunner")
    results = p | beam.Create(records, reshuffle=False) | ClassifyComplaints(config)
    results[PREDICTIONS] | "ToRecords" >> beam.FlatMap(record_columns.records) \
        | "CollectP" >> beam.ParDo(_Collect(PREDICTIONS))
    [results[part] for part in DEAD_LETTER_PARTS] | "DeadLetters" >> beam.Flatten() \
        | "CollectD" >> beam.ParDo(_Collect(DEAD_LETTERS))
    result = p.run()
    result.wait_until_finish()
    return _Collect.store.get(PREDICTIONS, []), _Collect.store.get(DEAD_LETTERS, []), result


def metric(result, name: str, kind: str = "counters"):
    """Sum of a committed counter, or the list of committed distributions, by name."""
    found = result.metrics().query(MetricsFilter().with_name(name))[kind]
    if kind == "counters":
        return sum(m.committed for m in found)
    return [m.committed for m in found]
