"""The nightly job's BigQuery tables (issue #41) against a real emulator (bqemulator, its own environment).

Every test reads the tables back through the BigQuery client and compares them with the
Parquet files the same night committed: the two stores must hold the same rows, or
both what they held before. Where the emulator differs from BigQuery, the test says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.plumbing import bigquery
from pipelines.plumbing import commit as out
from pipelines.plumbing.bigquery import TableRef
from pipelines.sinks import bigquery_schema as schemas
from pipelines.sinks.bigquery_tables import BigQueryTables
from tests.archives import write_archive
from tests.bigquery_server import PROJECT, bigquery_emulator
from tests.commands import invoke, one_error

DATASET = "complaints"
SERVER: dict = {}  # the emulator's process, to freeze it


@pytest.fixture(scope="module")
def gcs_base(tmp_path_factory) -> str:
    """Where the storage emulator of the gs:// test keeps its objects on disk (the BigQuery emulator's gs:// root)."""
    return str(tmp_path_factory.mktemp("gcs"))


@pytest.fixture(scope="module")
def emulator(tmp_path_factory, gcs_base):
    with bigquery_emulator(tmp_path_factory.mktemp("bq"), gcs_root=os.path.join(gcs_base, ".cloudstorage")) as server:
        SERVER["process"] = server.process
        client = bigquery.client(PROJECT)
        client.create_dataset(f"{PROJECT}.{DATASET}")
        yield client


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("archive")
    write_archive(folder, rows=1200, files=2)
    return str(folder / "*.parquet")


_tables = iter(range(10_000))


@pytest.fixture
def table(emulator) -> TableRef:
    """A table name of this test's own (the tables are created by the job on first use)."""
    return TableRef(PROJECT, DATASET, f"labels_{next(_tables)}")


NIGHT = "2026-12-01"


def label(archive, output, table, *extra):
    night = () if "--night" in extra else ("--night", NIGHT)
    return invoke("label", "--model", MODEL["dir"], "--input", archive, "--output", output, "--no-progress",
                  "--keep-columns", "store", "--bigquery-table", str(table), *night, *extra)


MODEL: dict = {}


@pytest.fixture(autouse=True)
def _model(model_dir):
    MODEL["dir"] = model_dir


def rows(client, ref: TableRef) -> pd.DataFrame:
    result = client.query(f"SELECT * FROM {ref.sql}").result()
    frame = pd.DataFrame([dict(r) for r in result], columns=[f.name for f in result.schema])
    return frame.sort_values(["output", "id", *([c for c in ("reason",) if c in frame])]).reset_index(drop=True)


def parquet(output: str, prefix: str) -> pd.DataFrame:
    names = sorted(n for n in os.listdir(output) if n.startswith(prefix))
    return pd.concat([pd.read_parquet(os.path.join(output, n)) for n in names], ignore_index=True)


def state(client, table: TableRef) -> dict:
    """Both tables' rows (or None where a table does not exist), for before/after comparisons."""
    from google.api_core import exceptions

    found = {}
    for ref in (table, table.dead_letters):
        try:
            client.get_table(str(ref))
        except exceptions.NotFound:
            found[str(ref)] = None
            continue
        frame = rows(client, ref)
        found[str(ref)] = frame.drop(columns=[c for c in ("top_k", "explanation") if c in frame]).to_dict("records")
    return found


def success_run(output) -> str | None:
    path = os.path.join(output, out.SUCCESS)
    return open(path).read() if os.path.exists(path) else None


def test_a_night_lands_in_both_tables_as_its_parquet_files_hold_it(emulator, archive, table, tmp_path):
    output = str(tmp_path / "night")
    result = label(archive, output, table)
    assert result.exit_code == 0, result.output
    assert f"→ {table}" in result.output
    run_id = success_run(output)
    summary = json.load(open(os.path.join(output, "summary.json")))
    assert summary["bigquery"]["table"] == str(table) and summary["bigquery"]["run_id"] == run_id

    predicted, in_table = parquet(output, "predictions-").sort_values("id").reset_index(drop=True), rows(emulator,
                                                                                                       table)
    assert len(in_table) == len(predicted) == summary["predicted"] == summary["bigquery"]["rows"]
    assert set(in_table["run_id"]) == {run_id} and set(in_table["output"]) == {output}
    for column in ("id", "label", "label_id", "needs_review", "model_version", "tokens", "store"):
        assert in_table[column].tolist() == predicted[column].tolist(), column
    assert in_table["confidence"].tolist() == pytest.approx(predicted["confidence"].tolist(), abs=1e-6)
    assert [[(p["label"], round(p["confidence"], 5)) for p in row] for row in in_table["top_k"]] == \
        [[(p["label"], round(float(p["confidence"]), 5)) for p in row] for row in predicted["top_k"]]

    letters = parquet(output, "dead_letters-").sort_values(["id", "reason"]).reset_index(drop=True)
    in_letters = rows(emulator, table.dead_letters)
    assert len(in_letters) == len(letters) == summary["dead_lettered"] > 0
    assert in_letters[["id", "reason", "detail"]].values.tolist() == letters[["id", "reason", "detail"]].values.tolist()

    schema = schemas.of_table(emulator.get_table(str(table)).schema)  # explicit, from the record: not guessed
    assert schema == schemas.predictions((pa.field("store", pa.string()),))
    top_k = next({k: v for k, v in f.items() if k != "description"} for f in schema if f["name"] == "top_k")
    assert top_k == {"name": "top_k", "type": "RECORD", "mode": "REPEATED", "fields": [
        {"name": "label", "type": "STRING", "mode": "NULLABLE"},
        {"name": "confidence", "type": "FLOAT64", "mode": "NULLABLE"}]}
    described = {f["name"]: f.get("description") for f in schema}  # the record's field docs, in the warehouse
    assert described["confidence"] and described["night"] and described["run_id"] and not described["store"]
    made = emulator.get_table(str(table))
    assert made.time_partitioning.field == "night" and made.clustering_fields == ["label", "output"]
    assert made.labels == {"written-by": "complaints-label"} and "complaint labels" in made.description
    assert {str(d) for d in in_table["night"]} == {NIGHT} and in_table["labelled_at"].notna().all()
    assert not [t.table_id for t in emulator.list_tables(f"{PROJECT}.{DATASET}") if "__" in t.table_id]


