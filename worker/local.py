"""The jobs' verdict on a handful of records, without a pipeline: for `complaints predict` and the page.

Same validation, same handler, same decoding as `ClassifyComplaints`, so a text the
nightly job would dead-letter (`empty_text`, …) is dead-lettered here too, with the
same reason, and a text it would label gets the same prediction record.
"""

from __future__ import annotations

from collections.abc import Sequence

from worker import records
from worker.handler import ModelSlot
from worker.transform import DEAD_LETTERS, WorkerConfig, verdict


class LocalClassifier:
    """One model, loaded once; `classify` answers per record, in input order."""

    def __init__(self, config: WorkerConfig):
        self.config = config
        self.handler = config.handler(warm_up=False)  # a handful of texts: compile only the sizes they need
        self.slot: ModelSlot = self.handler.load_model()  # a broken model directory fails here, in one line

    @property
    def metadata(self) -> dict:
        return self.slot.current.metadata

    def classify(self, inputs: Sequence[dict]) -> list[tuple[str, dict]]:
        """Per input record: (PREDICTIONS, prediction record) or (DEAD_LETTERS, dead letter)."""
        out: list[tuple[str, dict] | None] = [None] * len(inputs)
        valid = []
        for i, record in enumerate(inputs):
            checked = records.validate(record)
            if isinstance(checked, dict):
                out[i] = (DEAD_LETTERS, checked)
            else:
                valid.append((i, *checked))
        size = self.config.max_batch_size
        for start in range(0, len(valid), size):
            chunk = valid[start:start + size]
            results = self.handler.run_inference([text for _, _, text in chunk], self.slot)
            for (i, key, text), result in zip(chunk, results, strict=True):
                out[i] = verdict(key, text, result.inference)
        return out  # type: ignore[return-value]


def texts_as_records(texts: Sequence[str]) -> list[dict]:
    """Plain texts as input records, numbered from 1 as a user counts lines."""
    return [{records.ID: str(n), records.TEXT: text} for n, text in enumerate(texts, start=1)]
