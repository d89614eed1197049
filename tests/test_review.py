"""The review loop (issue #43, items 2-4): a night's uncertain rows out, reviewers' corrections back.

The files alone here; the round trip through a real Label Studio (its own environment,
loopback, offline) at the end.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model import artifact, review_figures
from model.corrections import ANSWERS_SCHEMA, resolved
from model.data import load_labelled, read_answers
from pipelines.app import label_studio, uploads
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
        assert next(csv.reader(f)) == ["id", "text", "label", "confidence", "model_version", "top_k", "explanation",
                                       "night", "category", "annotator"]


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


def _decided(path) -> pd.DataFrame:
    """The corrections file as training reads it: one decided row per complaint."""
    return resolved(read_answers(str(path))).set_index("id")


def _answer(category: str, at: str, cancelled: bool = False, by: int | None = None, truth: bool = False) -> dict:
    return {"id": hash((category, at)) % 10_000, "was_cancelled": cancelled, "updated_at": at, "completed_by": by,
            "ground_truth": truth,
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
    corrections = _decided(tmp_path / "c.parquet")
    assert pq.read_schema(tmp_path / "c.parquet") == ANSWERS_SCHEMA
    assert set(pq.read_table(tmp_path / "c.parquet").column("night").to_pylist()) == {output}
    kept_beside = corrections.loc[tasks[0]["data"]["complaint_id"]]  # what the model said, beside the answer
    assert (kept_beside["model_label"], kept_beside["model_version"]) == (tasks[0]["data"]["model_label"],
                                                                         tasks[0]["data"]["model_version"])
    assert corrections.loc[tasks[0]["data"]["complaint_id"], "category"] == labels[2]  # the later answer
    assert corrections.loc[tasks[2]["data"]["complaint_id"], "category"] == labels[4]
    assert tasks[1]["data"]["complaint_id"] not in corrections.index  # cancelled: skipped
    assert corrections.loc[tasks[0]["data"]["complaint_id"], "text"] == tasks[0]["data"]["text"]
    # corrected again later, in another import: the later one wins, the file keeps one row per id
    again = {0: [_answer(labels[5], "2026-12-02T08:00:00Z")]}
    (tmp_path / "again.json").write_text(json.dumps(_exported_with_answers(tasks, again)), encoding="utf-8")
    second = invoke("review", "import", "--from", tmp_path / "again.json", "--out", tmp_path / "c.parquet",
                    "--model", model_dir)
    assert "1 replaced an earlier answer" in second.output
    corrections = _decided(tmp_path / "c.parquet")
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


def test_several_annotators_the_majority_a_leads_ground_truth_and_ties_are_decided_and_reported(
        night, model_dir, tmp_path):
    """Item 1 and 2: three annotators; the majority decides, a ground_truth answer overrules it, a tie goes to the
    newest answer and is listed; a cancelled answer never counts. The report's rates are the decided rows' own."""
    output, _ = night
    invoke("review", "export", "--output", output, "--to", tmp_path / "r.json", "--model", model_dir)
    tasks = json.load(open(tmp_path / "r.json", encoding="utf-8"))[:5]
    labels = artifact.read_metadata(model_dir)[0]
    said = [t["data"]["model_label"] for t in tasks]
    x, y = (lambda n: labels[(labels.index(said[n]) + 1) % len(labels)]), (lambda n: said[n])
    answers = {0: [_answer(x(0), "2026-12-01T10:00:00Z", by=1), _answer(x(0), "2026-12-01T10:05:00Z", by=2),
                   _answer(y(0), "2026-12-01T10:10:00Z", by=3)],
               1: [_answer(x(1), "2026-12-01T10:00:00Z", by=1), _answer(y(1), "2026-12-01T11:00:00+01:00", by=2),
                   _answer(y(1), "2026-12-01T09:30:00Z", by=3, cancelled=True)],
               2: [_answer(x(2), "2026-12-01T10:00:00Z", by=1), _answer(x(2), "2026-12-01T10:01:00Z", by=2),
                   _answer(y(2), "2026-12-01T09:00:00Z", by=3, truth=True)],
               3: [_answer(x(3), "2026-12-01T10:00:00Z", by=1), _answer(y(3), "2026-12-01T10:00:00Z", by=2,
                                                                       cancelled=True)],
               4: [_answer(y(4), "2026-12-01T10:00:00Z", by=1), _answer(y(4), "2026-12-01T10:02:00Z", by=2)]}
    (tmp_path / "e.json").write_text(json.dumps(_exported_with_answers(tasks, answers)), encoding="utf-8")
    result = invoke("review", "import", "--from", tmp_path / "e.json", "--out", tmp_path / "c.parquet", "--model",
                    model_dir)
    assert result.exit_code == 0, result.output
    assert "11 answer(s)" in result.output and "reviewers disagree on 3 (1 tie(s))" in result.output
    decided = _decided(tmp_path / "c.parquet")
    ids = [t["data"]["complaint_id"] for t in tasks]
    assert [decided.loc[i, "category"] for i in ids] == [x(0), y(1), y(2), x(3), y(4)]
    # task 1's answers: 10:00Z and 11:00+01:00 (= 10:00Z) are one instant; the one given later stands in a tie
    assert [decided.loc[i, "decided_by"] for i in ids] == ["majority", "tie", "ground truth", "one annotator",
                                                           "majority"]
    assert [round(decided.loc[i, "agreement"], 3) for i in ids] == [0.667, 0.5, 0.333, 1.0, 1.0]

    report = invoke("review", "report", "--corrections", tmp_path / "c.parquet", "--plot", tmp_path / "r.png",
                    "--disagreements", tmp_path / "d.csv")
    assert report.exit_code == 0, report.output
    corrected = sum(decided.loc[i, "category"] != said[n] for n, i in enumerate(ids))
    assert f"model accuracy on reviewed rows: {(5 - corrected) / 5:.3f}" in report.output
    assert "disagreements: 3 complaint(s), 1 tie(s)" in report.output
    assert "1 / 2: kappa" in report.output and "agree 0.750 on 4" in report.output
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    listed = pd.read_csv(tmp_path / "d.csv")
    listed_ids = list(listed["id"].astype(str))
    assert listed_ids[0] == ids[1] and set(listed_ids) == {ids[0], ids[1], ids[2]}  # the tie first
    assert "1: " in listed.set_index(listed["id"].astype(str)).loc[ids[2], "answers"]
    only = invoke("review", "report", "--corrections", tmp_path / "c.parquet", "--output", output + "-other")
    one_error(only, "no reviewed complaint")


def test_an_answer_for_a_complaint_not_in_its_night_is_one_error_line_and_writes_nothing(night, model_dir,
                                                                                          tmp_path):
    """Item 4: ids that are not in the night (an export edited by hand, tasks of another project) would relabel
    nothing, or another complaint."""
    output, _ = night
    invoke("review", "export", "--output", output, "--to", tmp_path / "r.json", "--model", model_dir)
    tasks = json.load(open(tmp_path / "r.json", encoding="utf-8"))[:2]
    labels = artifact.read_metadata(model_dir)[0]
    tasks[1] = {**tasks[1], "data": {**tasks[1]["data"], "complaint_id": "not-in-the-night"}}
    answers = {n: [_answer(labels[n], "2026-12-01T10:00:00Z")] for n in range(2)}
    (tmp_path / "e.json").write_text(json.dumps(_exported_with_answers(tasks, answers)), encoding="utf-8")
    one_error(invoke("review", "import", "--from", tmp_path / "e.json", "--out", tmp_path / "c.parquet", "--model",
                     model_dir), "not in their night", "not-in-the-night")
    assert not (tmp_path / "c.parquet").exists()


def test_the_nightly_summary_has_a_review_section_with_the_reports_figures(night, model_dir, tmp_path):
    """Item 2: `label --corrections FILE` puts the review loop's figures so far into the night's summary (and its
    terminal screen): the same numbers `review report` gives; a corrections path that is not there is one line
    before any work."""
    output, _ = night
    invoke("review", "export", "--output", output, "--to", tmp_path / "r.json", "--model", model_dir)
    tasks = json.load(open(tmp_path / "r.json", encoding="utf-8"))[:4]
    labels = artifact.read_metadata(model_dir)[0]
    answers = {n: [_answer(labels[n], "2026-12-01T10:00:00Z", by=1), _answer(labels[n + 1], "2026-12-01T10:01:00Z",
                                                                          by=2)] for n in range(4)}
    (tmp_path / "e.json").write_text(json.dumps(_exported_with_answers(tasks, answers)), encoding="utf-8")
    assert invoke("review", "import", "--from", tmp_path / "e.json", "--out", tmp_path / "c.parquet", "--model",
                  model_dir).exit_code == 0
    write_archive(tmp_path / "in", rows=60, files=1)
    result = invoke("label", "--model", model_dir, "--input", tmp_path / "in" / "*.parquet", "--output",
                    tmp_path / "out", "--no-progress", "--corrections", tmp_path / "c.parquet")
    assert result.exit_code == 0, result.output
    review = json.load(open(tmp_path / "out" / "summary.json"))["review"]
    right, reviewed, low, high = review_figures.accuracy(review_figures.figures(read_answers(
        str(tmp_path / "c.parquet"))))
    assert review["reviewed"] == 4 and review["with_model_label"] == reviewed == 4
    assert review["accuracy_on_reviewed"] == round(right / 4, 4) and review["accuracy_ci95"] == [round(low, 4),
                                                                                                  round(high, 4)]
    assert review["disagreements"] == 4 and review["ties"] == 4 and list(review["kappa"]) == ["1 / 2"]
    assert "review loop" in result.output and "corrected, per model version" in result.output
    missing = invoke("label", "--model", model_dir, "--input", tmp_path / "in" / "*.parquet", "--output",
                     tmp_path / "out2", "--no-progress", "--corrections", tmp_path / "nowhere.parquet")
    one_error(missing, "nowhere.parquet")
    assert not (tmp_path / "out2").exists()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_answers_decide_by_their_own_time_whatever_the_imports_and_their_order(answered_tasks, model_dir, tmp_path,
                                                                                data):
    """Item 1, for the class: any answers from any annotators, split over any number of exports imported in any
    order, decide as one rule read straight off the answers (per annotator the newest; ground truth, else the
    majority, else the newest of the tied)."""
    tasks, labels = answered_tasks
    times = data.draw(st.lists(st.integers(0, 10_000), min_size=1, max_size=12, unique=True))
    given_answers = [{"task": data.draw(st.integers(0, 2)), "by": data.draw(st.sampled_from([None, 1, 2, 3])),
                      "category": labels[data.draw(st.integers(0, 3))], "truth": data.draw(st.booleans()),
                      "at": "2026-12-01T00:00:00Z", "minute": t} for t in times]
    for a in given_answers:
        a["at"] = (pd.Timestamp("2026-12-01T00:00:00Z") + pd.Timedelta(minutes=a["minute"])).isoformat()
    parts = data.draw(st.integers(1, 3))
    part_of = [data.draw(st.integers(0, parts - 1), label=f"part of {a['minute']}") for a in given_answers]
    split = [[a for a, part in zip(given_answers, part_of, strict=True) if part == p] for p in range(parts)]
    order = data.draw(st.permutations(range(parts)))
    target = Path(tempfile.mkdtemp(dir=tmp_path)) / "c.parquet"  # a fresh file for each example
    for p in order:
        answers = {}
        for a in split[p]:
            answers.setdefault(a["task"], []).append(_answer(a["category"], a["at"], by=a["by"], truth=a["truth"]))
        (tmp_path / "e.json").write_text(json.dumps(_exported_with_answers(tasks, answers)), encoding="utf-8")
        result = invoke("review", "import", "--from", tmp_path / "e.json", "--out", target, "--model", model_dir)
        assert result.exit_code == 0, result.output
    decided = _decided(target)["category"].to_dict() if target.exists() else {}
    assert decided == _by_the_rule(given_answers, tasks)


def _by_the_rule(answers: list[dict], tasks: list[dict]) -> dict[str, str]:
    latest = {}
    for a in sorted(answers, key=lambda a: a["minute"]):
        latest[(a["task"], a["by"])] = a
    decided = {}
    for task in {t for t, _ in latest}:
        group = [a for (t, _), a in latest.items() if t == task]
        truth = [a for a in group if a["truth"]]
        votes = pd.Series([a["category"] for a in group]).value_counts()
        leaders = set(votes[votes == votes.max()].index)
        pool = truth or [a for a in group if a["category"] in leaders]
        decided[tasks[task]["data"]["complaint_id"]] = max(pool, key=lambda a: a["minute"])["category"]
    return decided


@pytest.fixture(scope="module")
def answered_tasks(night, model_dir, tmp_path_factory) -> tuple[list[dict], list[str]]:
    folder = tmp_path_factory.mktemp("tasks")
    invoke("review", "export", "--output", night[0], "--to", folder / "r.json", "--model", model_dir)
    return json.load(open(folder / "r.json", encoding="utf-8"))[:3], artifact.read_metadata(model_dir)[0]


def test_kappa_and_the_wilson_interval_match_their_textbook_values():
    """Cohen (1960): observed 3/4, chance 1/2, so kappa 1/2; Wilson's 95% interval of 0 in 10 is 0-0.2775 (the
    normal approximation would give 0-0)."""
    assert review_figures.cohen_kappa(["a", "a", "b", "b"], ["a", "b", "b", "b"]) == pytest.approx(0.5)
    assert review_figures.cohen_kappa(["a", "a"], ["a", "a"]) is None
    assert review_figures.cohen_kappa(["a", "b"], ["b", "a"]) == pytest.approx(-1.0)
    low, high = review_figures.wilson(0, 10)
    assert low == 0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = review_figures.wilson(8, 10)
    assert (low, high) == (pytest.approx(0.4902, abs=1e-4), pytest.approx(0.9433, abs=1e-4))


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """A real Label Studio (its environment is built on first use, then cached), for this module's slow tests;
    where it is not installed and cannot be built (no package registry), they skip, saying so in one line."""
    import subprocess

    from tests import tool_envs
    from tests.label_studio_server import LabelStudio

    try:
        tool_envs.executable("label-studio")
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"Label Studio is not installed here and could not be built ({exc}): `python "
                    "tests/tool_envs.py label-studio` builds it (docs/review-loop.md)")
    with LabelStudio(tmp_path_factory.mktemp("label-studio")) as server:
        yield server


@pytest.mark.slow
def test_the_round_trip_through_a_real_label_studio_with_two_annotators_in_each_export_format(
        night, model_dir, tmp_path, studio):
    """Tasks pushed through its API, answered by two users (they disagree on two), pulled back as JSON, JSON-min
    and CSV: each export imports to the same answers, and the report finds the two disagreements."""
    output, _ = night
    invoke("review", "export", "--output", output, "--to", tmp_path / "r.json", "--model", model_dir,
           "--limit", 12, "--seed", 3)
    tasks = json.load(open(tmp_path / "r.json", encoding="utf-8"))
    labels = artifact.read_metadata(model_dir)[0]
    config = (tmp_path / "r.json.label_config.xml").read_text(encoding="utf-8")
    project = studio.api("POST", "/api/projects", {"title": "complaints review", "label_config": config})
    imported = studio.api("POST", f"/api/projects/{project['id']}/import", tasks)
    assert imported["task_count"] == 12 and imported["prediction_count"] == 12
    second = _second_user(studio)
    listed = studio.api("GET", f"/api/tasks?project={project['id']}&page_size=100")["tasks"]
    by_complaint = {t["data"]["complaint_id"]: t["id"] for t in listed}
    chosen = {}
    for n, task in enumerate(tasks[:8]):
        first_says, second_says = labels[n % len(labels)], labels[(n + (n >= 6)) % len(labels)]
        for who, category in ((None, first_says), (second, second_says)):  # the second answers later
            studio.api("POST", f"/api/tasks/{by_complaint[task['data']['complaint_id']]}/annotations",
                       {"result": [label_studio.choice(category)], **({"completed_by": who} if who else {})})
        chosen[task["data"]["complaint_id"]] = second_says  # agreed, or a tie the newest answer takes
    skipped = tasks[8]["data"]["complaint_id"]
    studio.api("POST", f"/api/tasks/{by_complaint[skipped]}/annotations", {"result": [], "was_cancelled": True})
    for kind, suffix in (("JSON", "json"), ("JSON_MIN", "min.json"), ("CSV", "csv")):
        exported = studio.get(f"/api/projects/{project['id']}/export?exportType={kind}&download_all_tasks=true")
        (tmp_path / f"export.{suffix}").write_bytes(exported)
    texts = {t["data"]["complaint_id"]: t["data"]["text"] for t in tasks}
    for suffix in ("json", "min.json", "csv"):
        result = invoke("review", "import", "--from", tmp_path / f"export.{suffix}", "--out",
                        tmp_path / f"c.{suffix}.parquet", "--model", model_dir)
        assert result.exit_code == 0, (suffix, result.output)
        assert "16 answer(s)" in result.output and "reviewers disagree on 2 (2 tie(s))" in result.output, suffix
        decided = _decided(tmp_path / f"c.{suffix}.parquet")
        assert decided["category"].to_dict() == chosen, suffix
        assert all(decided.loc[i, "text"] == texts[i] for i in chosen)
        assert set(decided["annotators"]) == {2}
    assert "not annotated 3" in invoke("review", "import", "--from", tmp_path / "export.json", "--out",
                                       tmp_path / "again.parquet", "--model", model_dir).output
    report = invoke("review", "report", "--corrections", tmp_path / "c.json.parquet")
    assert report.exit_code == 0, report.output
    assert f"1 / {second}: kappa" in report.output and "agree 0.750 on 8" in report.output
    assert "disagreements: 2 complaint(s), 2 tie(s)" in report.output


def _second_user(studio) -> int:
    users = studio.api("GET", "/api/users/")
    known = [u["id"] for u in (users.get("results", users) if isinstance(users, dict) else users)
             if u["email"] == "second@example.com"]
    return known[0] if known else studio.api("POST", "/api/users/", {
        "email": "second@example.com", "username": "second", "password": "not-secret-2"})["id"]


@pytest.mark.slow
def test_a_live_label_studio_gets_each_task_once_and_its_answers_come_back_through_the_api(
        night, model_dir, tmp_path, studio, monkeypatch):
    """Item 3: `review export --label-studio` creates the project with the labelling config and pushes only the
    tasks it does not hold (a second, overlapping export adds none); `review import --label-studio` pulls the
    answers. The token comes from the environment; without it, or with a wrong one, one error line."""
    from tests.label_studio_server import TOKEN

    output, _ = night
    live = ("--label-studio", studio.url, "--project", "weekly review")
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    one_error(invoke("review", "export", "--output", output, "--model", model_dir, *live), "LABEL_STUDIO_API_KEY")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "not-the-token")
    one_error(invoke("review", "export", "--output", output, "--model", model_dir, *live), "refused the token")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", TOKEN)
    first = invoke("review", "export", "--output", output, "--model", model_dir, "--limit", 6, "--seed", 1, *live)
    assert first.exit_code == 0, first.output
    assert "pushed 6 new task(s)" in first.output
    again = invoke("review", "export", "--output", output, "--model", model_dir, "--limit", 6, "--seed", 1, *live)
    assert "pushed 0 new task(s)" in again.output and "(6 of the chosen rows were there already)" in again.output
    wider = invoke("review", "export", "--output", output, "--model", model_dir, *live)  # every needs_review row
    assert wider.exit_code == 0, wider.output
    invoke("review", "export", "--output", output, "--model", model_dir, "--to", tmp_path / "all.json")
    everything = {t["data"]["complaint_id"] for t in json.load(open(tmp_path / "all.json", encoding="utf-8"))}
    projects = [p for p in studio.api("GET", "/api/projects?page_size=100")["results"] if p["title"] == "weekly review"]
    assert len(projects) == 1
    tasks = studio.api("GET", f"/api/tasks?project={projects[0]['id']}&page_size=1000")["tasks"]
    assert {t["data"]["complaint_id"] for t in tasks} == everything and len(tasks) == len(everything)
    assert f"pushed {len(everything) - 6:,} new task(s)" in wider.output
    assert len({t["data"]["review_key"] for t in tasks}) == len(tasks)  # never one complaint twice
    labels = artifact.read_metadata(model_dir)[0]
    for n, task in enumerate(tasks[:3]):
        studio.api("POST", f"/api/tasks/{task['id']}/annotations", {"result": [label_studio.choice(labels[n])]})
    pulled = invoke("review", "import", "--out", tmp_path / "c.parquet", "--model", model_dir, *live)
    assert pulled.exit_code == 0, pulled.output
    assert "3 answer(s) from project 'weekly review'" in pulled.output
    decided = _decided(tmp_path / "c.parquet")
    assert {decided.loc[t["data"]["complaint_id"], "category"] for t in tasks[:3]} == set(labels[:3])
    one_error(invoke("review", "import", "--out", tmp_path / "c.parquet", "--model", model_dir, "--label-studio",
                     studio.url, "--project", "no such project"), "no project called 'no such project'")


def test_a_label_studio_that_does_not_answer_or_a_half_given_place_is_one_error_line(night, model_dir, tmp_path,
                                                                                      monkeypatch):
    from pipelines.app.pubsub_admin import free_port

    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "any")
    nobody = f"http://127.0.0.1:{free_port()}"
    one_error(invoke("review", "import", "--out", tmp_path / "c.parquet", "--model", model_dir, "--label-studio",
                     nobody, "--project", "x"), "cannot reach Label Studio")
    one_error(invoke("review", "export", "--output", night[0], "--model", model_dir, "--label-studio", nobody),
              "needs --project")
    one_error(invoke("review", "export", "--output", night[0], "--model", model_dir), "give --to FILE or")
    assert not (tmp_path / "c.parquet").exists()


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


def test_label_studios_own_csv_export_is_read_by_complaint_id_and_refused_without_one(model_dir, tmp_path):
    """Its `id` is the task's, not the complaint's: answers keyed by it would correct the wrong rows. A CSV of tasks
    this project exported carries `complaint_id`, and that names the complaint; one without it is refused."""
    labels = artifact.read_metadata(model_dir)[0]
    (tmp_path / "ls.csv").write_text("id,annotation_id,annotator,text,category,updated_at\n"
                                     f"17,3,1,kargo gelmedi,{labels[0]},2026-12-01T10:00:00Z\n", encoding="utf-8")
    one_error(invoke("review", "import", "--from", tmp_path / "ls.csv", "--out", tmp_path / "c.parquet",
                     "--model", model_dir), "without `complaint_id`")
    assert not (tmp_path / "c.parquet").exists()
    (tmp_path / "ls.csv").write_text("id,annotation_id,annotator,complaint_id,text,category,updated_at\n"
                                     f"17,3,1,c-9,kargo gelmedi,{labels[0]},2026-12-01T10:00:00Z\n", encoding="utf-8")
    assert invoke("review", "import", "--from", tmp_path / "ls.csv", "--out", tmp_path / "c.parquet",
                  "--model", model_dir).exit_code == 0
    assert list(_decided(tmp_path / "c.parquet").index) == ["c-9"]
