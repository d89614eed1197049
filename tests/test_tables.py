"""The nightly job's edge (`worker.tables`, `ReadRowGroupTables`) against the live job's.

Both serve batches through the one core (`worker.core`) behind RunInference, but the
nightly job forms them from Arrow tables and the live job from records; the same rows
must get the same predictions and the same dead letters either way, including rows
the model fails on alone.
"""

from __future__ import annotations

import json

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.sample import generate
from model.serving import ServingModel
from pipelines.nightly.reading import InputSpec, ReadRowGroupTables, RowGroup
from tests.beam_helpers import Gathered, classify, metric
from tests.test_worker import faulty  # noqa: F401 (a fixture)
from worker import prediction, records
from worker.config import WorkerConfig
from worker.tables import WORD_COUNTS, BatchValidRows, ClassifyTables
from worker.transform import DEAD_LETTER_PARTS, PREDICTIONS

ODD_IDS = [None, "", "   ", "r-dup", "r-dup"]
ODD_TEXTS = [None, "", " \n\t", "😡😡 ?!", "BOOM kargo gelmedi", "x" * 3000, "\ufeffmetin", "a\x00b"]
LONG_ROW = 60  # 70,000 characters: labelled on its first records.MAX_TEXT_CHARS


def classify_tables(tables: list[pa.Table], config, schema: pa.Schema) -> tuple[pa.Table, dict[str, list]]:
    """(all prediction tables as one, dead letters by part) on the FnApiRunner."""
    gathered = Gathered()
    p = beam.Pipeline(runner="FnApiRunner")
    results = p | beam.Create(tables, reshuffle=False) | ClassifyTables(config, schema)
    for name in (PREDICTIONS, WORD_COUNTS, *DEAD_LETTER_PARTS):
        gathered.add(results[name], name)
    classify_tables.result = p.run()
    classify_tables.result.wait_until_finish()
    classify_tables.gathered = gathered
    found = gathered.get(PREDICTIONS)
    assert all(t.schema == schema for t in found)
    return (pa.concat_tables(found) if found else schema.empty_table()), \
        {part: gathered.get(part) for part in DEAD_LETTER_PARTS}


def mixed_table(rows: int) -> pa.Table:
    """Valid rows, with odd ids and texts mixed in, and two kept columns (one dictionary-encoded)."""
    texts = generate(rows, seed=31, labelled=False)["text"].tolist()
    ids = [f"r{i}" for i in range(rows)]
    for n, odd in enumerate(ODD_IDS):
        ids[7 + 13 * n] = odd
    for n, odd in enumerate(ODD_TEXTS):
        texts[3 + 29 * n] = odd
    texts[125] = "BOOM " + texts[125]  # in a batch that starts in the table before
    texts[LONG_ROW] = "kargo gelmedi " * 5000
    return pa.table({
        "id": pa.array(ids, pa.string()),
        "text": pa.array(texts, pa.string()),
        "store": pa.array([f"s{i % 4}" if i % 5 else None for i in range(rows)]).dictionary_encode(),
        "score": pa.array([i if i % 6 else None for i in range(rows)], pa.int64()),
    })


def _ordered(letters: list[dict]) -> list[dict]:
    return sorted(letters, key=lambda d: (d["id"] or "", d["reason"], d["payload"]))


@pytest.mark.usefixtures("faulty")
def test_tables_give_the_record_paths_predictions_and_dead_letters(model_dir):
    """Batches of 50 rows, some spanning two tables, and two rows the model fails on, one in such a
    batch's second table: each is found by its place in its own table, and every other row gets what
    the record path gives it."""
    table = mixed_table(230)
    config = WorkerConfig(model_dir, top_k=3, min_batch_size=50, max_batch_size=50)
    schema = prediction.schema([pa.field("store", pa.string()), pa.field("score", pa.int64())])

    by_table, letters = classify_tables([table.slice(0, 120), table.slice(120)], config, schema)
    by_record, dead, _ = classify(table.to_pylist(), config)

    assert by_table.num_rows + sum(map(len, letters.values())) == table.num_rows
    assert _ordered(letters["Invalid"] + letters["Unclassified"]) == _ordered(dead)
    assert {d["reason"] for d in letters["Invalid"]} == {records.MISSING_ID, records.MISSING_TEXT,
                                                         records.EMPTY_TEXT}
    failed = [d for d in letters["Unclassified"] if d["reason"] == records.INFERENCE_FAILED]
    assert sorted(d["id"] for d in failed) == ["r119", "r125"]
    assert all("BOOM" in d["payload"] for d in failed)

    expected = pa.Table.from_pylist(sorted(by_record, key=lambda r: r["id"]), schema=schema).to_pylist()
    got = by_table.sort_by("id").to_pylist()
    assert len(got) == len(expected) > 200
    for mine, theirs in zip(got, expected, strict=True):
        assert {k: v for k, v in mine.items() if k not in ("confidence", "top_k")} == \
            {k: v for k, v in theirs.items() if k not in ("confidence", "top_k")}
        assert mine["confidence"] == pytest.approx(theirs["confidence"], abs=1e-5)
        assert [t["label"] for t in mine["top_k"]] == [t["label"] for t in theirs["top_k"]]
        assert [t["confidence"] for t in mine["top_k"]] == pytest.approx([t["confidence"] for t in theirs["top_k"]],
                                                                           abs=1e-5)
    assert [r["id"] for r in got if r["text_truncated"]] == [f"r{LONG_ROW}"]  # both paths flag it, and only it


