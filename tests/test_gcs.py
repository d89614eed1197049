"""gs:// paths against a real storage emulator (gcp-storage-emulator, from the package registry) (issue #28, item 2).

The emulator is started here on a free loopback port and stopped after; the jobs
find it through `STORAGE_EMULATOR_HOST`, as Google's client libraries do. Archive,
output and model directory all live in the emulated bucket.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from model import artifact, files
from pipelines.app.cli import cli
from tests.archives import output_problem, write_archive
from tests.storage_emulators import storage_emulator

pytestmark = pytest.mark.slow  # a service and whole jobs

BUCKET = "complaints-test"


@pytest.fixture(scope="module")
def gcs():
    """gs://BUCKET on a storage emulator for this module; the environment points Beam's client at it."""
    binary = shutil.which("gcp-storage-emulator") or os.path.join(os.path.dirname(sys.executable),
                                                                   "gcp-storage-emulator")
    with storage_emulator(lambda port: [binary, "start", "--host=127.0.0.1", f"--port={port}", "--in-memory",
                                        f"--default-bucket={BUCKET}"]):
        yield f"gs://{BUCKET}"


def _upload(local_dir, prefix: str) -> None:
    for name in os.listdir(local_dir):
        files.write_bytes(f"{prefix}/{name}", open(os.path.join(local_dir, name), "rb").read())


def _label(*args: str):
    return CliRunner().invoke(cli, ["label", "--no-progress", *args])


def _view(output: str) -> str | None:
    """The output as a consumer reads it: a problem, or None (incomplete, consistent, or a commit happened while
    reading, which the run id in `_SUCCESS` shows and a consumer retries)."""
    success = f"{output}/_SUCCESS"
    try:
        first = files.read_bytes(success)
        names = [p.rsplit("/", 1)[1] for p in files.glob(f"{output}/*") if not p.rsplit("/", 1)[1].startswith(".")]
        summary = json.loads(files.read_bytes(f"{output}/summary.json"))
        counts = {n: pq.ParquetFile(pa.BufferReader(files.read_bytes(f"{output}/{n}"))).metadata.num_rows
                  for n in names if n.endswith(".parquet")}
        second = files.read_bytes(success)
    except Exception:  # noqa: BLE001 (a file gone between listing and reading: a commit is under way; read again)
        return None
    return None if first != second else output_problem(names, summary, counts)


def test_the_nightly_job_reads_writes_and_loads_its_model_on_gs(gcs, model_dir, tmp_path):
    write_archive(tmp_path / "one", rows=900, files=2, seed=41)
    write_archive(tmp_path / "two", rows=400, files=1, seed=42)
    _upload(tmp_path / "one", f"{gcs}/archive/one")
    _upload(tmp_path / "two", f"{gcs}/archive/two")
    model = artifact.copy_directory(model_dir, f"{gcs}/models/v1")
    output = f"{gcs}/labelled/latest"

    first = _label("--model", model, "--input", f"{gcs}/archive/one/*.parquet", "--output", output)
    assert first.exit_code == 0, first.output
    assert _view(output) is None and files.exists(f"{output}/_SUCCESS")
    assert json.loads(files.read_bytes(f"{output}/summary.json"))["rows_in"] == 900

    # The second night replaces the first while a reader polls: never _SUCCESS beside a mixture.
    problems, successes, done = [], set(), threading.Event()

    def poll():
        while not done.is_set():
            problem = _view(output)
            if problem:
                problems.append(problem)
            with contextlib.suppress(Exception):  # _SUCCESS withdrawn between the two calls: look again
                successes.add(files.read_bytes(f"{output}/_SUCCESS"))
            done.wait(0.05)  # a consumer polling often, not a load test of the emulator

    reader = threading.Thread(target=poll, daemon=True)
    reader.start()
    second = _label("--model", model, "--input", f"{gcs}/archive/two/*.parquet", "--output", output)
    done.set()
    reader.join(timeout=60)
    assert second.exit_code == 0, second.output
    assert problems == [] and len(successes) >= 1
    summary = json.loads(files.read_bytes(f"{output}/summary.json"))
    assert summary["rows_in"] == 400 and summary["predicted"] + summary["dead_lettered"] == 400
    assert not [p for p in files.files_under(output) if p.startswith((".staging-", ".replaced-", "_LOCK"))]


def test_a_model_directory_on_gs_that_is_not_one_is_one_line(gcs):
    result = _label("--model", f"{gcs}/models/absent", "--input", f"{gcs}/archive/one/*.parquet", "--output",
                    f"{gcs}/labelled/other")
    assert result.exit_code == 2 and result.output.startswith("error: model directory gs://")
    assert "Traceback" not in result.output


