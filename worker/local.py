"""The jobs' verdict on a handful of records, without a pipeline: for `complaints predict`, the page and `compare`.

Same validation (`records.validate`), same handler and core (`worker.core`) as both
jobs, so a text the jobs would dead-letter (`empty_text`, …) is dead-lettered here
too, with the same reason, and a text they would label gets the same prediction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from worker import record_columns, records
from worker.handler import ComplaintModelHandler
from worker.slot import ModelSlot
from worker.transform import DEAD_LETTERS, PREDICTIONS, WorkerConfig, rows_of


class LocalClassifier:
    """One model, loaded once; `classify` answers per record, in input order."""

    def __init__(self, config: WorkerConfig):
        self.config = config
        # a handful of texts: compile only the sizes they need
        self.handler = ComplaintModelHandler(config, warm_up=False)
        self.slot: ModelSlot = self.handler.load_model()  # a broken model directory fails here, in one line

    @property
    def metadata(self) -> dict:
        return self.slot.current.metadata

    @property
    def version(self) -> str:
        return self.slot.current.version

    def classify(self, inputs: Sequence[dict]) -> list[tuple[str, dict]]:
        """Per input record: (PREDICTIONS, prediction record) or (DEAD_LETTERS, dead letter)."""
        return self.scored(inputs)[0]

    def scored(self, inputs: Sequence[dict]) -> tuple[list[tuple[str, dict]], list[int], np.ndarray]:
        """`classify`'s answers, and for the inputs it labelled (their positions) every class's probability:
        what `complaints evaluate` scores, so a row the jobs dead-letter is reported as such, never scored."""
        out: list[tuple[str, dict] | None] = [None] * len(inputs)
        positions, valid = [], []
        for i, record in enumerate(inputs):
            checked = records.validate(record)
            if isinstance(checked, dict):
                out[i] = (DEAD_LETTERS, checked)
            else:
                positions.append(i)
                valid.append(checked)
        labelled, probabilities = [], np.zeros((0, len(self.slot.current.labels)), np.float32)
        if valid:
            [classified] = self.handler.run_inference(rows_of(valid), self.slot)
            predicted = record_columns.records(classified.predictions)
            for row, record in zip(classified.predicted.tolist(), predicted, strict=True):
                out[positions[row]] = (PREDICTIONS, record)
            for row, letter in zip(classified.dead_rows, classified.dead_letters, strict=True):
                out[positions[row]] = (DEAD_LETTERS, letter)
            labelled, probabilities = [positions[row] for row in classified.predicted.tolist()], \
                classified.probabilities
        return out, labelled, probabilities  # type: ignore[return-value]


def texts_as_records(texts: Sequence[str]) -> list[dict]:
    """Plain texts as input records, numbered from 1 as a user counts lines."""
    return [{records.ID: str(n), records.TEXT: text} for n, text in enumerate(texts, start=1)]