def test_a_rerun_replaces_its_night_and_another_night_adds_its_own(emulator, archive, table, tmp_path):
    first, second = str(tmp_path / "night-1"), str(tmp_path / "night-2")
    assert label(archive, first, table).exit_code == 0
    before = rows(emulator, table)
    rerun = label(archive, first, table)
    assert rerun.exit_code == 0, rerun.output
    after = rows(emulator, table)
    assert len(after) == len(before) and set(after["run_id"]) == {success_run(first)} != set(before["run_id"])
    assert after["id"].tolist() == before["id"].tolist()

    assert label(archive, second, table).exit_code == 0
    both = rows(emulator, table)
    assert both.groupby("output").size().to_dict() == {first: len(before), second: len(before)}
    assert set(both[both["output"] == first]["run_id"]) == {success_run(first)}
    letters = rows(emulator, table.dead_letters)
    assert letters.groupby("output").size().to_dict() == {first: 3, second: 3}


def test_a_night_on_gs_is_loaded_by_uri_from_its_committed_files(emulator, gcs_base, archive, table):
    """Output on gs:// (the storage emulator, keeping its objects on disk where the BigQuery emulator resolves
    gs:// URIs): the load job reads the committed files by URI, as BigQuery reads Cloud Storage; a rerun replaces."""
    import shutil

    from apache_beam.io.filesystems import FileSystems

    from tests.storage_emulators import storage_emulator

    binary = shutil.which("gcp-storage-emulator") or os.path.join(os.path.dirname(sys.executable),
                                                                   "gcp-storage-emulator")
    with storage_emulator(lambda port: ["env", f"STORAGE_BASE={gcs_base}", binary, "start", "--host=127.0.0.1",
                                        f"--port={port}", "--default-bucket=nights"]):
        output = "gs://nights/2026-12-01"
        for _ in range(2):
            result = label(archive, output, table)
            assert result.exit_code == 0, result.output
            run_id = out.read_text(f"{output}/{out.SUCCESS}")
            in_table = rows(emulator, table)
            assert set(in_table["run_id"]) == {run_id} and set(in_table["output"]) == {output}
            names = [m.path for m in FileSystems.match([f"{output}/predictions-*.parquet"])[0].metadata_list]
            committed = pd.concat([pd.read_parquet(FileSystems.open(n)) for n in names]).sort_values("id")
            assert in_table["id"].tolist() == committed["id"].tolist()
            assert in_table["label"].tolist() == committed["label"].tolist()


def test_a_table_whose_schema_differs_stops_the_night_before_any_work(emulator, archive, table, tmp_path):
    from google.cloud.bigquery import Table

    fields = schemas.predictions((pa.field("store", pa.int64()),))
    emulator.create_table(Table(str(table), schema=schemas.to_api(fields)))
    output = tmp_path / "night"
    one_error(label(archive, output, table), str(table), "'store'", "INT64", "STRING")
    assert not output.exists()  # nothing touched: no output, no hold, no staging
    assert rows(emulator, table).empty


@pytest.mark.parametrize("name", ["my-project.complaints", "p.d.t$20261127", "not a table"])
def test_a_malformed_table_name_is_one_line(archive, tmp_path, name):
    one_error(invoke("label", "--model", MODEL["dir"], "--input", archive, "--output", tmp_path / "o",
                     "--bigquery-table", name), "PROJECT.DATASET.TABLE")


def test_a_missing_dataset_is_one_line(emulator, archive, tmp_path):
    one_error(label(archive, tmp_path / "o", TableRef(PROJECT, "nosuch", "labels")), "dataset", "does not exist")


# Every step of the rule, failed: the tables and the Parquet output are as they were before the run.
STEPS = {
    "create the load table": ("_work_table", 0),
    "load the predictions": ("_load", 0),
    "load the dead letters": ("_load", 1),
    "count the loaded rows": ("_count", 0),
    "the swap transaction": ("apply", 0),
}


def _failing(monkeypatch, method: str, at: int) -> None:
    real, calls = getattr(BigQueryTables, method), {"n": 0}

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at + 1:
            raise RuntimeError(f"injected: {method} fails")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(BigQueryTables, method, failing)


@pytest.mark.parametrize("step", [*STEPS, "the _SUCCESS move after the swap", "the hold lost after the swap"])
def test_a_night_that_fails_at_any_step_leaves_both_stores_as_they_were(emulator, archive, table, tmp_path,
                                                                        monkeypatch, step):
    output = str(tmp_path / "night")
    assert label(archive, output, table).exit_code == 0
    assert label(archive, str(tmp_path / "other"), table).exit_code == 0  # another night in the same tables
    before, run_before = state(emulator, table), success_run(output)
    files_before = sorted(os.listdir(output))
    if step in STEPS:
        _failing(monkeypatch, *STEPS[step])
    else:
        real_move = out.Commit._move

        def move(self, source, target):
            if target == out.join(self.output, out.SUCCESS) and self.stores:  # the last move: after the swap
                if "hold" in step:
                    from pipelines.plumbing.hold import HoldLost
                    raise HoldLost("injected: another run took the output over")
                raise OSError("injected: the _SUCCESS rename fails")
            return real_move(self, source, target)

        monkeypatch.setattr(out.Commit, "_move", move)
    result = label(archive, output, table)
    assert result.exit_code == 2 and "injected" in result.output, result.output
    assert state(emulator, table) == before
    assert success_run(output) == run_before and sorted(os.listdir(output)) == files_before
    monkeypatch.undo()
    assert label(archive, output, table).exit_code == 0  # and the next run goes through
    assert len(rows(emulator, table)) == len(pd.DataFrame(before[str(table)]))


