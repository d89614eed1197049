"""ClassifyComplaints on a real tiny model, on Beam's in-process runner."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from model.sample import generate
from model.serving import ServingModel
from tests.beam_helpers import classify, metric
from worker import records
from worker.handler import ComplaintModelHandler
from worker.slot import ModelSlot
from worker.transform import WorkerConfig


@pytest.fixture(scope="module")
def texts():
    return generate(1200, seed=21, labelled=False)["text"].tolist()


def test_predictions_equal_the_models_own_and_keep_ids(model_dir, loaded, serving, texts):
    rows = [{"id": f"r{i}", "text": t, "shop": i % 3} for i, t in enumerate(texts)]
    predictions, dead, result = classify(rows, WorkerConfig(model_dir, top_k=32, min_batch_size=7,
                                                           max_batch_size=100))
    assert dead == []
    assert sorted(p["id"] for p in predictions) == sorted(r["id"] for r in rows)
    expected = serving.probabilities(texts)
    by_id = {p["id"]: p for p in predictions}
    for i in range(len(texts)):
        p = by_id[f"r{i}"]
        assert p["shop"] == i % 3  # passthrough kept
        assert p["label"] == loaded.labels[int(expected[i].argmax())]
        assert p["label_id"] == int(expected[i].argmax())
        got = np.array([t["confidence"] for t in sorted(p["top_k"], key=lambda t: loaded.labels.index(t["label"]))])
        np.testing.assert_allclose(got, expected[i], atol=1e-5)
        assert p["model_version"] == loaded.version
    # One load for the whole run, while inference ran in many batches.
    assert [d.count for d in metric(result, "load_model_latency_milli_secs", "distributions")] == [1]
    batches = metric(result, "inference_request_batch_size", "distributions")[0]
    assert batches.count >= 12 and batches.max <= 100
    assert metric(result, "classified") == 1200
    assert metric(result, "num_inferences") == 1200  # RunInference's own count: rows, not batches


def test_top_k_and_needs_review_on_a_known_case(model_dir, loaded, serving, texts):
    probabilities = serving.probabilities(texts[:40])
    confidence = probabilities.max(axis=1)
    threshold = float(np.median(confidence))
    predictions, _, result = classify([{"id": str(i), "text": t} for i, t in enumerate(texts[:40])],
                                      WorkerConfig(model_dir, top_k=2, review_threshold=threshold))
    assert len(predictions) == 40
    for p in predictions:
        row = probabilities[int(p["id"])]
        order = np.argsort(-row)[:2]
        assert [t["label"] for t in p["top_k"]] == [loaded.labels[i] for i in order]
        assert p["top_k"][0]["confidence"] == pytest.approx(p["confidence"])
        assert p["top_k"][0]["confidence"] >= p["top_k"][1]["confidence"]
        assert p["needs_review"] == (row.max() < threshold)
    flagged = int((confidence < threshold).sum())
    assert 0 < flagged < 40
    assert metric(result, "needs_review") == flagged


BAD = [
    ("not a dict", records.MALFORMED_RECORD),
    ({"text": "kargo gelmedi"}, records.MISSING_ID),
    ({"id": "  ", "text": "kargo gelmedi"}, records.MISSING_ID),
    ({"id": "t1"}, records.MISSING_TEXT),
    ({"id": "t2", "text": None}, records.MISSING_TEXT),
    ({"id": "t3", "text": 42}, records.TEXT_NOT_STRING),
    ({"id": "t4", "text": b"\xff\xfe kargo"}, records.INVALID_UTF8),
    ({"id": "t6", "text": "   "}, records.EMPTY_TEXT),
    ({"id": "t7", "text": "?!... :) 😡"}, records.EMPTY_TEXT),  # empty only after standardisation
]


def test_every_dead_letter_reason_and_the_count_balance(model_dir, texts):
    good = [{"id": f"g{i}", "text": t} for i, t in enumerate(texts[:100])]
    good.append({"id": 7, "text": b"Kargo gelmedi"})  # int id and UTF-8 bytes are fine
    mixed = good + [record for record, _ in BAD]
    predictions, dead, result = classify(mixed, WorkerConfig(model_dir))
    assert len(predictions) + len(dead) == len(mixed)
    assert len(predictions) == len(good)
    assert {p["id"] for p in predictions} >= {"7", "g0"}
    assert sorted(d["reason"] for d in dead) == sorted(reason for _, reason in BAD)
    for letter in dead:
        assert letter["detail"] and isinstance(letter["payload"], str)
    assert {d["id"] for d in dead if d["reason"] == records.EMPTY_TEXT} == {"t6", "t7"}
    assert metric(result, "dead_lettered_empty_text") == 2
    assert metric(result, "dead_lettered") == len(BAD)


def test_unpaired_surrogate_is_invalid_utf8():
    # Beam's coders cannot carry such a string between steps, so this is checked directly.
    letter = records.validate({"id": "t5", "text": "kargo \ud800 gelmedi"})
    assert letter["reason"] == records.INVALID_UTF8 and letter["id"] == "t5"


def test_dead_letter_payload_is_truncated():
    letter = records.dead_letter("x", records.MISSING_TEXT, "d", {"id": "x", "note": "a" * 10_000})
    assert len(letter["payload"]) <= records.PAYLOAD_LIMIT + len("…[truncated]")
    assert letter["payload"].endswith("…[truncated]")


class _FailsOnMarker(ServingModel):
    """Fault injection: the real model, except that any batch holding the marker fails."""

    def __call__(self, texts):
        _fail_on_marker(texts)
        return super().__call__(texts)

    def counting_words(self, texts):  # the nightly job's call (it counts words for the drift check)
        _fail_on_marker(texts)
        return super().counting_words(texts)


def _fail_on_marker(texts):
    if any("BOOM" in t for t in texts):
        raise tf.errors.InvalidArgumentError(None, None, "injected failure")


class _FaultyHandler(ComplaintModelHandler):
    def __init__(self, config: WorkerConfig, **kwargs):
        super().__init__(dataclasses.replace(config, min_batch_size=50, max_batch_size=50), **kwargs)

    serving = _FailsOnMarker  # the ServingModel class it serves with

    def load_model(self):
        from model import artifact

        return ModelSlot(self.model_dir, self.serving(artifact.load(self.model_dir)))


@pytest.fixture
def faulty(monkeypatch):
    """The worker's two edges build `_FaultyHandler`: batches of 50, and a model that fails on any batch holding
    the marker (the in-process runner builds the handler in this process, so the patch reaches it)."""
    from worker import tables, transform

    for module in (tables, transform):
        monkeypatch.setattr(module, "ComplaintModelHandler", _FaultyHandler)


def test_one_failing_record_does_not_fail_its_batch(model_dir, texts, faulty):
    rows = [{"id": f"r{i}", "text": t} for i, t in enumerate(texts[:200])]
    rows[57]["text"] = "BOOM " + rows[57]["text"]
    predictions, dead, _ = classify(rows, WorkerConfig(model_dir))
    assert len(predictions) == 199
    assert [(d["id"], d["reason"]) for d in dead] == [("r57", records.INFERENCE_FAILED)]
    assert "injected failure" in dead[0]["detail"]
    assert "BOOM" in dead[0]["payload"]


@pytest.mark.parametrize("whole_bundles", [True, False])
def test_a_bundle_of_records_is_served_in_full_batches_when_the_source_already_sized_it(model_dir, texts,
                                                                                         whole_bundles):
    """Issue #40: the late-ack read's polls are batches already. With `whole_bundles`, a bundle of 200 valid
    records is served as 64 + 64 + 64 + 8 (one prediction table per batch); Beam's estimator instead starts from
    the smallest batch and grows, so a backlog is served in batches far below the model's best size."""
    import apache_beam as beam

    from tests.beam_helpers import Gathered
    from worker.transform import ClassifyComplaints

    gathered = Gathered()
    p = beam.Pipeline(runner="FnApiRunner")
    rows = [{"id": f"r{i}", "text": t} for i, t in enumerate(texts[:200])]
    results = (p | beam.Create(rows, reshuffle=False)
               | ClassifyComplaints(WorkerConfig(model_dir, min_batch_size=8, max_batch_size=64),
                                    whole_bundles=whole_bundles))
    gathered.add(results["predictions"] | beam.Map(lambda table: table.num_rows), "sizes")
    p.run().wait_until_finish()
    sizes = sorted(gathered.get("sizes"), reverse=True)
    assert sum(sizes) == 200
    if whole_bundles:
        assert sizes == [64, 64, 64, 8]
    else:
        assert sizes[-1] == 8 and len(sizes) > 4  # the estimator's first batch is the smallest it may make
