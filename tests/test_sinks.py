"""One sink contract: both jobs hand their sinks prediction tables and dead-letter records (issue #27, item 3)."""

from __future__ import annotations

import glob
import json
import math

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.sample import generate
from pipelines.sinks.parquet_files import ParquetFiles
from tests.beam_helpers import Gathered
from worker import prediction, record_columns
from worker.records import DEAD_LETTER_SCHEMA, SOURCE
from worker.tables import ClassifyTables
from worker.transform import DEAD_LETTER_PARTS, PREDICTIONS, ClassifyComplaints, WorkerConfig

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(st.characters(blacklist_categories=())),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=12)


def _finite_equal(a, b) -> bool:
    """Equal as strict JSON says: a non-finite float is null."""
    if isinstance(a, float) and not math.isfinite(a):
        return b is None
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_finite_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_finite_equal, a, b))
    return a == b and type(a) is type(b)


@settings(max_examples=200, deadline=None)
@given(fields=st.dictionaries(st.text(min_size=1).filter(lambda k: k not in ("id", "text", "message_id",
                                                                                    SOURCE)),
                              JSON_VALUES, max_size=5),
       message_id=st.none() | st.text())
def test_a_records_fields_survive_the_columns_they_travel_in(fields, message_id):
    """Any JSON a producer sends (lone surrogates, NaN, nesting) comes back from the columns as it went in."""
    key = {"id": "r1", **fields, **({"message_id": message_id} if message_id is not None else {}),
           SOURCE: {"data": "x", "attributes": {"a": "b"}, "message_id": "m1", "ack_id": "k1"}}
    table = record_columns.kept_table([key])  # Arrow refuses what is not UTF-8: building it is the first check
    back = record_columns.record_of(table.to_pylist()[0])
    assert _finite_equal({k: v for k, v in key.items() if k != "id"}, back)
    for text in table.column(record_columns.FIELDS).to_pylist():
        assert text is None or json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c}")) is not None


def test_fields_json_cannot_hold_are_named_instead():
    circular: dict = {}
    circular["self"] = circular
    table = record_columns.kept_table([{"id": "r1", "loop": circular, "ok": 1}])
    assert record_columns.record_of(table.to_pylist()[0]) == {record_columns.OMITTED: ["loop", "ok"]}


def _records(n: int) -> list[dict]:
    texts = generate(n, seed=5, labelled=False)["text"].tolist()
    records = [{"id": f"r{i}", "text": t, "store": f"s{i % 3}", "n": i, "message_id": f"m{i}",
                SOURCE: {"data": t, "attributes": {}, "message_id": f"m{i}", "ack_id": None}}
               for i, t in enumerate(texts)]
    records[3]["text"] = "?!"  # empty after standardisation: the core's dead letter
    records[4]["text"] = None  # invalid: the edge's dead letter
    return records


def _check_contract(gathered: Gathered, job: str) -> None:
    """Predictions: Arrow tables that start with the prediction's fields; dead letters: records with theirs."""
    tables = gathered.get(job + PREDICTIONS)
    assert tables and all(isinstance(t, pa.Table) for t in tables)
    assert all(t.schema.names[:len(prediction.names())] == list(prediction.names()) for t in tables)
    letters = [letter for part in DEAD_LETTER_PARTS for letter in gathered.get(job + part)]
    assert letters and all(set(DEAD_LETTER_SCHEMA.names) <= set(letter) for letter in letters)


def test_both_jobs_hand_their_sinks_prediction_tables_and_dead_letter_records(model_dir):
    records = _records(40)
    gathered = Gathered()
    with beam.Pipeline(runner="FnApiRunner") as p:
        results = p | "Records" >> beam.Create(records, reshuffle=False) | ClassifyComplaints(WorkerConfig(model_dir))
        for name in (PREDICTIONS, *DEAD_LETTER_PARTS):
            gathered.add(results[name], "live" + name)
    with beam.Pipeline(runner="FnApiRunner") as p:
        table = pa.Table.from_pylist([{k: v for k, v in r.items() if k in ("id", "text", "store")} for r in records])
        schema = prediction.schema([pa.field("store", pa.string())])
        results = p | "Tables" >> beam.Create([table], reshuffle=False) | ClassifyTables(WorkerConfig(model_dir),
                                                                                          schema)
        for name in (PREDICTIONS, *DEAD_LETTER_PARTS):
            gathered.add(results[name], "nightly" + name)
    _check_contract(gathered, "live")
    _check_contract(gathered, "nightly")
    assert gathered.get("live" + PREDICTIONS)[0].schema == record_columns.schema()
    # The Pub/Sub edge's records: the message's fields, then the prediction's.
    [first, *_] = [r for t in gathered.get("live" + PREDICTIONS) for r in record_columns.records(t)]
    assert (first["store"], first["n"], first["message_id"]) == ("s0", 0, "m0") and "label" in first


def test_the_live_archive_is_the_nightly_sink_class_and_keeps_the_passthrough(model_dir, tmp_path):
    """ParquetFiles.live on the local runner: one file for the window, the message's fields kept, no _source."""
    records = _records(30)
    prefix = str(tmp_path / "archive")
    sink = ParquetFiles.live(prefix, window_seconds=3600, wall_clock=True)
    assert type(sink) is type(ParquetFiles.nightly(str(tmp_path / "out"), str(tmp_path / "staging")))
    with beam.Pipeline(runner="FnApiRunner") as p:
        results = p | beam.Create(records, reshuffle=False) | ClassifyComplaints(WorkerConfig(model_dir))
        assert {"predictions": results[PREDICTIONS], "dead_letters": {}} | sink == []
    [path] = glob.glob(f"{prefix}/predictions-*.parquet")
    archive = pq.read_table(path)
    assert archive.schema.names == [*prediction.names(), "message_id", "fields"]
    rows = {row["id"]: row for row in archive.to_pylist()}
    assert len(rows) == 28  # the empty and the missing text are dead letters, not archived
    assert json.loads(rows["r7"]["fields"]) == {"store": "s1", "n": 7} and rows["r7"]["message_id"] == "m7"
