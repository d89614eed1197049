"""The review loop (issue #43, items 2-4): a night's uncertain rows out, reviewers' corrections back.

The files alone here; the round trip through a real Label Studio (its own environment,
loopback, offline) at the end.
"""

from __future__ import annotations

import csv
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model import artifact
from model.data import load_labelled
from pipelines.app import uploads
from pipelines.app.files import write_frame
from tests.archives import write_archive
from tests.commands import invoke, one_error

SCRIPTS = ["Kargom gelmedi 📦 iade", "الشحنة لم تصل بعد", "配送が遅れています", "Доставка не пришла", "ΙΑΔΕ ΧΡΗΜΑΤΩΝ"]


def _night(folder, model_dir, with_id: bool = True) -> tuple[str, pd.DataFrame]:
    rows = write_archive(folder / "in", rows=900, files=2, with_id=with_id)
    extra = pd.DataFrame({"id": [f"script-{i}" for i in range(len(SCRIPTS))], "text": SCRIPTS,
                          "store": "store-x"})
    if with_id:
        write_frame(extra, str(folder / "in" / "scripts.parquet"))
    result = invoke("label", "--model", model_dir, "--input", folder / "in" / "*.parquet", "--output",
                    folder / "out", "--no-progress", "--review-threshold", "0.7", "--explain", "2")
    assert result.exit_code == 0, result.output
    return str(folder / "out"), pd.DataFrame(rows)


@pytest.fixture(scope="module")
def night(tmp_path_factory, model_dir):
    return _night(tmp_path_factory.mktemp("night"), model_dir)


def _predictions(output: str) -> pd.DataFrame:
    return pd.concat(pd.read_parquet(os.path.join(output, n)) for n in os.listdir(output)
                     if n.startswith("predictions-"))


def _texts(folder) -> dict[str, str]:
    frame = pd.concat(pd.read_parquet(folder / "in" / n) for n in os.listdir(folder / "in"))
    return dict(zip(frame["id"].astype(str), frame["text"], strict=True))


def test_export_writes_label_studio_tasks_with_their_text_and_the_config(night, model_dir, tmp_path):
    output, _ = night
    to = tmp_path / "review.json"
    result = invoke("review", "export", "--output", output, "--to", to, "--model", model_dir)
    assert result.exit_code == 0, result.output
    tasks = json.load(open(to, encoding="utf-8"))
    predictions = _predictions(output).set_index("id")
    needs_review = predictions[predictions["needs_review"]]
    assert len(tasks) == len(needs_review) > 10
    texts = _texts(Path(output).parent)
    for t in tasks:
        row = predictions.loc[t["data"]["complaint_id"]]
        assert t["data"]["text"] == texts[t["data"]["complaint_id"]]  # joined back from the archive by id
        assert t["predictions"][0]["result"][0]["value"]["choices"] == [row["label"]]
        assert t["predictions"][0]["score"] == pytest.approx(row["confidence"], abs=1e-4)
        assert t["data"]["top_k"].startswith(row["label"])
        assert t["data"]["explanation"] == ", ".join(f"{e['word']} +{e['contribution']:.2f}"
                                                     for e in row["explanation"])
    config = ET.parse(str(to) + ".label_config.xml").getroot()
    labels = artifact.read_metadata(model_dir)[0]
    assert [c.get("value") for c in config.iter("Choice")] == labels
    assert {c.get("name") for c in config.iter("Choices")} == {"category"}