def test_a_text_past_the_limit_is_labelled_on_its_start(loaded):
    serving = ServingModel(loaded, xla=False)
    long = "kargo gelmedi param iade edilmedi " * 3000  # 102,000 characters
    cut = long[:records.MAX_TEXT_CHARS]
    probabilities, tokens, _ = serving([long, cut, "kargo gelmedi"])
    assert probabilities[0] == pytest.approx(probabilities[1], abs=1e-6) and tokens[0] == tokens[1]
    outputs = prediction.BatchOutputs.of(probabilities, serving.labels, 3, 0.5, tokens, tokens, "v",
                                         [long, cut, "kargo gelmedi"])
    assert [r["text_truncated"] for r in prediction.records_of(outputs)] == [True, False, False]


def test_batches_fill_across_the_tables_of_a_bundle():
    """Two tables of 70 rows, batches of 50: a batch of 50 as the first table arrives, 50 with the second,
    and the bundle's last 40 when it ends; not 50, 20, 50, 20 (each padded to a compiled size). Rows
    the rule refuses never enter a batch."""
    texts = generate(140, seed=32, labelled=False)["text"].tolist()
    texts[3] = None
    tables = [pa.table({"id": [f"t{i}" for i in range(lo, lo + 70)], "text": texts[lo:lo + 70],
                        "shop": list(range(lo, lo + 70))}) for lo in (0, 70)]
    step = BatchValidRows(max_batch_size=50, schema=prediction.schema([pa.field("shop", pa.int64())]))
    step.setup()
    step.start_bundle()
    seen, letters = [], []
    for table in tables:
        outputs = list(step.process(table))
        letters += [o.value for o in outputs if isinstance(o, beam.pvalue.TaggedOutput)]
        seen.append([o for o in outputs if not isinstance(o, beam.pvalue.TaggedOutput)])
    last = [windowed.value for windowed in step.finish_bundle()]
    assert [[len(b) for b in batches] for batches in seen] == [[50], [50]]
    assert [len(b) for b in last] == [39]
    assert [letter["id"] for letter in letters] == ["t3"]
    batches = [b for batches in seen for b in batches] + last
    assert [i for b in batches for i in b.ids] == [f"t{i}" for i in range(140) if i != 3]
    for b in batches:  # each row's kept columns stay beside its text, across the table boundary
        assert [f"t{s}" for s in b.kept.column("shop").to_pylist()] == b.ids
        assert b.texts == [texts[int(i[1:])] for i in b.ids]


@pytest.mark.usefixtures("faulty")
def test_word_counts_cover_every_classified_text(model_dir, loaded):
    """The drift check's word signal: summed over the batches, the model's own token count of the texts."""
    texts = generate(140, seed=33, labelled=False)["text"].tolist()
    table = pa.table({"id": [f"w{i}" for i in range(140)], "text": texts})
    _, _ = classify_tables([table.slice(0, 70), table.slice(70)], WorkerConfig(model_dir, max_batch_size=50),
                           prediction.schema())
    words = classify_tables.gathered.get(WORD_COUNTS)
    assert len(words) >= 3  # one sparse element a batch
    assert all((np.diff(word_ids) > 0).all() for word_ids, _ in words)
    assert sum(int(counts.sum()) for _, counts in words) == ServingModel(loaded, xla=False)(texts)[1].sum()
    # RunInference's own metrics, as the live job has them: one model load, every valid row counted.
    assert [d.count for d in metric(classify_tables.result, "load_model_latency_milli_secs", "distributions")] == [1]
    assert metric(classify_tables.result, "num_inferences") == 140
    assert metric(classify_tables.result, "inference_request_batch_size", "distributions")[0].max == 50


@pytest.mark.usefixtures("faulty")
def test_a_table_with_nothing_to_classify_gives_only_dead_letters(model_dir):
    table = pa.table({"id": pa.array(["a", None, "c", "d"]), "text": pa.array([None, "metin", "  ", "?!..."])})
    config = WorkerConfig(model_dir)
    predicted, letters = classify_tables([table], config, prediction.schema())
    assert predicted.num_rows == 0
    assert sorted(d["reason"] for d in letters["Invalid"]) == [records.EMPTY_TEXT, records.MISSING_ID,
                                                               records.MISSING_TEXT]
    [empty] = letters["Unclassified"]  # no kept column: the model's verdict, with the row as its payload
    assert (empty["id"], empty["reason"], json.loads(empty["payload"])) == ("d", records.EMPTY_TEXT,
                                                                             {"id": "d", "text": "?!..."})


def test_row_groups_are_read_in_bounded_slices_with_running_derived_ids(tmp_path):
    """No id column: derived ids count on across slices and row groups; kept columns ride along."""
    path = tmp_path / "night.parquet"
    rows = 45
    pq.write_table(pa.table({"text": [f"t{i}" for i in range(rows)], "shop": list(range(rows))}), path,
                   row_group_size=20)
    reader = ReadRowGroupTables(InputSpec.of(str(path)), "id", "text", ("shop", "id", "shop"), derive_missing_id=True,
                                slice_rows=7)
    tables = [t for group, first in enumerate((0, 20, 40))
              for t in reader.process(RowGroup(str(path), group, first))]
    assert max(t.num_rows for t in tables) == 7
    assert len(tables) == 3 + 3 + 1  # 20 = 7 + 7 + 6, twice, then 5
    whole = pa.concat_tables(tables)
    assert whole.column_names == ["id", "text", "shop"]
    assert whole.column("id").to_pylist() == [f"{path}:{i}" for i in range(rows)]
    assert whole.column("shop").to_pylist() == list(range(rows))