def test_a_table_changed_during_the_run_is_refused_at_the_commit(emulator, archive, table, tmp_path, monkeypatch):
    """A real fault, not an injected one: someone alters the table after the pre-flight."""
    from pipelines.nightly.job import Job

    output = str(tmp_path / "night")
    assert label(archive, output, table).exit_code == 0
    before, run_before = state(emulator, table), success_run(output)
    real = Job._monitor

    def monitor(self, summary, stats):  # the schema through the tables API: the emulator ignores ALTER TABLE
        from google.cloud.bigquery import SchemaField

        found = emulator.get_table(str(table))
        found.schema = [*found.schema, SchemaField("added_by_someone", "STRING")]
        emulator.update_table(found, ["schema"])
        return real(self, summary, stats)

    monkeypatch.setattr(Job, "_monitor", monitor)
    result = label(archive, output, table)
    assert result.exit_code == 2 and "added_by_someone" in result.output, result.output
    after = state(emulator, table)
    assert [{k: v for k, v in r.items() if k != "added_by_someone"} for r in after[str(table)]] == \
        before[str(table)]
    assert success_run(output) == run_before


KILL_AFTER_SWAP = """
import os, signal, sys
from pipelines.sinks.bigquery_tables import BigQueryTables
real = BigQueryTables.apply
def apply(self, save):
    real(self, save)
    os.kill(os.getpid(), signal.SIGKILL)  # between the swap and _SUCCESS
BigQueryTables.apply = apply
from pipelines.app.cli import cli
cli(sys.argv[1:])
"""


def _killed_after_swap(archive, output: str, table: TableRef) -> None:
    """The real command in its own process, SIGKILLed between its swap and its `_SUCCESS`."""
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_SWAP, "label", "--model", MODEL["dir"], "--input", archive, "--output",
         output, "--no-progress", "--keep-columns", "store", "--bigquery-table", str(table), "--night", NIGHT],
        capture_output=True, text=True, timeout=600, env=os.environ)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]


def test_a_night_killed_between_the_swap_and_success_is_mended_by_the_next_run(emulator, archive, table,
                                                                                tmp_path):
    output = str(tmp_path / "night")
    assert label(archive, output, table).exit_code == 0
    _killed_after_swap(archive, output, table)
    assert success_run(output) is None  # the output does not claim to be complete
    in_table = rows(emulator, table)
    assert len(set(in_table["run_id"])) == 1 and len(in_table) == len(parquet(output, "predictions-"))
    killed_run = in_table["run_id"][0]
    mended = label(archive, output, table)
    assert mended.exit_code == 0, mended.output
    after = rows(emulator, table)
    assert set(after["run_id"]) == {success_run(output)} != {killed_run} and len(after) == len(in_table)


def test_kept_columns_of_every_type_bigquery_holds_arrive_as_parquet_has_them(emulator, table, tmp_path):
    import datetime as dt
    import decimal

    n = 60
    texts = ["kargo gelmedi iade istiyorum"] * (n - 1) + [""]
    columns = {
        "id": [f"r{i}" for i in range(n)], "text": texts,
        "i8": pa.array(range(n), pa.int8()), "u32": pa.array(range(n), pa.uint32()),
        "f32": pa.array([i / 4 for i in range(n)], pa.float32()), "flag": [i % 2 == 0 for i in range(n)],
        "raw": [bytes([i, 255]) for i in range(n)], "day": [dt.date(2026, 1, 1 + i % 28) for i in range(n)],
        "at": pa.array([dt.datetime(2026, 1, 1, i % 24, tzinfo=dt.UTC) for i in range(n)], pa.timestamp("us", "UTC")),
        "local": pa.array([dt.datetime(2026, 1, 1, i % 24) for i in range(n)], pa.timestamp("ms")),
        "clock": pa.array([dt.time(i % 24, 30) for i in range(n)], pa.time64("us")),
        "amount": pa.array([decimal.Decimal(f"{i}.25") for i in range(n)], pa.decimal128(12, 2)),
        "tags": [[f"t{i}", "x"] if i % 3 else [] for i in range(n)],
        "place": [{"city": "İzmir", "zone": i} for i in range(n)],
        "none": pa.nulls(n),
    }
    folder = tmp_path / "in"
    folder.mkdir()
    pq.write_table(pa.table(columns), folder / "typed.parquet")
    kept = [c for c in columns if c not in ("id", "text")]
    output = str(tmp_path / "night")
    result = invoke("label", "--model", MODEL["dir"], "--input", folder / "*.parquet", "--output", output,
                    "--no-progress", "--keep-columns", ",".join(kept), "--bigquery-table", str(table),
                    "--night", NIGHT)
    assert result.exit_code == 0, result.output
    predicted = parquet(output, "predictions-").sort_values("id").reset_index(drop=True)
    in_table = rows(emulator, table)
    assert len(in_table) == len(predicted) == n - 1
    for column in kept:
        want, got = predicted[column].tolist(), in_table[column].tolist()
        if column == "local":  # BigQuery's DATETIME (a civil time) comes back as a naive datetime
            want = [w.to_pydatetime() for w in want]
        if column == "tags":  # a REPEATED column has no null: an empty list is []
            want, got = [list(w) for w in want], [list(g) for g in got]
        if column == "none":
            assert all(g is None or g != g for g in got)
            continue
        assert [_plain(g) for g in got] == [_plain(w) for w in want], column