def test_export_chooses_by_label_all_or_a_seeded_sample_and_writes_csv(night, model_dir, tmp_path):
    output, _ = night
    predictions = _predictions(output)

    def ids(*flags, to="r.json") -> list[str]:
        result = invoke("review", "export", "--output", output, "--to", tmp_path / to, "--model", model_dir, *flags)
        assert result.exit_code == 0, result.output
        if to.endswith(".csv"):
            with open(tmp_path / to, encoding="utf-8") as f:
                return [r["id"] for r in csv.DictReader(f)]
        return [t["data"]["complaint_id"] for t in json.load(open(tmp_path / to, encoding="utf-8"))]

    assert len(ids("--all")) == len(predictions)
    label = predictions["label"].mode()[0]
    assert set(ids("--all", "--label", label)) == set(predictions[predictions["label"] == label]["id"])
    first, again, other = ids("--all", "--limit", 25, "--seed", 1), ids("--all", "--limit", 25, "--seed", 1), \
        ids("--all", "--limit", 25, "--seed", 2)
    assert len(first) == 25 and first == again and first != other
    assert set(ids(to="r.csv")) == set(predictions[predictions["needs_review"]]["id"])
    with open(tmp_path / "r.csv", encoding="utf-8") as f:
        assert next(csv.reader(f)) == ["id", "text", "label", "confidence", "top_k", "explanation", "night", "category"]


def test_export_joins_derived_ids_back_to_their_rows(model_dir, tmp_path):
    output, _ = _night(tmp_path, model_dir, with_id=False)
    result = invoke("review", "export", "--output", output, "--to", tmp_path / "r.json", "--model", model_dir,
                    "--all")
    assert result.exit_code == 0, result.output
    tasks = json.load(open(tmp_path / "r.json", encoding="utf-8"))
    assert len(tasks) == len(_predictions(output))
    for t in tasks[:50]:
        path, row = t["data"]["complaint_id"].rsplit(":", 1)  # the file's full path:ROW (unique across nights)
        assert os.path.dirname(path) == str(tmp_path / "in")
        part = pd.read_parquet(path)
        assert part["text"].iloc[int(row)] == t["data"]["text"]


def test_export_refuses_a_night_that_is_not_committed_or_another_model(night, model_dir, retrained_model_dir,
                                                                      tmp_path):
    output, _ = night
    one_error(invoke("review", "export", "--output", tmp_path, "--to", tmp_path / "r.json", "--model", model_dir),
              "no _SUCCESS")
    one_error(invoke("review", "export", "--output", output, "--to", tmp_path / "r.json", "--model",
                     retrained_model_dir), "was labelled by model")
    one_error(invoke("review", "export", "--output", output, "--to", tmp_path / "r.txt", "--model", model_dir),
              ".json", ".csv")


def _exported_with_answers(tasks: list[dict], answers: dict[int, list[dict]]) -> list[dict]:
    """Label Studio's JSON export of `tasks`, task n carrying `answers[n]` as its annotations."""
    return [{"id": n + 1, "data": t["data"], "predictions": t["predictions"],
             "annotations": answers.get(n, [])} for n, t in enumerate(tasks)]


def _answer(category: str, at: str, cancelled: bool = False) -> dict:
    return {"id": hash((category, at)) % 10_000, "was_cancelled": cancelled, "updated_at": at,
            "result": [] if cancelled else [{"from_name": "category", "to_name": "text", "type": "choices",
                                              "value": {"choices": [category]}}]}


