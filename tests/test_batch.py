"""The nightly job end to end: real Parquet files, a real model, the in-process runner."""

from __future__ import annotations

import glob
import json
import os
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from pipelines.app.cli import cli
from pipelines.errors import JobFailed
from pipelines.nightly.job import run
from pipelines.options import BatchConfig
from tests.archives import BAD_TEXTS, corrupt_row_group, snapshot, write_archive
from worker import prediction
from worker.records import DEAD_LETTER_SCHEMA
from worker.transform import WorkerConfig

pytestmark = pytest.mark.slow  # whole jobs, services or trainings: left out of `pytest -m "not slow"`


def config(model_dir, input_dir, output, **kwargs) -> BatchConfig:
    return BatchConfig(input_pattern=os.path.join(str(input_dir), "*.parquet"), output=str(output),
                       worker=WorkerConfig(model_dir), progress=False, keep_columns=("store",), **kwargs)


def read_output(output) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    predictions = pd.concat([pd.read_parquet(p) for p in sorted(glob.glob(f"{output}/predictions-*.parquet"))])
    letters = [pd.read_parquet(p) for p in sorted(glob.glob(f"{output}/dead_letters-*.parquet"))]
    dead = pd.concat(letters) if letters else pd.DataFrame(columns=DEAD_LETTER_SCHEMA.names)
    summary = json.load(open(os.path.join(output, "summary.json"), encoding="utf-8"))
    return predictions.sort_values("id").reset_index(drop=True), dead, summary


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    directory = tmp_path_factory.mktemp("archive")
    return directory, write_archive(directory)


@pytest.fixture(scope="module")
def labelled(model_dir, archive, tmp_path_factory):
    output = tmp_path_factory.mktemp("out") / "labels"
    summary = run(config(model_dir, archive[0], output))
    return output, summary


def test_every_row_accounted_for_with_the_right_schema(labelled, archive):
    output, returned = labelled
    rows = archive[1]
    predictions, dead, summary = read_output(output)
    assert summary == returned
    assert os.path.exists(output / "_SUCCESS")
    assert not [p for p in os.listdir(output) if p.startswith(".staging")]
    assert len(predictions) + len(dead) == len(rows) == summary["rows_in"] == 3000
    assert set(predictions["id"]) | set(dead["id"]) == {r["id"] for r in rows}
    assert sorted(dead["reason"]) == ["empty_text", "empty_text", "missing_text"]
    bad_ids = {r["id"] for r in rows if pd.isna(r["text"]) or r["text"] in BAD_TEXTS}
    assert set(dead["id"]) == bad_ids
    expected_schema = prediction.schema([pq.read_schema(glob.glob(f"{archive[0]}/*.parquet")[0]).field("store")])
    for path in glob.glob(f"{output}/predictions-*.parquet"):
        assert pq.read_schema(path).remove_metadata().equals(expected_schema)
    store_by_id = {r["id"]: r["store"] for r in rows}
    assert (predictions["store"] == predictions["id"].map(store_by_id)).all()


def test_predictions_equal_the_models_own(labelled, archive, loaded, serving):
    predictions, _, _ = read_output(labelled[0])
    text_by_id = {r["id"]: r["text"] for r in archive[1]}
    expected = serving.probabilities([text_by_id[i] for i in predictions["id"]])
    assert (predictions["label"].to_numpy() == np.array(loaded.labels)[expected.argmax(axis=1)]).all()
    np.testing.assert_allclose(predictions["confidence"].to_numpy(), expected.max(axis=1), atol=1e-5)
    top = predictions["top_k"].iloc[0]
    assert len(top) == 3 and top[0]["label"] == predictions["label"].iloc[0]


def test_summary_figures_match_the_files(labelled):
    predictions, dead, summary = read_output(labelled[0])
    assert summary["balanced"] is True
    assert summary["predicted"] == len(predictions) and summary["dead_lettered"] == len(dead)
    assert summary["dead_lettered_by_reason"] == dead["reason"].value_counts().to_dict()
    counts = predictions["label"].value_counts()
    assert {k: v["count"] for k, v in summary["labels"].items()} == counts.to_dict()
    assert sum(v["share"] for v in summary["labels"].values()) == pytest.approx(1.0)
    assert summary["mean_confidence"] == pytest.approx(predictions["confidence"].mean(), abs=1e-6)
    assert summary["needs_review"] == int(predictions["needs_review"].sum())
    assert len(summary["inputs"]) == 3 and all(i["size_bytes"] > 0 for i in summary["inputs"])
    assert sum(i["rows"] for i in summary["inputs"]) == 3000
    assert summary["rows_per_second"] > 0 and summary["model_version"] == predictions["model_version"].iloc[0]
    assert sorted(summary["output_files"]) == sorted(
        p for p in os.listdir(labelled[0]) if p.endswith(".parquet") or p == "report.png")


def test_rerun_replaces_and_is_identical(model_dir, archive, labelled, tmp_path):
    output = tmp_path / "again"
    shutil.copytree(labelled[0], output)
    (output / "predictions-99999-of-99999.parquet").write_bytes(b"stale file from an older run")
    run(config(model_dir, archive[0], output))
    first, _, _ = read_output(labelled[0])
    second, _, summary = read_output(output)
    assert "predictions-99999-of-99999.parquet" not in os.listdir(output)
    assert summary["predicted"] == len(second) == len(first)
    pd.testing.assert_frame_equal(first, second)


