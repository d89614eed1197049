"""The DataflowRunner accepts the nightly and the live job and stages this package, offline.

Dataflow itself cannot run here, so this is the one place that stands in for it:
`--template_location` makes Beam build and stage the job locally (pipeline.pb,
workflow.tar.gz) without contacting Google; `--no_auth` skips credentials.
"""

from __future__ import annotations

import os
import tarfile

import pytest
from apache_beam.portability.api import beam_runner_api_pb2
from click.testing import CliRunner

from pipelines.app.cli import cli
from tests.archives import snapshot, write_archive

pytestmark = pytest.mark.slow  # whole jobs, services or trainings: left out of `pytest -m "not slow"`

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _dataflow_args(tmp_path) -> tuple[list[str], object]:
    staging = tmp_path / "staging"  # created by the job: Beam would retry for minutes
    return ["--runner", "DataflowRunner", "--project", "demo-project", "--region", "us-central1", "--no_auth",
            "--dataflow_endpoint", "http://localhost:1", "--temp_location", str(tmp_path / "temp"),
            "--staging_location", str(staging), "--template_location", str(tmp_path / "template.json"),
            "--setup_file", "./setup.py"], staging


def _graph(staging) -> dict[str, str]:
    graph = beam_runner_api_pb2.Pipeline()
    graph.ParseFromString((staging / "pipeline.pb").read_bytes())
    return {t.unique_name: t.spec.urn for t in graph.components.transforms.values()}


def _staged_modules(staging) -> set[str]:
    with tarfile.open(staging / "workflow.tar.gz") as package:
        return {name.split("/", 1)[1] for name in package.getnames() if "/" in name}


def test_dataflow_runner_builds_and_stages_the_live_job(model_dir, tmp_path, monkeypatch):
    """On Dataflow the live job keeps Beam's native Pub/Sub I/O (the service acknowledges after a
    durable checkpoint) and Beam's stateful batching before RunInference; the late-ack local read is not in it."""
    monkeypatch.chdir(ROOT)
    args, staging = _dataflow_args(tmp_path)
    result = CliRunner().invoke(cli, [
        "stream", "--model", model_dir, "--subscription", "projects/demo-project/subscriptions/complaints",
        "--output-topic", "projects/demo-project/topics/labelled", "--dead-letter-topic",
        "projects/demo-project/topics/dead", "--archive-output", "gs://bucket/live", *args,
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "template at" in result.output
    steps = _graph(staging)
    assert steps["ReadMessages/Read"] == "beam:transform:pubsub_read:v1"
    assert "Classify/Batch/ParDo(_StatefulBatchElementsDoFn)" in steps  # Beam's stateful batching
    assert "Classify/RunInference/BeamML_RunInference" in steps
    for sink in ("PublishPredictions", "PublishDeadLettersUndecodable", "PublishDeadLettersInvalid",
                 "PublishDeadLettersUnclassified"):
        assert steps[f"PubSubTopics/{sink}/Publish/ParDo(_PubSubWriteDoFn)"] == "beam:transform:pubsub_write:v1"
    assert "ParquetFiles/ArchiveWindows/WriteWindows" in steps
    assert not any("Poll" in name or "PublishConfirmed" in name or "Acknowledge" in name for name in steps)
    for module in ("pipelines/live/job.py", "pipelines/plumbing/codec.py", "pipelines/sinks/pubsub_topics.py",
                   "worker/transform.py", "setup.py"):
        assert module in _staged_modules(staging), module


def test_dataflow_runner_builds_and_stages_the_job(model_dir, tmp_path, monkeypatch):
    """A template build beside last night's committed output leaves that output exactly as it was."""
    write_archive(tmp_path / "in", rows=60, files=1)
    committed = tmp_path / "out"
    committed.mkdir()
    for name, content in (("_SUCCESS", b"20261128T010000-abcdef"), ("summary.json", b'{"rows_in": 60}'),
                          ("predictions-00000-of-00001.parquet", b"last night"), ("report.png", b"png")):
        (committed / name).write_bytes(content)
    before = snapshot(committed)
    monkeypatch.chdir(ROOT)
    args, staging = _dataflow_args(tmp_path)
    result = CliRunner().invoke(cli, [
        "label", "--model", model_dir, "--input", str(tmp_path / "in/*.parquet"), "--output", str(tmp_path / "out"),
        *args,
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "template at" in result.output
    assert (tmp_path / "template.json").stat().st_size > 0
    assert snapshot(committed) == before  # no _SUCCESS withdrawn, no staging folder, no _LOCK

    names = set(_graph(staging))
    for step in ("ReadArchive/Match", "ReadArchive/ListRowGroups", "ReadArchive/ReadTables", "Classify/BatchValidRows",
                 "Classify/RunInference", "Classify/SplitClassified",
                 "ParquetFiles/WritePredictions",
                 "ParquetFiles/WriteDeadLetters",
                 "RunStats", "WriteStats"):
        assert step in names, step
    assert "Progress" not in names  # terminal progress is for local runs only

    members = _staged_modules(staging)
    for module in ("model/artifact.py", "model/text.py", "worker/handler.py", "worker/core.py", "worker/transform.py",
                   "pipelines/nightly/job.py", "pipelines/nightly/reading.py", "pipelines/sinks/parquet_files.py",
                   "setup.py"):
        assert module in members, module


def test_a_submitted_dataflow_job_names_itself_and_where_to_watch_it():
    """Dataflow cannot run here: a stand-in for the runner's result (its `job_id()`, as DataflowPipelineResult
    has it) checks the line the jobs print once Dataflow has accepted a job; a local result prints nothing."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.remote import watch_line

    class Submitted:
        def job_id(self):
            return "2026-11-30_01_02_03-123"

    options = PipelineOptions(["--project", "demo-project", "--region", "europe-west1"])
    assert watch_line(Submitted(), options) == (
        "Dataflow job 2026-11-30_01_02_03-123 submitted; watch it at https://console.cloud.google.com/dataflow/jobs/"
        "europe-west1/2026-11-30_01_02_03-123?project=demo-project")
    assert watch_line(object(), options) is None
