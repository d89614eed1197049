"""The house: one prediction record, one verdict everywhere, the app shell apart from the jobs."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from pipelines.app.cli import cli
from pipelines.app.predictor import Predictor
from pipelines.app.web import verdict
from pipelines.nightly.job import run
from pipelines.options import BatchConfig
from pipelines.plumbing.codec import encode_prediction
from tests.archives import write_archive
from tests.beam_helpers import classify
from worker import prediction
from worker.transform import WorkerConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REJECTED = ["", "   ", "?!... :)", "😡😡", "¿¡ — …"]  # each is empty after standardisation


def _runner_up(outputs: prediction.BatchOutputs) -> list:
    column = min(1, outputs.top_ids.shape[1] - 1)
    return outputs.labels[outputs.top_ids[:, column]].tolist()


@pytest.fixture
def runner_up_field(monkeypatch):
    """A field added in the one place a field is defined."""
    field = prediction.Field("runner_up", pa.string(), "the second most likely category", _runner_up, attribute=str)
    monkeypatch.setattr(prediction, "FIELDS", [*prediction.FIELDS, field])
    return field


@pytest.mark.slow  # runs both jobs
def test_a_field_added_once_reaches_parquet_json_attributes_and_the_page(runner_up_field, model_dir, tmp_path):
    write_archive(tmp_path / "in", rows=60, files=1)
    output = tmp_path / "out"
    run(BatchConfig(input_pattern=str(tmp_path / "in/*.parquet"), output=str(output),
                    worker=WorkerConfig(model_dir), progress=False))
    written = pd.concat(pd.read_parquet(p) for p in glob.glob(f"{output}/predictions-*.parquet"))
    assert "runner_up" in written.columns and len(written) > 50
    assert (written["runner_up"] == [top[1]["label"] for top in written["top_k"]]).all()

    record = written.iloc[0].to_dict()
    record["top_k"] = list(record["top_k"])
    message = encode_prediction(record)
    assert json.loads(message.data)["runner_up"] == record["runner_up"]
    assert message.attributes["runner_up"] == record["runner_up"]

    predictor = Predictor(model_dir)
    table = predictor.classify_many("Kargom gelmedi, kurye adreste yok dedi", None)
    one = predictor.classify_one("Kargom gelmedi, kurye adreste yok dedi")
    assert table["runner_up"][0] == one.top[1][0]
    assert f"runner up: {one.top[1][0]}" in verdict(one)
    assert json.loads(CliRunner().invoke(cli, ["predict", "--model", model_dir, "--json", "Kargom gelmedi"])
                      .output)["runner_up"]


def test_predict_and_the_page_give_the_jobs_verdict(model_dir):
    good = "Kargom 12 gündür teslim edilmedi, kurye adreste yok dedi"
    texts = [*REJECTED, good]
    records = [{"id": str(n), "text": t} for n, t in enumerate(texts, start=1)]
    predictions, letters, _ = classify(records, WorkerConfig(model_dir))
    jobs = {letter["id"]: letter["reason"] for letter in letters}
    assert set(jobs) == {str(n) for n in range(1, len(REJECTED) + 1)} and [p["id"] for p in predictions] == ["6"]

    result = CliRunner().invoke(cli, ["predict", "--model", model_dir, "--json", *texts])
    assert result.exit_code == 0, result.output  # one text was labelled
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert {line["id"]: line["dead_letter"]["reason"] for line in lines if "dead_letter" in line} == jobs
    assert lines[-1]["label"] == predictions[0]["label"]
    assert lines[-1]["confidence"] == pytest.approx(predictions[0]["confidence"], abs=1e-6)

    rejected = CliRunner().invoke(cli, ["predict", "--model", model_dir, *REJECTED[2:]])
    assert rejected.exit_code == 1  # every text rejected
    assert rejected.output.count("dead letter: empty_text") == len(REJECTED[2:])

    predictor = Predictor(model_dir)
    assert "Not classified: **empty_text**" in verdict(predictor.classify_one("😡😡"))
    table = predictor.classify_many("\n".join(["?!...", good]), None)
    assert table["dead_letter"][0].startswith("empty_text") and table["dead_letter"][1] == ""
    assert table["label"][1] == predictions[0]["label"] and pd.isna(table["label"][0])


def _fresh_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_help_imports_neither_tensorflow_beam_scipy_nor_pyarrow():
    result = _fresh_python(
        "import sys\n"
        "from pipelines.app.cli import cli\n"
        "for command in ('label', 'train', 'stream', 'predict', 'evaluate', 'compare', 'serve', 'demo'):\n"
        "    try:\n"
        "        cli([command, '--help'], standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('imported:', sorted(m for m in ('tensorflow', 'keras', 'apache_beam', 'scipy', 'pyarrow')\n"
        "                          if m in sys.modules))\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "imported: []"


@pytest.mark.slow  # a training or a fresh interpreter
def test_what_runs_on_workers_never_imports_the_application_shell():
    result = _fresh_python(
        "import sys, pipelines.nightly.job, pipelines.live.job, pipelines.sinks.parquet_files, "
        "pipelines.sinks.parquet_windows, pipelines.sinks.pubsub_topics\n"
        "print(sorted(m for m in sys.modules if m.startswith('pipelines.app') or m in ('click', 'gradio')))\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


@pytest.mark.slow  # a training or a fresh interpreter
def test_importing_the_worker_leaves_the_root_logger_alone():
    result = _fresh_python("import logging, worker.handler, worker.transform\nprint(logging.getLogger().filters)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


def test_evaluate_never_writes_into_the_model_directory(model_dir, tmp_path, monkeypatch):
    from model.sample import generate
    from pipelines.app.files import write_frame

    before = sorted(os.listdir(model_dir))
    write_frame(generate(100, seed=3), str(tmp_path / "eval.parquet"))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["evaluate", "--model", model_dir, "--data", "eval.parquet"])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(model_dir)) == before
    assert (tmp_path / "evaluation" / "metrics.json").exists()


def test_identical_runs_write_identical_dead_letters_with_string_ids(model_dir, tmp_path):
    texts = [None, "", "?!...", "😡", "kargo gelmedi"] * 4
    pq.write_table(pa.table({"id": pa.array(range(len(texts)), pa.int64()), "text": pa.array(texts, pa.string())}),
                   tmp_path / "in.parquet", row_group_size=3)
    letters = []
    for name in ("a", "b"):
        run(BatchConfig(input_pattern=str(tmp_path / "in.parquet"), output=str(tmp_path / name),
                        worker=WorkerConfig(model_dir), progress=False))
        letters.append(pd.concat(pd.read_parquet(p) for p in sorted(glob.glob(f"{tmp_path / name}/dead_letters-*"))))
    pd.testing.assert_frame_equal(letters[0].reset_index(drop=True), letters[1].reset_index(drop=True))
    assert list(letters[0]["id"]) == sorted(letters[0]["id"])
    assert {json.loads(p)["id"] for p in letters[0]["payload"]} == set(letters[0]["id"])  # strings, as `id` is


def test_max_tokens_sizes_the_linear_models_word_vocabulary(tmp_path):
    from model.config import ArchitectureConfig, TrainConfig
    from model.train import train
    from tests.conftest import labelled

    result = train(labelled(600, seed=5), str(tmp_path / "m"), ArchitectureConfig(max_tokens=50),
                   TrainConfig(architecture="linear", calibrate=False, final_fit="train", verbose=0))
    assert result.metadata["architecture"]["word_max_tokens"] == 50