def test_import_reads_label_studio_answers_the_latest_wins_and_what_was_left_out_is_counted(
        night, model_dir, tmp_path):
    output, _ = night
    invoke("review", "export", "--output", output, "--to", tmp_path / "r.json", "--model", model_dir)
    tasks = json.load(open(tmp_path / "r.json", encoding="utf-8"))
    labels = artifact.read_metadata(model_dir)[0]
    answers = {0: [_answer(labels[1], "2026-12-01T10:00:00Z"), _answer(labels[2], "2026-12-01T11:00:00Z")],
               1: [_answer(labels[3], "2026-12-01T10:00:00Z", cancelled=True)],
               2: [_answer(labels[4], "2026-12-01T09:00:00Z")]}
    (tmp_path / "export.json").write_text(json.dumps(_exported_with_answers(tasks, answers)), encoding="utf-8")
    result = invoke("review", "import", "--from", tmp_path / "export.json", "--out", tmp_path / "c.parquet",
                    "--model", model_dir)
    assert result.exit_code == 0, result.output
    assert "left out: not annotated" in result.output and "skipped 1" in result.output
    corrections = pq.read_table(tmp_path / "c.parquet").to_pandas().set_index("id")
    assert list(pq.read_schema(tmp_path / "c.parquet").names) == ["id", "text", "category", "corrected_at", "night"]
    assert set(pq.read_table(tmp_path / "c.parquet").column("night").to_pylist()) == {output}
    assert corrections.loc[tasks[0]["data"]["complaint_id"], "category"] == labels[2]  # the later answer
    assert corrections.loc[tasks[2]["data"]["complaint_id"], "category"] == labels[4]
    assert tasks[1]["data"]["complaint_id"] not in corrections.index  # cancelled: skipped
    assert corrections.loc[tasks[0]["data"]["complaint_id"], "text"] == tasks[0]["data"]["text"]
    # corrected again later, in another import: the later one wins, the file keeps one row per id
    again = {0: [_answer(labels[5], "2026-12-02T08:00:00Z")]}
    (tmp_path / "again.json").write_text(json.dumps(_exported_with_answers(tasks, again)), encoding="utf-8")
    second = invoke("review", "import", "--from", tmp_path / "again.json", "--out", tmp_path / "c.parquet",
                    "--model", model_dir)
    assert "1 replaced an earlier one" in second.output
    corrections = pq.read_table(tmp_path / "c.parquet").to_pandas().set_index("id")
    assert len(corrections) == 2 and corrections.loc[tasks[0]["data"]["complaint_id"], "category"] == labels[5]


def test_an_unknown_or_renamed_category_is_named_never_dropped(night, model_dir, tmp_path):
    output, _ = night
    invoke("review", "export", "--output", output, "--to", tmp_path / "r.json", "--model", model_dir)
    tasks = json.load(open(tmp_path / "r.json", encoding="utf-8"))
    labels = artifact.read_metadata(model_dir)[0]
    answers = {0: [_answer("Kargo (yeni ad)", "2026-12-01T10:00:00Z")], 1: [_answer("Nowhere", "2026-12-01T10:00Z")],
               2: [_answer(labels[0], "2026-12-01T10:00:00Z")]}
    (tmp_path / "e.json").write_text(json.dumps(_exported_with_answers(tasks, answers)), encoding="utf-8")
    refused = invoke("review", "import", "--from", tmp_path / "e.json", "--out", tmp_path / "c.parquet", "--model",
                     model_dir)
    one_error(refused, "2 answer(s)", "--rename")
    assert refused.output.count("unknown category:") == 2 and "'Nowhere'" in refused.output
    assert not (tmp_path / "c.parquet").exists()
    renamed = invoke("review", "import", "--from", tmp_path / "e.json", "--out", tmp_path / "c.parquet",
                     "--model", model_dir, "--rename", f"Kargo (yeni ad)={labels[7]}", "--skip-unknown")
    assert renamed.exit_code == 0 and "unknown categories skipped: 1" in renamed.output
    corrections = pq.read_table(tmp_path / "c.parquet").to_pandas().set_index("id")
    assert corrections.loc[tasks[0]["data"]["complaint_id"], "category"] == labels[7]
    assert len(corrections) == 2


