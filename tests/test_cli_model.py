"""The model commands through the real CLI, including every bad-input case."""

import json
import os
import shutil

import pandas as pd
import pytest
from click.testing import CliRunner

from model.sample import generate
from pipelines.app.cli import cli
from pipelines.app.files import write_frame


def invoke(*args, input=None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def assert_user_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_sample_data_command(tmp_path):
    out = tmp_path / "s.parquet"
    result = invoke("sample-data", "--rows", "50", "--out", str(out), "--seed", "2")
    assert result.exit_code == 0
    assert pd.read_parquet(out).equals(generate(50, seed=2))
    invoke("sample-data", "--rows", "5", "--out", str(tmp_path / "u.parquet"), "--unlabelled")
    assert list(pd.read_parquet(tmp_path / "u.parquet").columns) == ["id", "text"]


def test_describe(tmp_path):
    path = tmp_path / "d.parquet"
    write_frame(generate(300, seed=1), str(path))
    result = invoke("describe", "--data", str(path))
    assert result.exit_code == 0
    assert "300 rows in 1 file(s)" in result.output
    assert "32 classes:" in result.output
    assert "longer than 40 tokens" in result.output


@pytest.mark.slow  # a training or a fresh interpreter
def test_train_from_csv_with_other_columns_and_skipped_rows(tmp_path):
    frame = generate(600, seed=4).rename(columns={"text": "body", "category": "topic"})
    frame.loc[:4, "body"] = ""
    frame.loc[5:6, "topic"] = None
    frame.to_csv(tmp_path / "d.csv", index=False)
    result = invoke("train", "--data", str(tmp_path / "d.csv"), "--out", str(tmp_path / "m"),
                    "--text-column", "body", "--label-column", "topic", "--epochs", "1",
                    "--max-tokens", "500", "--lstm-units", "4", "--dense-units", "4", "--embedding-dim", "4",
                    "--locale", "unicode")
    assert result.exit_code == 0, result.output
    assert "skipped 7 row(s)" in result.output
    meta = json.load(open(tmp_path / "m" / "metadata.json"))
    assert meta["locale"] == "unicode" and meta["training"]["skipped_rows"] == 7


def test_predict_and_evaluate(model_dir, loaded, serving, tmp_path):
    text = generate(1, seed=42, labelled=False)["text"][0]
    result = invoke("predict", "--model", model_dir, "--json", text)
    assert result.exit_code == 0
    row = json.loads(result.output)
    probabilities = serving.probabilities([text])[0]
    assert row["label"] == loaded.labels[probabilities.argmax()]
    assert row["confidence"] == pytest.approx(float(probabilities.max()), abs=1e-6)
    assert len(row["top_k"]) == 3
    stdin = invoke("predict", "--model", model_dir, input=f"{text}\nikinci şikayet\n")
    assert len(stdin.output.strip().splitlines()) == 2

    data = tmp_path / "eval.parquet"
    write_frame(generate(200, seed=8), str(data))
    result = invoke("evaluate", "--model", model_dir, "--data", str(data), "--report-dir", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    metrics = json.load(open(tmp_path / "r" / "metrics.json"))
    assert metrics["macro avg"]["support"] == 200
    assert (tmp_path / "r" / "confusion_matrix.png").exists()


def test_bad_data_inputs(tmp_path):
    model = str(tmp_path / "m")
    assert_user_error(invoke("train", "--data", str(tmp_path / "missing.parquet"), "--out", model),
                      "no data file matches")
    (tmp_path / "junk.parquet").write_bytes(b"this is not parquet")
    assert_user_error(invoke("train", "--data", str(tmp_path / "junk.parquet"), "--out", model),
                      "cannot read", "junk.parquet")
    write_frame(generate(100, seed=1), str(tmp_path / "ok.parquet"))
    assert_user_error(invoke("train", "--data", str(tmp_path / "ok.parquet"), "--out", model,
                             "--label-column", "topic"), "no column 'topic'", "--label-column")
    single = generate(100, seed=1).assign(category="Gıda")
    write_frame(single, str(tmp_path / "one.parquet"))
    assert_user_error(invoke("train", "--data", str(tmp_path / "one.parquet"), "--out", model),
                      "single class")
    write_frame(generate(4, seed=1), str(tmp_path / "tiny.parquet"))
    assert_user_error(invoke("train", "--data", str(tmp_path / "tiny.parquet"), "--out", model), "too few")
    assert_user_error(invoke("predict", "--model", model, input=""), "no text")


def test_broken_model_directories(model_dir, tmp_path):
    assert_user_error(invoke("predict", "--model", str(tmp_path / "none"), "x"), "does not exist")
    partial = tmp_path / "partial"
    shutil.copytree(model_dir, partial)
    os.remove(partial / "labels.json")
    assert_user_error(invoke("predict", "--model", str(partial), "x"), "missing labels.json")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(model_dir, corrupt)
    (corrupt / "model.keras").write_bytes(b"garbage")
    assert_user_error(invoke("predict", "--model", str(corrupt), "x"), "model.keras does not load")
    future = tmp_path / "future"
    shutil.copytree(model_dir, future)
    meta = json.load(open(future / "metadata.json"))
    json.dump({**meta, "format_version": 99}, open(future / "metadata.json", "w"))
    assert_user_error(invoke("predict", "--model", str(future), "x"), "format 99", "retrain")