def _plain(value):
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if hasattr(value, "item") and not isinstance(value, bytes | str):
        value = value.item()
    if isinstance(value, float):
        return round(value, 5)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@pytest.mark.parametrize(("kind", "fragment"), [
    (pa.uint64(), "uint64"), (pa.list_(pa.list_(pa.string())), "list of lists"),
    (pa.decimal256(76, 40), "cannot hold")])
def test_a_kept_column_bigquery_cannot_hold_is_one_line_before_any_work(emulator, table, tmp_path, kind,
                                                                         fragment):
    folder = tmp_path / "in"
    folder.mkdir()
    pq.write_table(pa.table({"id": ["a"], "text": ["kargo"], "odd": pa.array([None], kind)}), folder / "x.parquet")
    output = tmp_path / "night"
    one_error(invoke("label", "--model", MODEL["dir"], "--input", folder / "x.parquet", "--output", output,
                     "--keep-columns", "odd", "--bigquery-table", str(table), "--night", NIGHT), "'odd'", fragment)
    assert not output.exists()


def test_maps_are_repeated_key_value_records():
    """BigQuery loads a Parquet MAP as REPEATED RECORD<key, value> with map_target_type=ARRAY_OF_STRUCT; the
    emulator cannot (DuckDB: 'Unimplemented type for cast MAP -> STRUCT[]'), so this checks the schema only."""
    mapped = schemas.field(pa.field("attrs", pa.map_(pa.string(), pa.int64())))
    assert mapped == {"name": "attrs", "type": "RECORD", "mode": "REPEATED", "fields": [
        {"name": "key", "type": "STRING", "mode": "NULLABLE"}, {"name": "value", "type": "INT64", "mode": "NULLABLE"}]}


def test_the_live_subscription_schema_takes_every_message_the_live_job_publishes(emulator, table, model_dir):
    """Item 5: a Pub/Sub BigQuery subscription (`use_table_schema`, `drop_unknown_fields`) writes each message's JSON
    keys into the columns of the same name. Here the messages are the live codec's own, from real predictions
    (explained, with passthrough fields, one too big for Pub/Sub so that `omitted_fields` appears), written to a
    table of `complaints bigquery-schema --for live` by streaming insert, as the subscription's writes go."""
    from google.cloud.bigquery import Table

    from pipelines.plumbing.codec import encode_prediction
    from worker.config import WorkerConfig
    from worker.local import LocalClassifier
    from worker.transform import PREDICTIONS

    printed = invoke("bigquery-schema", "--for", "live")
    assert printed.exit_code == 0, printed.output
    fields = json.loads(printed.output)
    assert fields == schemas.live_messages()
    emulator.create_table(Table(str(table), schema=schemas.to_api(fields)))

    classifier = LocalClassifier(WorkerConfig(model_dir=model_dir, explain=2, explain_all=True))
    inputs = [{"id": f"m{i}", "text": text, "channel": "web", "note": "n" * (9_900_000 if i == 0 else 3)}
              for i, text in enumerate(["kargom gelmedi iade", "fatura yanlış geldi", "İADE ÜCRET", "telefon bozuk"])]
    answers = classifier.classify(inputs)
    bodies = []
    for i, (kind, record) in enumerate(answers):
        assert kind == PREDICTIONS
        bodies.append(json.loads(encode_prediction({**record, "message_id": f"pubsub-{i}"}).data))
    assert "omitted_fields" in bodies[0] and "note" not in bodies[0]
    own = {f["name"] for f in fields}
    assert {k for body in bodies for k in body} - own == {"channel", "note"}  # the input's extras: dropped

    errors = emulator.insert_rows_json(str(table), bodies, ignore_unknown_values=True,
                                       retry=bigquery.retry().with_deadline(30))
    assert errors == []
    back = rows_by(emulator, table, "message_id")
    assert [r["id"] for r in back] == [b["id"] for b in bodies]
    for row, body in zip(back, bodies, strict=True):
        assert row["label"] == body["label"] and row["needs_review"] == body["needs_review"]
        assert [t["label"] for t in row["top_k"]] == [t["label"] for t in body["top_k"]]
        assert [w["word"] for w in row["explanation"]] == [w["word"] for w in body["explanation"] or []]
        assert list(row["omitted_fields"]) == body.get("omitted_fields", [])


def rows_by(client, ref: TableRef, key: str) -> list[dict]:
    return [dict(r) for r in client.query(f"SELECT * FROM {ref.sql} ORDER BY {key}").result()]


def test_a_template_build_refuses_a_table_it_would_never_load(archive, tmp_path):
    """A template runs later without this command, which is what commits (and loads) a night."""
    one_error(invoke("label", "--model", MODEL["dir"], "--input", archive, "--output", tmp_path / "o",
                     "--bigquery-table", f"{PROJECT}.{DATASET}.labels", "--runner", "DirectRunner",
                     "--template_location", tmp_path / "t.json"), "--bigquery-table", "template")



@pytest.fixture(scope="module")
def raw_table(emulator, archive) -> TableRef:
    """The archive loaded into a BigQuery table, as a team's raw complaints table would be."""
    import glob

    from google.cloud import bigquery as bq

    ref = TableRef(PROJECT, DATASET, "raw_complaints")
    config = bq.LoadJobConfig(source_format=bq.SourceFormat.PARQUET, schema=[
        bq.SchemaField("id", "STRING"), bq.SchemaField("text", "STRING"), bq.SchemaField("store", "STRING")])
    for path in sorted(glob.glob(archive)):
        with open(path, "rb") as f:
            emulator.load_table_from_file(f, str(ref), job_config=config).result()
    return ref


