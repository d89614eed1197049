"""Champion and challenger (issue #53, item 6): `--shadow` scores the same rows with a second model, apart.

Real parts: two tiny trained models, generated archives, the nightly job on the
DirectRunner, and the jobs' own classification core as the oracle for what each model
says about a text. The registry and BigQuery variants are in tests/test_registry.py and
tests/test_bigquery.py, beside their servers.
"""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from model import artifact
from model.corrections import ANSWERS_SCHEMA
from pipelines.plumbing.night import normalised
from tests.archives import snapshot, write_archive
from tests.commands import invoke, one_error


def _files(output: str, kind: str) -> pd.DataFrame:
    paths = sorted(glob.glob(os.path.join(output, f"{kind}-*.parquet")))
    if not paths:
        return pd.DataFrame(columns=["id", "label", "confidence", "model_version"])
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True).sort_values("id", ignore_index=True)


def _verdicts(model_dir: str, ids: list[str], texts: list[str]) -> pd.DataFrame:
    """What the jobs' core says for each text with `model_dir`: the oracle."""
    from worker.local import LocalClassifier, texts_as_records
    from worker.transform import PREDICTIONS

    said = LocalClassifier(__import__("worker.config", fromlist=["WorkerConfig"]).WorkerConfig(
        model_dir=model_dir)).classify(texts_as_records(texts))
    rows = [(i, r["label"], r["confidence"]) for i, (tag, r) in zip(ids, said, strict=True) if tag == PREDICTIONS]
    return pd.DataFrame(rows, columns=["id", "label", "confidence"])


def _answers(output: str, rows: pd.DataFrame) -> pd.DataFrame:
    """Review answers for `rows` (id, text, category) of the night in `output`, one annotator each."""
    return pd.DataFrame({
        "id": rows["id"], "night": normalised(output), "text": rows["text"], "category": rows["category"],
        "annotator": "a@example.com", "answered_at": "2026-12-02T09:00:00.000000Z", "ground_truth": False,
        "model_label": None, "model_confidence": np.nan, "model_version": None,
    })[ANSWERS_SCHEMA.names]


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """An archive of 1,200 generated rows with their true categories kept aside."""
    folder = tmp_path_factory.mktemp("shadow-night")
    rows = pd.DataFrame(write_archive(folder / "in", rows=1200, files=2, seed=21))
    return folder, rows