def test_csv_answers_in_any_script_come_back_as_written(model_dir, tmp_path):
    labels = artifact.read_metadata(model_dir)[0]
    with open(tmp_path / "a.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text", "label", "confidence", "top_k", "explanation", "category"])
        for i, text in enumerate(SCRIPTS):
            writer.writerow([f"s{i}", text, labels[0], "0.4", "", "", labels[i] if i != 2 else ""])
        writer.writerow(["s0", SCRIPTS[0], labels[0], "0.4", "", "", labels[9]])  # the same complaint, again
    result = invoke("review", "import", "--from", tmp_path / "a.csv", "--out", tmp_path / "c.parquet", "--model",
                    model_dir)
    assert result.exit_code == 0, result.output
    corrections = pq.read_table(tmp_path / "c.parquet").to_pandas().set_index("id")
    assert set(corrections.index) == {"s0", "s1", "s3", "s4"} and corrections.loc["s0", "category"] == labels[9]
    assert [corrections.loc[f"s{i}", "text"] for i in (1, 3, 4)] == [SCRIPTS[1], SCRIPTS[3], SCRIPTS[4]]
    (tmp_path / "bad.csv").write_text("id,category\nx,y\n", encoding="utf-8")
    one_error(invoke("review", "import", "--from", tmp_path / "bad.csv", "--out", tmp_path / "c2.parquet",
                     "--model", model_dir), "['text'] missing")


def test_an_id_two_nights_share_is_refused_by_import_and_by_training(night, model_dir, tmp_path):
    """Issue #51, item 8: the same id from two nights names two complaints (a source system that reuses ids);
    `review import` and `train --corrections` refuse it in one line instead of keeping one of them."""
    output, _ = night
    invoke("review", "export", "--output", output, "--to", tmp_path / "r.json", "--model", model_dir)
    tasks = json.load(open(tmp_path / "r.json", encoding="utf-8"))
    labels = artifact.read_metadata(model_dir)[0]
    assert {t["data"]["night"] for t in tasks} == {output}
    first = _exported_with_answers(tasks[:1], {0: [_answer(labels[1], "2026-12-01T10:00:00Z")]})
    (tmp_path / "a.json").write_text(json.dumps(first), encoding="utf-8")
    assert invoke("review", "import", "--from", tmp_path / "a.json", "--out", tmp_path / "c.parquet", "--model",
                  model_dir).exit_code == 0
    other = [{**t, "data": {**t["data"], "night": output + "-next", "text": "another complaint"}} for t in first]
    (tmp_path / "b.json").write_text(json.dumps(other), encoding="utf-8")
    before = (tmp_path / "c.parquet").read_bytes()
    one_error(invoke("review", "import", "--from", tmp_path / "b.json", "--out", tmp_path / "c.parquet", "--model",
                     model_dir), "more than one night", tasks[0]["data"]["complaint_id"])
    assert (tmp_path / "c.parquet").read_bytes() == before  # nothing written

    write_frame(pd.DataFrame({"id": ["a"], "text": ["kargo gelmedi"], "category": ["Kargo"]}),
                str(tmp_path / "d.parquet"))
    write_frame(pd.DataFrame({"id": ["a", "a"], "text": ["kargo gelmedi", "otel kirli"],
                              "category": ["Kargo", "Otel"], "corrected_at": ["t1", "t2"],
                              "night": ["/n/2026-11-27", "/n/2026-11-28"]}), str(tmp_path / "both.parquet"))
    one_error(invoke("train", "--data", tmp_path / "d.parquet", "--corrections", tmp_path / "both.parquet",
                     "--out", tmp_path / "m"), "more than one night", "'a'")


def test_training_takes_corrections_beside_its_data(tmp_path):
    data = pd.DataFrame({"id": ["a", "b", "c"], "text": ["kargo gelmedi", "fatura yüksek", "otel kirli"],
                         "category": ["Kargo", "Fatura", "Otel"]})
    write_frame(data, str(tmp_path / "d.parquet"))
    write_frame(pd.DataFrame({"id": ["b", "z"], "text": ["fatura yüksek", "yeni şikayet"],
                              "category": ["Telekom", "Kargo"], "corrected_at": ["t1", "t1"]}),
                str(tmp_path / "c1.parquet"))
    write_frame(pd.DataFrame({"id": ["b"], "text": ["fatura yüksek"], "category": ["Banka"],
                              "corrected_at": ["t2"]}), str(tmp_path / "c2.parquet"))
    labelled = load_labelled(str(tmp_path / "d.parquet"), corrections=str(tmp_path / "c*.parquet"))
    assert dict(zip(labelled.texts, labelled.labels, strict=True)) == {
        "kargo gelmedi": "Kargo", "fatura yüksek": "Banka", "otel kirli": "Otel", "yeni şikayet": "Kargo"}
    assert labelled.corrected["replaced"] == 1 and labelled.corrected["added"] == 1