def test_an_archive_read_from_bigquery_is_labelled_as_the_same_rows_in_parquet(emulator, archive, raw_table,
                                                                                table, tmp_path):
    """Item 4: --input bq://, through the Storage Read API (the emulator's gRPC), at one snapshot; the same rows,
    verdicts and books as the Parquet archive they came from."""
    from_parquet, from_table = str(tmp_path / "parquet"), str(tmp_path / "table")
    assert invoke("label", "--model", MODEL["dir"], "--input", archive, "--output", from_parquet, "--no-progress",
                  "--keep-columns", "store").exit_code == 0
    result = label(f"bq://{raw_table}", from_table, table)
    assert result.exit_code == 0, result.output
    ours, theirs = (parquet(o, "predictions-").sort_values("id").reset_index(drop=True)
                    for o in (from_table, from_parquet))
    for column in ("id", "label", "store", "needs_review"):
        assert ours[column].tolist() == theirs[column].tolist(), column
    assert ours["confidence"].tolist() == pytest.approx(theirs["confidence"].tolist(), abs=1e-6)
    summary = json.load(open(os.path.join(from_table, "summary.json")))
    assert summary["rows_in"] == 1200 and summary["balanced"] and summary["dead_lettered"] == 3
    assert summary["inputs"][0]["path"] == f"bq://{raw_table}" and summary["inputs"][0]["rows"] == 1200
    assert len(rows(emulator, table)) == len(ours)  # and into BigQuery again, loaded from the committed files


@pytest.mark.parametrize(("args", "fragments"), [
    (("--keep-columns", "region"), ("no column 'region'",)),
    (("--id-column", "store", "--text-column", "nope"), ("no column 'nope'",)),
    (("--text-column", "id", "--id-column", "missing"), ("no id column 'missing'", "--id-column")),
])
def test_a_bigquery_input_that_does_not_fit_is_one_line_before_any_work(raw_table, tmp_path, args, fragments):
    output = tmp_path / "night"
    one_error(invoke("label", "--model", MODEL["dir"], "--input", f"bq://{raw_table}", "--output", output, *args),
              *fragments)
    assert not output.exists()


def test_a_bigquery_input_that_does_not_exist_is_one_line(emulator, tmp_path):
    one_error(invoke("label", "--model", MODEL["dir"], "--input", f"bq://{PROJECT}.{DATASET}.nosuch", "--output",
                     tmp_path / "o"), "no BigQuery table")


def test_a_table_made_by_hand_with_its_columns_in_another_order_is_taken(emulator, archive, table, tmp_path):
    """Columns are compared by name and every statement names them, so a table created by hand (or migrated
    with `bq update`, which appends) need not follow the record's order. The emulator cannot add a column to
    a table with data (its schema changes in the metadata only), so the order is tested on a new table."""
    from google.cloud.bigquery import Table

    fields = list(reversed(schemas.predictions((pa.field("store", pa.string()),))))
    emulator.create_table(Table(str(table), schema=schemas.to_api(fields)))
    output = str(tmp_path / "night")
    result = label(archive, output, table)
    assert result.exit_code == 0, result.output
    in_table = rows(emulator, table)
    predicted = parquet(output, "predictions-").sort_values("id").reset_index(drop=True)
    assert emulator.get_table(str(table)).schema[0].name == fields[0]["name"] == "labelled_at"
    for column in ("id", "label", "store"):
        assert in_table[column].tolist() == predicted[column].tolist(), column

def test_kept_columns_without_the_preflight_are_one_line_not_dropped(archive, tmp_path):
    """Found with the BigQuery tables: --skip-validation used to leave --keep-columns out of the output silently
    (their types come from the footers it does not read)."""
    output = tmp_path / "night"
    one_error(invoke("label", "--model", MODEL["dir"], "--input", archive, "--output", output, "--keep-columns",
                     "store", "--skip-validation"), "--keep-columns", "--skip-validation")
    assert not output.exists()


def test_a_table_loaded_a_moment_ago_is_read_whole(emulator, tmp_path):
    """The snapshot is a second after the table's last change: one taken at once named a moment before the
    emulator had captured the load ('before the table's first captured state'), which BigQuery refuses too."""
    from google.cloud import bigquery as bq

    from pipelines.nightly.bigquery_reading import open_table

    pq.write_table(pa.table({"id": ["a", "b", "c"], "text": ["x", "y", "z"]}), tmp_path / "t.parquet")
    ref = TableRef(PROJECT, DATASET, "just_loaded")
    with open(tmp_path / "t.parquet", "rb") as f:
        emulator.load_table_from_file(f, str(ref), job_config=bq.LoadJobConfig(
            source_format="PARQUET", schema=[bq.SchemaField("id", "STRING"), bq.SchemaField("text", "STRING")])
        ).result()
    found, session = open_table(f"bq://{ref}", ["text"], "id", "text", False)
    assert found.rows == session.rows == 3 and len(session) >= 1


def test_explanations_arrive_with_their_words(emulator, archive, table, tmp_path):
    """--explain K: the `explanation` column (REPEATED RECORD<word, contribution>) holds what the Parquet holds,
    empty for a row not explained."""
    output = str(tmp_path / "night")
    result = label(archive, output, table, "--explain", "2", "--review-threshold", "0.7")
    assert result.exit_code == 0, result.output
    predicted = parquet(output, "predictions-").sort_values("id").reset_index(drop=True)
    in_table = rows(emulator, table)
    want = [[w["word"] for w in e] if e is not None else [] for e in predicted["explanation"]]
    got = [[w["word"] for w in e] for e in in_table["explanation"]]
    assert got == want and any(want) and not all(want)