def test_watched_models_on_gs_are_served_when_complete(gcs, model_dir, retrained_model_dir):
    from worker.slot import ModelSlot

    models = f"{gcs}/watched"
    first = artifact.copy_directory(model_dir, f"{models}/a")
    slot = ModelSlot(first)
    slot.watch(f"{models}/*", interval_secs=0)  # what is there at start is not new
    files.write_bytes(f"{models}/b/{artifact.LABELS_FILE}", b"[]")  # a copy in progress: no metadata.json yet
    slot.watch(f"{models}/*", interval_secs=0)
    assert slot.model_dir == first
    artifact.copy_directory(retrained_model_dir, f"{models}/b")
    slot.watch(f"{models}/*", interval_secs=0)
    assert slot.model_dir == f"{models}/b"
    assert slot.current.version == artifact.load(retrained_model_dir).version


def test_a_commit_failed_at_any_single_object_operation_on_gs_is_undone_exactly(gcs, monkeypatch):
    """Issue #39 on an object store: every copy, delete and write of a commit over multi-shard outputs failed
    in turn (a rename failing at its delete leaves both copies); after each, yesterday's output byte for byte
    with its _SUCCESS, or tonight's whole with its _SUCCESS."""
    from pipelines.plumbing import commit as out
    from tests.commits import fail_each_operation, leftovers, state

    counter = iter(range(1000))
    failed = 0
    for output, raised, reached in fail_each_operation(lambda: f"{gcs}/faults/{next(counter)}", monkeypatch,
                                                       lambda at: OSError(f"operation {at} failed"), True):
        if raised is None:
            assert state(output) == "tonight"
            if not reached:
                assert leftovers(output) == []
            continue
        assert isinstance(raised, out.CommitFailed) and raised.restored, raised
        assert state(output) == "yesterday", raised
        failed += 1
    assert failed > 8


def test_a_commit_killed_at_any_object_operation_on_gs_is_settled_by_the_next_start(gcs, monkeypatch):
    """Issue #51, item 1, on an object store: the commit killed at each copy, delete and journal write in turn,
    (every fourth, and the last), the next start killed at its first and second operations, then one that runs
    through: a whole night,
    yesterday's byte for byte or tonight's, and no journal, set-aside or staging object left. (Every restart
    kill point is tried on a local disk in tests/test_commit_faults.py; here the first two, for time.)"""
    from apache_beam.io.filesystems import FileSystems

    from tests.commits import kill_then_restart_killed, leftovers

    counter = iter(range(10_000))
    seen = {"yesterday": 0, "tonight": 0}
    for output, commit_at, restart_at, found in kill_then_restart_killed(
            lambda: f"{gcs}/kills/{next(counter)}", monkeypatch, True, restart_kills=2, stride=4):
        assert found in seen, (commit_at, restart_at, found)
        seen[found] += 1
        assert leftovers(output) == [], (commit_at, restart_at)
        hidden = [m.path for m in FileSystems.match([f"{output}/.*"])[0].metadata_list]
        assert hidden == [], (commit_at, restart_at, hidden)
    assert seen["yesterday"] > 4 and seen["tonight"]


def test_a_registered_model_whose_source_is_on_gs_is_resolved_and_staged_for_remote_workers(
        gcs, model_dir, tmp_path, monkeypatch):
    """Issue #42: the registry's artifacts on gs:// (the experiment's artifact location, as a team on GCP sets
    it), resolved to a checked local copy; a Dataflow job gets it staged under its gs:// temp location."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from model import registry
    from pipelines.served_model import served_from
    from tests.registries import client, register, sqlite_uri
    from worker.config import WorkerConfig

    monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path / "resolved"))
    uri = sqlite_uri(tmp_path)
    client(uri).create_experiment(registry.EXPERIMENT, artifact_location=f"{gcs}/mlartifacts")
    register(uri, model_dir, "complaints", "champion")
    resolved = registry.resolve("models:/complaints@champion", uri)
    assert resolved.lineage["source"].startswith(f"{gcs}/mlartifacts/")
    assert artifact.load(resolved.model_dir).version == artifact.load(model_dir).version
    metadata = artifact.read_metadata(resolved.model_dir)[1]
    options = PipelineOptions(["--runner", "DataflowRunner", "--temp_location", f"{gcs}/tmp"])
    worker = served_from(WorkerConfig(resolved.model_dir), metadata, options)
    assert worker.model_dir.startswith(f"{gcs}/tmp/complaints-models/complaints/1@champion-")
    staged = artifact.load(worker.model_dir)  # what a Dataflow worker loads
    assert staged.version == metadata["model_version"] and registry.lineage_of(staged.metadata)["version"] == "1"
    assert served_from(WorkerConfig(resolved.model_dir), metadata, options).model_dir == worker.model_dir  # once