@pytest.mark.slow  # a real Label Studio (its environment is built on first use, then cached)
def test_the_round_trip_through_a_real_label_studio(night, model_dir, tmp_path):
    from tests.label_studio_server import LabelStudio

    output, _ = night
    invoke("review", "export", "--output", output, "--to", tmp_path / "r.json", "--model", model_dir,
           "--limit", 12, "--seed", 3)
    tasks = json.load(open(tmp_path / "r.json", encoding="utf-8"))
    labels = artifact.read_metadata(model_dir)[0]
    with LabelStudio(tmp_path) as studio:
        config = (tmp_path / "r.json.label_config.xml").read_text(encoding="utf-8")
        project = studio.api("POST", "/api/projects", {"title": "complaints review", "label_config": config})
        imported = studio.api("POST", f"/api/projects/{project['id']}/import", tasks)
        assert imported["task_count"] == 12 and imported["prediction_count"] == 12
        listed = studio.api("GET", f"/api/tasks?project={project['id']}&page_size=100")["tasks"]
        by_complaint = {t["data"]["complaint_id"]: t["id"] for t in listed}
        chosen = {}
        for n, task in enumerate(tasks[:8]):
            category = labels[n % len(labels)]
            result = [{"from_name": "category", "to_name": "text", "type": "choices",
                       "value": {"choices": [category]}}]
            studio.api("POST", f"/api/tasks/{by_complaint[task['data']['complaint_id']]}/annotations",
                       {"result": result})
            chosen[task["data"]["complaint_id"]] = category
        skipped = tasks[8]["data"]["complaint_id"]
        studio.api("POST", f"/api/tasks/{by_complaint[skipped]}/annotations", {"result": [], "was_cancelled": True})
        exported = studio.api("GET", f"/api/projects/{project['id']}/export?exportType=JSON&download_all_tasks=true")
    (tmp_path / "export.json").write_text(json.dumps(exported), encoding="utf-8")
    result = invoke("review", "import", "--from", tmp_path / "export.json", "--out", tmp_path / "c.parquet",
                    "--model", model_dir)
    assert result.exit_code == 0, result.output
    assert "not annotated 3" in result.output and "skipped 1" in result.output
    corrections = pq.read_table(tmp_path / "c.parquet").to_pandas().set_index("id")
    assert corrections["category"].to_dict() == chosen
    texts = {t["data"]["complaint_id"]: t["data"]["text"] for t in tasks}
    assert all(corrections.loc[i, "text"] == texts[i] for i in chosen)


# Malformed exports, of every shape (issue #54, item 4) ------------------------------------------------------------

_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                  max_size=3), max_leaves=8)