def test_every_spelling_of_an_output_is_one_night_in_both_stores(emulator, archive, table, tmp_path, monkeypatch):
    """Issue #51, item 3: `night`, `night/` and `./night` (from its folder) are one output; a rerun under another
    spelling replaces the night's rows instead of adding a second copy, as it replaces the Parquet files."""
    monkeypatch.chdir(tmp_path)
    assert label(archive, str(tmp_path / "night"), table).exit_code == 0
    first = rows(emulator, table)
    for spelling in ("night/", "./night", str(tmp_path / "night") + "//"):
        result = label(archive, spelling, table)
        assert result.exit_code == 0, result.output
        again = rows(emulator, table)
        assert len(again) == len(first) and set(again["output"]) == {str(tmp_path / "night")}
        assert set(again["run_id"]) == {success_run(tmp_path / "night")}


def test_a_nights_swap_reads_and_writes_its_partition_only(emulator, archive, table, tmp_path, monkeypatch):
    """Item 4: the tables are partitioned by `night` and every statement of the swap that reads a night's table
    filters on it, so BigQuery prunes the swap to one partition and a table that requires a partition filter
    takes it. The emulator reports 0 bytes processed for every job and does not enforce the filter requirement,
    so the pruning is checked on the statements themselves; where it does report bytes, they must not grow with
    the nights already in the table."""
    from pipelines.sinks.bigquery_swap import swap_job_id

    scripts, real = [], bigquery.run_job

    def recorded(client, sql, job_id, *args, **kwargs):
        scripts.append(sql)
        return real(client, sql, job_id, *args, **kwargs)

    monkeypatch.setattr(bigquery, "run_job", recorded)
    processed, days = [], [1, 2, 3, 3]  # the last a rerun: its swap replaces rows
    for day in days:
        output = str(tmp_path / f"2026-11-0{day}")
        result = label(archive, output, table, "--night", f"2026-11-0{day}")
        assert result.exit_code == 0, result.output
        if len(processed) == 0:
            made = emulator.get_table(str(table))
            made.require_partition_filter = True
            emulator.update_table(made, ["require_partition_filter"])
        swap = emulator.get_job(swap_job_id(success_run(output), 0))
        processed.append(swap.total_bytes_processed)
        assert swap.labels in ({}, {"written-by": "complaints-label"})  # the emulator may drop job labels
    by_night = rows(emulator, table).groupby("night").size()
    assert len(by_night) == 3 and by_night.nunique() == 1
    committed = [dict(r) for r in emulator.query(f"SELECT * FROM {table.nights.sql} ORDER BY night").result()]
    assert [(str(r["night"]), r["predictions"]) for r in committed] == [
        (f"2026-11-0{d}", int(by_night.iloc[0])) for d in (1, 2, 3)]  # the view of committed nights, one each
    assert committed[-1]["run_id"] == success_run(output)
    if any(processed):
        assert max(processed) < 2 * min(processed), processed
    assert len(scripts) == 4
    reading = 0
    for day, script in zip(days, scripts, strict=True):
        for statement in script.split(";\n"):
            if any(f"FROM {ref.sql}" in statement for ref in (table, table.dead_letters)):
                assert f"`night` = DATE '2026-11-0{day}'" in statement, statement
                reading += 1
    assert reading == 4  # the rerun's: keep and delete the replaced rows, in both tables


def test_a_table_from_before_the_night_column_gains_it_by_a_schema_update(emulator, archive, table, tmp_path):
    """Item 3: tables made by the previous release (no `night`, no `labelled_at`, not partitioned; dead letters
    with their text) are not refused: the two columns are added as NULLABLE (`ALTER TABLE … ADD COLUMN`, as
    BigQuery adds a column to a table with rows), the summary says so, and reruns replace their night."""
    from google.cloud.bigquery import Table

    old = [f for f in schemas.predictions((pa.field("store", pa.string()),))
           if f["name"] not in (schemas.NIGHT, schemas.LABELLED_AT)]
    old_letters = [f for f in schemas.dead_letters(with_text=True) if f["name"] not in (schemas.NIGHT,
                                                                                     schemas.LABELLED_AT)]
    emulator.create_table(Table(str(table), schema=schemas.to_api(old)))
    emulator.create_table(Table(str(table.dead_letters), schema=schemas.to_api(old_letters)))
    output = str(tmp_path / "night")
    notes = []
    for _ in range(2):
        result = label(archive, output, table)
        assert result.exit_code == 0, result.output
        summary = json.load(open(os.path.join(output, "summary.json")))
        notes.append(summary["bigquery"].get("notes", []))
    names = {f.name for f in emulator.get_table(str(table)).schema}
    assert {schemas.NIGHT, schemas.LABELLED_AT} <= names
    assert any("added columns night, labelled_at" in note for note in notes[0]), notes
    assert not any("added" in note for note in notes[1]) and any("not partitioned" in n for n in notes[1])
    assert len(rows(emulator, table)) == summary["predicted"]
    letters = rows(emulator, table.dead_letters)
    assert "payload" in letters and len(letters) == summary["dead_lettered"]  # a table with text keeps it


def test_dead_letters_carry_a_hash_of_their_text_unless_asked(emulator, archive, table, tmp_path):
    """Item 9: by default the warehouse gets the reason, id, night and the payload's SHA-256, never the text."""
    import hashlib

    output = str(tmp_path / "night")
    assert label(archive, output, table).exit_code == 0
    letters = rows(emulator, table.dead_letters)
    assert "payload" not in letters and "payload_sha256" in letters
    files = parquet(output, "dead_letters-").sort_values(["id", "reason"]).reset_index(drop=True)
    assert letters["payload_sha256"].tolist() == [hashlib.sha256(p.encode()).hexdigest() for p in files["payload"]]
    assert {str(n) for n in letters["night"]} == {NIGHT}
    other = str(tmp_path / "with-text")
    assert label(archive, other, TableRef(PROJECT, DATASET, table.table + "_t"),
                 "--bigquery-dead-letter-text").exit_code == 0
    assert "payload" in rows(emulator, TableRef(PROJECT, DATASET, table.table + "_t").dead_letters)