def test_archives_without_id_get_stable_derived_ids(model_dir, tmp_path):
    rows = write_archive(tmp_path / "in", rows=300, with_id=False)
    run(config(model_dir, tmp_path / "in", tmp_path / "out"))
    predictions, dead, _ = read_output(tmp_path / "out")
    expected = {f"{tmp_path / 'in'}/{r['_file']}:{r['_row']}" for r in rows}
    assert set(predictions["id"]) | set(dead["id"]) == expected
    run(config(model_dir, tmp_path / "in", tmp_path / "out2"))
    assert read_output(tmp_path / "out2")[0]["id"].tolist() == predictions["id"].tolist()


def test_failure_mid_run_leaves_the_previous_output_as_it_was(model_dir, labelled, tmp_path):
    input_dir = tmp_path / "in"
    write_archive(input_dir, rows=1200, row_group_size=100)
    corrupt_row_group(str(input_dir / "part-1.parquet"))
    output = tmp_path / "out"
    shutil.copytree(labelled[0], output)  # a previous complete run is being replaced
    before = snapshot(output)
    with pytest.raises(JobFailed, match="nothing was committed"):
        run(config(model_dir, input_dir, output))
    assert snapshot(output) == before  # _SUCCESS and every file as they were; no staging, no _LOCK


def test_multi_processing_direct_runner(model_dir, archive, labelled, tmp_path):
    summary = run(config(model_dir, archive[0], tmp_path / "mp"),
                  ["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    assert summary["balanced"] and summary["rows_in"] == 3000
    pd.testing.assert_frame_equal(read_output(tmp_path / "mp")[0], read_output(labelled[0])[0])
    # the workers are other processes: what they served came back with their batches, every row counted
    served = summary["precision"]
    assert served["served"] in ("fp32", "openvino-f32", "bf16", "openvino-bf16") and served["why"]
    assert sum(served["rows_by_precision"].values()) == summary["predicted"]


def _label(*args):
    return CliRunner().invoke(cli, ["label", *args], catch_exceptions=False)


def _assert_one_line_error(result, fragment):
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0], result.output
    assert "Traceback" not in result.output


def test_bad_inputs_fail_in_one_line_without_output(model_dir, archive, tmp_path):
    good = os.path.join(str(archive[0]), "*.parquet")
    out = str(tmp_path / "out")
    cases = [
        (["--model", model_dir, "--input", str(tmp_path / "none/*.parquet"), "--output", out], "no input file"),
        (["--model", model_dir, "--input", good, "--output", out, "--text-column", "body"], "no column 'body'"),
        (["--model", model_dir, "--input", good, "--output", out, "--id-column", "ref"], "no column 'ref'"),
        (["--model", model_dir, "--input", good, "--output", out, "--text-column", "store", "--id-column", "text"],
         None),  # valid columns: must run (text stands in for an id)
        (["--model", str(tmp_path), "--input", good, "--output", out], "not a complete model directory"),
        (["--model", model_dir, "--input", good, "--output", "/proc/forbidden/out"], "cannot write"),
    ]
    for args, fragment in cases:
        result = _label(*args, "--no-progress")
        if fragment is None:
            assert result.exit_code == 0, result.output
            shutil.rmtree(out)
            continue
        _assert_one_line_error(result, fragment)
        assert not os.path.exists(os.path.join(out, "_SUCCESS"))

    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.parquet").write_bytes(b"not parquet at all")
    _assert_one_line_error(_label("--model", model_dir, "--input", str(tmp_path / "junk/*.parquet"),
                                  "--output", out), "not a readable Parquet file")
    truncated = tmp_path / "trunc"
    truncated.mkdir()
    data = open(glob.glob(good)[0], "rb").read()
    (truncated / "a.parquet").write_bytes(data[: len(data) // 2])
    _assert_one_line_error(_label("--model", model_dir, "--input", str(truncated / "*.parquet"),
                                  "--output", out), "not a readable Parquet file")
    typed = tmp_path / "typed"
    write_archive(typed, rows=30, files=1)
    frame = pd.read_parquet(typed / "part-0.parquet").assign(text=1)
    frame.to_parquet(typed / "part-0.parquet")
    _assert_one_line_error(_label("--model", model_dir, "--input", str(typed / "*.parquet"), "--output", out),
                           "not a string column")
    assert not os.path.exists(os.path.join(out, "_SUCCESS"))


def test_killed_run_leaves_the_previous_output_complete(model_dir, labelled, tmp_path):
    """SIGKILL the real command mid-run: the old output is still whole, and the next run is not blocked."""
    import signal
    import subprocess
    import sys
    import time

    write_archive(tmp_path / "in", rows=6000, files=2)
    output = tmp_path / "out"
    shutil.copytree(labelled[0], output)
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines", "label", "--model", model_dir, "--input", str(tmp_path / "in/*.parquet"),
         "--output", str(output), "--max-batch-size", "16", "--min-batch-size", "16"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not glob.glob(f"{output}/.staging-*/**/*", recursive=True):  # the run has started writing
        assert process.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline, "the run wrote nothing in 120 s"
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be interrupted"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    visible = {k: v for k, v in snapshot(output).items() if not k.startswith((".staging-", "_LOCK"))}
    assert visible == snapshot(labelled[0])  # the old night, still complete, untouched
    summary = run(config(model_dir, tmp_path / "in", output))  # the kill released the hold; leftovers cleared
    assert summary["rows_in"] == 6000 and summary["cleared_leftovers"]
    assert not [p for p in os.listdir(output) if p.startswith((".staging", ".replaced", "_LOCK"))]