def _paths(value, path=()):
    """Every place in a JSON value, as a tuple of keys and indices."""
    yield path
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _paths(inner, (*path, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _paths(inner, (*path, index))


def _replaced(value, path, new):
    if not path:
        return new
    copy = list(value) if isinstance(value, list) else dict(value)
    copy[path[0]] = _replaced(value[path[0]], path[1:], new)
    return copy


@pytest.fixture(scope="module")
def answered(night, model_dir, tmp_path_factory) -> list[dict]:
    """A real export's first tasks, each with an answer: the shape Label Studio writes."""
    folder = tmp_path_factory.mktemp("answered")
    output, _ = night
    invoke("review", "export", "--output", output, "--to", folder / "r.json", "--model", model_dir)
    tasks = json.load(open(folder / "r.json", encoding="utf-8"))[:3]
    labels = artifact.read_metadata(model_dir)[0]
    return _exported_with_answers(tasks, {n: [_answer(labels[n + 1], f"2026-12-0{n + 1}T10:00:00Z")]
                                          for n in range(3)})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_malformed_export_is_one_error_line_and_writes_nothing(answered, model_dir, tmp_path, data):
    """A valid export with one part, at any depth, replaced by any JSON value; or cut short; or bytes that are
    not text; or one task per line (JSONL). Either it is still an export the import reads, or the import
    answers in one `error:` line, with no traceback, and the corrections file is as it was."""
    kind = data.draw(st.sampled_from(["replaced", "truncated", "binary", "jsonl"]))
    text = json.dumps(answered)
    if kind == "replaced":
        path = data.draw(st.sampled_from(list(_paths(answered))))
        body = json.dumps(_replaced(answered, path, data.draw(_JSON))).encode()
    elif kind == "truncated":
        body = text[: data.draw(st.integers(0, len(text) - 1))].encode()
    elif kind == "binary":
        body = data.draw(st.binary(min_size=1, max_size=64)).join([b"\xff\xfe", b"\x00"])
    else:
        body = "\n".join(json.dumps(task) for task in answered).encode()
    source, target = tmp_path / "export.json", tmp_path / "c.parquet"
    source.write_text(json.dumps(answered[:1]), encoding="utf-8")
    assert invoke("review", "import", "--from", source, "--out", target, "--model", model_dir).exit_code == 0
    before = target.read_bytes()
    source.write_bytes(body)
    result = invoke("review", "import", "--from", source, "--out", target, "--model", model_dir, "--skip-unknown")
    assert "Traceback" not in result.output, result.output
    if result.exit_code == 2:
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, result.output
        assert target.read_bytes() == before
    else:
        assert result.exit_code == 0, result.output


def test_csv_export_is_spreadsheet_safe_and_comes_back_as_written(model_dir, tmp_path):
    """Item 5: customer text that a spreadsheet would run as a formula is defused in the CSV (a leading
    apostrophe), and the import gives every text back exactly, apostrophes of its own included."""
    leads = ['=HYPERLINK("http://x")', "+90 532", "-iade", "@SUM(A1)", "\tsekme", "\rsatır", "'=kendi", "normal"]
    labels = artifact.read_metadata(model_dir)[0]
    with open(tmp_path / "a.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text", "label", "confidence", "top_k", "explanation", "night", "category"])
        for i, text in enumerate(leads):
            writer.writerow([uploads.defused(f"-{i}"), uploads.defused(text), labels[0], "0.4", "", "", "",
                             labels[1]])
    cells = list(csv.reader(open(tmp_path / "a.csv", encoding="utf-8", newline="")))[1:]
    assert all(not c[1].startswith(uploads.FORMULA_LEADS) for c in cells)  # nothing a spreadsheet would run
    result = invoke("review", "import", "--from", tmp_path / "a.csv", "--out", tmp_path / "c.parquet", "--model",
                    model_dir)
    assert result.exit_code == 0, result.output
    back = pq.read_table(tmp_path / "c.parquet").to_pandas().set_index("id")
    assert [back.loc[f"-{i}", "text"] for i in range(len(leads))] == leads


def test_label_studios_own_csv_export_is_refused_in_one_line(model_dir, tmp_path):
    """Its `id` is the task's, not the complaint's: corrections keyed by it would correct the wrong rows."""
    (tmp_path / "ls.csv").write_text("id,annotation_id,annotator,complaint_id,text,category\n"
                                     "17,3,1,c-9,kargo gelmedi,Kargo\n", encoding="utf-8")
    one_error(invoke("review", "import", "--from", tmp_path / "ls.csv", "--out", tmp_path / "c.parquet",
                     "--model", model_dir), "Label Studio's own CSV export")
    assert not (tmp_path / "c.parquet").exists()