@contextlib.contextmanager
def frozen_warehouse():
    """The emulator stopped (SIGSTOP) as a hung endpoint is: connections open, no answer; resumed after."""
    os.kill(SERVER["process"].pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(SERVER["process"].pid, signal.SIGCONT)


@pytest.mark.parametrize("frozen_at", ["check", "commit", "apply"])
def test_a_warehouse_that_stops_answering_fails_the_night_within_its_deadline(emulator, archive, table, tmp_path,
                                                                              monkeypatch, frozen_at):
    """Item 2 and 5: the endpoint frozen before the pre-flight's check, before the loads, or before the swap:
    the night fails in one `error:` line naming BigQuery within a few of its deadlines (it used to hang for
    good); the files are yesterday's; an unknown swap outcome is never called "as it was" and the journal keeps
    it, so `complaints unlock`, once BigQuery answers, leaves both stores as they were before the night."""
    output = str(tmp_path / "night")
    assert label(archive, output, table).exit_code == 0
    before, run_before = state(emulator, table), success_run(output)
    real, took = getattr(BigQueryTables, frozen_at), {}

    def freezing(self, *args):
        took["frozen"] = time.monotonic()
        os.kill(SERVER["process"].pid, signal.SIGSTOP)
        return real(self, *args)

    monkeypatch.setattr(BigQueryTables, frozen_at, freezing)
    try:
        result = label(archive, output, table, "--bigquery-deadline-secs", "2")
        took["failed"] = time.monotonic()
    finally:
        os.kill(SERVER["process"].pid, signal.SIGCONT)
    monkeypatch.undo()
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "BigQuery" in errors[0] and "Traceback" not in result.output, result.output
    assert took["failed"] - took["frozen"] < 60, took  # a deadline of 2 s: a few calls' worth, never for good
    assert success_run(output) == run_before
    if frozen_at == "apply":
        assert "as it was" not in errors[0] and "complaints unlock" in errors[0], errors[0]
    settled = invoke("unlock", "--output", output)
    assert settled.exit_code == 0, settled.output
    assert state(emulator, table) == before and success_run(output) == run_before
    assert [n for n in os.listdir(output) if n.startswith(".")] == []
    assert label(archive, output, table).exit_code == 0  # and the next night goes through


def test_a_busy_warehouse_keeps_the_labelled_night_for_complaints_commit(emulator, archive, table, tmp_path,
                                                                          monkeypatch, retrained_model_dir):
    """Item 7: the swap aborted for concurrent transactions on the table past --bigquery-busy-wait-secs. Which
    transaction BigQuery aborts is its choice, so the abort is injected here: the job BigQuery answers with
    BigQuery's own conflict message. Both stores stay yesterday's, the error line gives `complaints commit`,
    and that command commits the night as labelled (no labelling again) once the table is free, its challenger's
    verdicts (`--shadow`) with it."""
    output = str(tmp_path / "night")
    assert label(archive, output, table).exit_code == 0
    before, run_before = state(emulator, table), success_run(output)
    real, tries = bigquery.run_job, []

    def busy(client, sql, job_id, *args, **kwargs):
        if job_id.startswith("complaints_swap_"):
            tries.append(job_id)
            raise bigquery.JobError(job_id, "Transaction is aborted due to concurrent update against table "
                                    f"{table}")
        return real(client, sql, job_id, *args, **kwargs)

    monkeypatch.setattr(bigquery, "run_job", busy)
    result = label(archive, output, table, "--bigquery-busy-wait-secs", "1", "--shadow", retrained_model_dir)
    assert result.exit_code == 2 and len(tries) >= 2, result.output  # waited its turn, with jitter
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"complaints commit --output {output}" in errors[0], result.output
    assert state(emulator, table) == before and success_run(output) == run_before
    kept = [n for n in os.listdir(output) if n.startswith(".staging-")]
    assert len(kept) == 1 and os.path.exists(os.path.join(output, kept[0], "_PENDING.json"))
    labelled = sorted(n for n in os.listdir(os.path.join(output, kept[0])) if n.startswith("predictions-"))

    monkeypatch.undo()
    assert invoke("unlock", "--output", output).exit_code == 0  # a start or an unlock leaves it alone
    assert os.path.isdir(os.path.join(output, kept[0]))
    committed = invoke("commit", "--output", output)
    assert committed.exit_code == 0, committed.output
    run_id = kept[0].removeprefix(".staging-")
    assert success_run(output) == run_id and sorted(n for n in os.listdir(output) if n.startswith(
        "predictions-")) == labelled
    assert set(rows(emulator, table)["run_id"]) == {run_id}
    shadow = parquet(output, "shadow-")  # the kept night's challenger rows, committed with it in both stores
    assert len(shadow) == json.load(open(os.path.join(output, "summary.json")))["shadow"]["rows"] > 0
    assert set(rows(emulator, table.shadow)["run_id"]) == {run_id} and len(rows(emulator, table.shadow)) == len(shadow)
    assert [n for n in os.listdir(output) if n.startswith(".")] == []
    one_error(invoke("commit", "--output", output), "no night waiting")


def test_two_nights_committing_into_one_table_at_once_both_land(emulator, archive, table, tmp_path):
    """Item 7 with real concurrency: a backfill of two nights into one table, two processes started together;
    whichever swap BigQuery aborts waits its turn, and both nights land whole (before, one of them was thrown
    away after about 7 s of retries)."""
    nights = {day: str(tmp_path / f"2026-11-1{day}") for day in (1, 2)}
    runs = [subprocess.Popen(
        [sys.executable, "-m", "pipelines", "label", "--model", MODEL["dir"], "--input", archive, "--output",
         output, "--no-progress", "--keep-columns", "store", "--bigquery-table", str(table)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ) for output in nights.values()]
    for run in runs:
        printed = run.communicate(timeout=600)[0]
        assert run.returncode == 0, printed[-3000:]
    in_table = rows(emulator, table)
    assert in_table.groupby("night").size().to_dict() == {
        pd.Timestamp(f"2026-11-1{day}").date(): len(parquet(output, "predictions-")) for day, output in nights.items()}


def test_the_undo_of_a_run_that_lost_the_night_touches_no_other_runs_rows(emulator, archive, table, tmp_path):
    """Item 6: run A is killed between its swap and its `_SUCCESS`; before anyone settles A (as if A were still
    alive after a forced unlock), run B commits the night and replaces A's rows. A's undo, settled late, and
    even its undo statements run directly (the fence is inside the transaction), leave B's night as it is."""
    from pipelines.plumbing import journal
    from pipelines.sinks.bigquery_swap import Settler, undo_script

    output = str(tmp_path / "night")
    assert label(archive, output, table).exit_code == 0
    _killed_after_swap(archive, output, table)
    [path] = journal.found_in(output)
    record = next(r for r in journal.Journal.load(path).externals if r["kind"] == "bigquery")
    os.rename(path, str(tmp_path / "a-journal.json"))  # A "alive": B does not settle it
    b = label(archive, output, table)
    assert b.exit_code == 0, b.output
    theirs = state(emulator, table)
    assert set(rows(emulator, table)["run_id"]) == {success_run(output)} != {record["run_id"]}
    bigquery.run_job(emulator, undo_script(emulator, record), f"test_undo_{record['run_id']}", 60)
    assert state(emulator, table) == theirs
    Settler().back(record)
    assert state(emulator, table) == theirs


def test_work_tables_go_to_the_scratch_dataset(emulator, archive, table, tmp_path, monkeypatch):
    """Item 9: --bigquery-scratch-dataset takes the run's load and undo tables out of the analysts' dataset (here
    the drop is held back to look at them). They are created with a 7-day expiry, which the emulator does not
    keep: BigQuery drops them by itself when no one does."""
    from pipelines.sinks.bigquery_swap import Settler

    emulator.create_dataset(f"{PROJECT}.scratch", exists_ok=True)
    monkeypatch.setattr(Settler, "forward", lambda self, record: None)
    result = label(archive, str(tmp_path / "night"), table, "--bigquery-scratch-dataset", "scratch")
    assert result.exit_code == 0, result.output
    work = [t.table_id for t in emulator.list_tables(f"{PROJECT}.scratch") if t.table_id.startswith(table.table)]
    assert len(work) == 4 and {"load", "undo"} == {w.split("__")[1].split("_")[0] for w in work}
    assert not [t.table_id for t in emulator.list_tables(f"{PROJECT}.{DATASET}")
                if t.table_id.startswith(table.table + "_") and "__" in t.table_id]


def test_an_all_null_kept_column_takes_the_tables_type(emulator, table, tmp_path):
    """Item 9: a night whose kept column holds only nulls, written with no type (pandas' all-None column), after
    nights that gave the column INT64: it takes the table's type and lands as NULLs (it was typed STRING, which
    refused the night). A first night of such a column can only guess: STRING (docs/bigquery.md)."""
    nights = {}
    for day, values in (("2026-11-01", pa.array(range(40), pa.int64())), ("2026-11-02", pa.nulls(40))):
        folder = tmp_path / day
        folder.mkdir()
        pq.write_table(pa.table({"id": [f"{day}-{i}" for i in range(40)], "text": ["kargo gelmedi iade"] * 40,
                                 "branch": values}), folder / "part-0.parquet")
        nights[day] = str(tmp_path / "out" / day)
        result = invoke("label", "--model", MODEL["dir"], "--input", folder / "*.parquet", "--output", nights[day],
                        "--no-progress", "--keep-columns", "branch", "--bigquery-table", str(table))
        assert result.exit_code == 0, result.output
    assert schemas.of_table(emulator.get_table(str(table)).schema)[-5]["type"] == "INT64"
    in_table = rows(emulator, table)
    by_night = {str(n): group["branch"].tolist() for n, group in in_table.groupby("night")}
    assert sorted(by_night["2026-11-01"]) == list(range(40))
    assert all(v is None or v != v for v in by_night["2026-11-02"])


def test_a_challengers_night_lands_in_the_shadow_table_and_a_rerun_without_one_takes_it_out(
        emulator, archive, table, tmp_path, retrained_model_dir):
    output = str(tmp_path / "night")
    result = label(archive, output, table, "--shadow", retrained_model_dir)
    assert result.exit_code == 0, result.output
    summary, run_id = json.load(open(os.path.join(output, "summary.json"))), success_run(output)
    shadow = parquet(output, "shadow-").sort_values("id").reset_index(drop=True)
    in_shadow = rows(emulator, table.shadow)
    assert summary["bigquery"]["shadow_table"] == str(table.shadow)
    assert len(in_shadow) == len(shadow) == summary["bigquery"]["shadow_rows"] == summary["shadow"]["rows"] > 0
    assert in_shadow["id"].tolist() == shadow["id"].tolist() and in_shadow["label"].tolist() == shadow["label"].tolist()
    assert set(in_shadow["run_id"]) == {run_id} and set(in_shadow["model_version"]) == set(shadow["model_version"])
    assert set(rows(emulator, table)["model_version"]).isdisjoint(in_shadow["model_version"])  # never mixed in

    again = label(archive, output, table)
    assert again.exit_code == 0, again.output
    assert rows(emulator, table.shadow).empty  # the replaced run's challenger rows went with it
    assert len(rows(emulator, table)) == len(parquet(output, "predictions-"))
