"""The DataflowRunner accepts the nightly job and stages this package, offline.

Dataflow itself cannot run here, so this is the one place that stands in for it:
`--template_location` makes Beam build and stage the job locally (pipeline.pb,
workflow.tar.gz) without contacting Google; `--no_auth` skips credentials.
"""

from __future__ import annotations

import os
import tarfile

from apache_beam.portability.api import beam_runner_api_pb2
from click.testing import CliRunner

from pipelines.cli import cli
from tests.archives import write_archive

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_dataflow_runner_builds_and_stages_the_job(model_dir, tmp_path, monkeypatch):
    write_archive(tmp_path / "in", rows=60, files=1)
    staging, temp = tmp_path / "staging", tmp_path / "temp"  # created by the job: Beam would retry for minutes
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(cli, [
        "label", "--model", model_dir, "--input", str(tmp_path / "in/*.parquet"), "--output", str(tmp_path / "out"),
        "--runner", "DataflowRunner", "--project", "demo", "--region", "us-central1", "--no_auth",
        "--dataflow_endpoint", "http://localhost:1", "--temp_location", str(temp), "--staging_location",
        str(staging), "--template_location", str(tmp_path / "template.json"), "--setup_file", "./setup.py",
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "template at" in result.output
    assert (tmp_path / "template.json").stat().st_size > 0
    assert not (tmp_path / "out" / "_SUCCESS").exists()

    graph = beam_runner_api_pb2.Pipeline()
    graph.ParseFromString((staging / "pipeline.pb").read_bytes())
    names = {t.unique_name for t in graph.components.transforms.values()}
    for step in ("ReadArchive/Match", "ReadArchive/ListRowGroups", "ReadArchive/ReadRecords", "Classify/Validate",
                 "Classify/RunInference", "Classify/ToRecords", "WritePredictions", "WriteDeadLetters",
                 "RunStats", "WriteStats"):
        assert step in names, step
    assert "Progress" not in names  # terminal progress is for local runs only

    with tarfile.open(staging / "workflow.tar.gz") as package:
        members = {name.split("/", 1)[1] for name in package.getnames() if "/" in name}
    for module in ("model/artifact.py", "model/text.py", "worker/handler.py", "worker/transform.py",
                   "pipelines/batch.py", "pipelines/parquet.py", "setup.py"):
        assert module in members, module