def test_a_challenger_scores_the_night_beside_the_champion_and_never_into_its_predictions(
        night, model_dir, retrained_model_dir, tmp_path):
    folder, rows = night
    from model.sample import generate

    truth = generate(1200, seed=21, labelled=True)[["id", "text", "category"]].astype({"id": str})
    output = str(tmp_path / "out")
    alone = invoke("label", "--model", model_dir, "--input", folder / "in" / "*.parquet", "--output",
                   tmp_path / "alone", "--no-progress")
    assert alone.exit_code == 0, alone.output
    reviewed = truth[truth["text"].map(lambda t: isinstance(t, str) and len(t) > 3)].iloc[::6]
    _answers(output, reviewed).to_parquet(tmp_path / "answers.parquet")
    result = invoke("label", "--model", model_dir, "--shadow", retrained_model_dir, "--input",
                    folder / "in" / "*.parquet", "--output", output, "--no-progress",
                    "--corrections", tmp_path / "answers.parquet")
    assert result.exit_code == 0, result.output

    predictions, shadow = _files(output, "predictions"), _files(output, "shadow")
    without = _files(str(tmp_path / "alone"), "predictions")
    pd.testing.assert_frame_equal(predictions, without)  # the champion's output is what it is alone
    assert set(predictions["model_version"]) == {artifact.load(model_dir).version}
    assert set(shadow["model_version"]) == {artifact.load(retrained_model_dir).version}
    texts = dict(zip(rows["id"].astype(str), rows["text"], strict=True))
    oracle = _verdicts(retrained_model_dir, list(predictions["id"]), [texts[i] for i in predictions["id"]])
    assert shadow["id"].tolist() == oracle["id"].tolist()  # every row the champion labelled, scored once
    assert shadow["label"].tolist() == oracle["label"].tolist()
    np.testing.assert_allclose(shadow["confidence"], oracle["confidence"], atol=1e-5)
    assert pq.read_schema(glob.glob(os.path.join(output, "shadow-*.parquet"))[0]).metadata[
        b"complaints.output"] == b"shadow"  # a later glob over this folder skips it, as it skips predictions

    summary = json.load(open(os.path.join(output, "summary.json")))
    assert summary["predicted"] == len(predictions)  # the books count the champion's rows only
    section, same = summary["shadow"], predictions["label"].to_numpy() == shadow["label"].to_numpy()
    assert section["model_dir"] == retrained_model_dir and section["rows"] == len(shadow)
    assert section["agreement"] == pytest.approx(same.mean())
    assert sum(f["rows"] for f in section["flips"]) <= (~same).sum()
    assert section["confidence"]["mean_shift"] == pytest.approx(
        float((shadow["confidence"] - predictions["confidence"]).mean()), abs=1e-6)
    judged = reviewed.merge(predictions[["id", "label"]], on="id").merge(
        shadow[["id", "label"]], on="id", suffixes=("_a", "_b"))
    assert section["reviewed"]["rows"] == len(judged) > 50
    assert section["reviewed"]["champion_accuracy"] == pytest.approx((judged["label_a"] == judged["category"]).mean())
    assert section["reviewed"]["challenger_accuracy"] == pytest.approx(
        (judged["label_b"] == judged["category"]).mean())
    assert "shadow" in result.output and f"agrees on {section['agreement']:.1%}" in result.output

    compared = invoke("compare", "--night", output, "--corrections", tmp_path / "answers.parquet",
                      "--report-dir", tmp_path / "report")
    assert compared.exit_code == 0, compared.output
    report = json.load(open(tmp_path / "report" / "compare.json"))
    assert report["mode"] == "labelled" and report["rows"] == len(judged)
    assert report["a"]["accuracy"] == pytest.approx(section["reviewed"]["champion_accuracy"])
    assert report["unlabelled"]["agreement"] == pytest.approx(section["agreement"])

    again = invoke("label", "--model", model_dir, "--input", folder / "in" / "*.parquet", "--output", output,
                   "--no-progress")
    assert again.exit_code == 0, again.output
    assert not glob.glob(os.path.join(output, "shadow-*.parquet"))  # a night without a challenger has none
    assert "shadow" not in json.load(open(os.path.join(output, "summary.json")))
    one_error(invoke("compare", "--night", output), "no shadow", "--shadow")
    one_error(invoke("compare", "--model", model_dir, "--model", retrained_model_dir, "--corrections",
                     tmp_path / "answers.parquet"), "--corrections is read with --night")


def test_a_challenger_that_is_the_champion_is_not_scored_twice_and_the_night_goes_on(night, model_dir, tmp_path):
    folder, _ = night
    result = invoke("label", "--model", model_dir, "--shadow", model_dir, "--input", folder / "in" / "*.parquet",
                    "--output", tmp_path / "out", "--no-progress")
    assert result.exit_code == 0, result.output
    summary = json.load(open(tmp_path / "out" / "summary.json"))
    assert "champion's own model" in summary["shadow"]["not_scored"]
    assert not glob.glob(str(tmp_path / "out" / "shadow-*.parquet"))
    assert "not scored" in result.output


def test_a_challenger_that_does_not_load_is_one_line_before_the_output_is_touched(night, model_dir, tmp_path):
    folder, _ = night
    first = invoke("label", "--model", model_dir, "--input", folder / "in" / "*.parquet", "--output",
                   tmp_path / "out", "--no-progress")
    assert first.exit_code == 0, first.output
    before = snapshot(tmp_path / "out")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metadata.json").write_text("{")
    one_error(invoke("label", "--model", model_dir, "--shadow", broken, "--input", folder / "in" / "*.parquet",
                     "--output", tmp_path / "out", "--no-progress"), str(broken))
    assert snapshot(tmp_path / "out") == before
