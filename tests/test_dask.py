"""The nightly job on a real Dask cluster (`distributed.LocalCluster`, two worker processes) (issue #28, item 1)."""

from __future__ import annotations

import json
import os

import apache_beam as beam
import numpy as np
import pytest
from click.testing import CliRunner

from pipelines.app.cli import cli
from tests.archives import write_archive
from tests.test_batch import read_output

distributed = pytest.importorskip("distributed")  # the dask extra; .ci/run installs it

pytestmark = pytest.mark.slow  # a cluster of worker processes


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes of one thread each, on loopback, started and stopped here."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address="127.0.0.1:0") as running:
        yield running


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    directory = tmp_path_factory.mktemp("archive")
    write_archive(directory, rows=2500, files=3)
    return directory


def _label(model_dir, archive, output, *beam_args):
    result = CliRunner().invoke(cli, ["label", "--model", model_dir, "--input", os.path.join(archive, "*.parquet"),
                                      "--output", str(output), "--keep-columns", "store", "--no-progress",
                                      *beam_args])
    assert result.exit_code == 0, result.output
    return result.output


def test_the_nightly_job_on_dask_writes_what_the_local_runner_writes(model_dir, archive, cluster, tmp_path):
    shown = _label(model_dir, archive, tmp_path / "dask", "--runner", "DaskRunner", "--dask_client_address",
                   cluster.scheduler_address)
    _label(model_dir, archive, tmp_path / "local")
    assert f"scheduler {cluster.scheduler_address}" in shown and "dashboard http" in shown
    assert os.path.exists(tmp_path / "dask" / "_SUCCESS")
    (ours, our_letters, our_summary), (theirs, their_letters, their_summary) = (
        read_output(tmp_path / "dask"), read_output(tmp_path / "local"))
    # Every sink ran: predictions, dead letters and the run statistics behind the summary.
    assert len(ours) + len(our_letters) == our_summary["rows_in"] == 2500 and len(our_letters) == 3
    assert ours[["id", "label", "store", "needs_review"]].equals(theirs[["id", "label", "store", "needs_review"]])
    assert np.allclose(ours["confidence"], theirs["confidence"], atol=1e-6)
    key = ["id", "reason", "detail"]
    assert our_letters.sort_values(key)[key].reset_index(drop=True).equals(
        their_letters.sort_values(key)[key].reset_index(drop=True))
    for field in ("rows_in", "predicted", "dead_lettered", "dead_lettered_by_reason", "labels", "balanced",
                  "confidence_histogram", "length_histogram"):
        assert our_summary[field] == their_summary[field], field
    assert our_summary["drift"]["signals"] == their_summary["drift"]["signals"]
    assert sum(our_summary["precision"]["rows_by_precision"].values()) == our_summary["predicted"]  # from the workers


def test_each_worker_process_loads_the_model_once(model_dir, archive, cluster, tmp_path):
    _label(model_dir, archive, tmp_path / "out", "--runner", "DaskRunner", "--dask_client_address",
           cluster.scheduler_address, "--dask_npartitions", "6")
    with distributed.Client(cluster.scheduler_address) as client:
        from worker.slot import loads

        per_worker = client.run(loads)
    assert len(per_worker) == 2
    assert all(counts.get(model_dir, 0) <= 1 for counts in per_worker.values()), per_worker
    assert sum(counts.get(model_dir, 0) for counts in per_worker.values()) >= 1


class _Split(beam.DoFn):
    def process(self, n):
        yield beam.pvalue.TaggedOutput("odd", n) if n % 2 else n


class _LastInFinish(beam.DoFn):
    def start_bundle(self):
        self.seen = []

    def process(self, n):
        self.seen.append(n)

    def finish_bundle(self):
        from apache_beam.transforms.window import GlobalWindows

        yield GlobalWindows.windowed_value(sum(self.seen))


def test_every_branch_runs_outputs_stay_apart_and_finish_bundle_outputs_count(cluster, tmp_path):
    """The three gaps of Beam's own DaskRunner that pipelines/plumbing/dask_runner.py closes, in one small pipeline."""
    options = beam.options.pipeline_options.PipelineOptions(
        ["--runner", "pipelines.plumbing.dask_runner.DaskRunner", "--dask_client_address", cluster.scheduler_address])
    with beam.Pipeline(options=options) as p:
        split = p | beam.Create(list(range(10))) | beam.ParDo(_Split()).with_outputs("odd", main="even")
        split.even | "Evens" >> beam.Map(lambda n: n * 10) | "WriteEvens" >> beam.io.WriteToText(
            str(tmp_path / "evens"), shard_name_template="")
        split.odd | "Sum" >> beam.ParDo(_LastInFinish()) | "Total" >> beam.CombineGlobally(sum) \
            | "WriteOdds" >> beam.io.WriteToText(str(tmp_path / "odds"), shard_name_template="")
    assert sorted(int(line) for line in open(tmp_path / "evens")) == [0, 20, 40, 60, 80]
    assert [int(line) for line in open(tmp_path / "odds")] == [1 + 3 + 5 + 7 + 9]


def test_the_live_job_on_dask_is_refused_in_one_line(model_dir):
    result = CliRunner().invoke(cli, ["stream", "--model", model_dir, "--subscription",
                                      "projects/demo-project/subscriptions/complaints", "--output-topic",
                                      "projects/demo-project/topics/labelled", "--runner", "DaskRunner"])
    assert result.exit_code == 2 and "batch jobs only" in result.output
    assert "Traceback" not in result.output


def test_another_beam_version_is_refused_in_one_line(model_dir, archive, tmp_path, monkeypatch):
    """The runner's fixes reach into Beam internals of one version: another Beam is refused before any work."""
    monkeypatch.setattr(beam, "__version__", "2.78.0")
    result = CliRunner().invoke(cli, ["label", "--model", model_dir, "--input", os.path.join(archive, "*.parquet"),
                                      "--output", str(tmp_path / "out"), "--runner", "DaskRunner"])
    assert result.exit_code == 2 and "written for Apache Beam 2.77.x, and this is 2.78.0" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_the_client_is_closed_when_the_job_ends(cluster, tmp_path, monkeypatch):
    from pipelines.plumbing import dask_runner

    results = []
    real_run = dask_runner.DaskRunner.run_pipeline

    def keep(self, pipeline, options):
        results.append(real_run(self, pipeline, options))
        return results[-1]

    monkeypatch.setattr(dask_runner.DaskRunner, "run_pipeline", keep)
    options = beam.options.pipeline_options.PipelineOptions(
        ["--runner", dask_runner.DASK_RUNNER, "--dask_client_address", cluster.scheduler_address])
    with beam.Pipeline(options=options) as p:
        p | beam.Create([1, 2, 3]) | beam.Map(lambda n: n) | beam.io.WriteToText(str(tmp_path / "n"))
    assert len(results) == 1 and results[0].client.status == "closed"


def test_the_runner_name_the_options_recognise_is_the_runners_own():
    """`--runner DaskRunner` selects the class by its module's own constant; a move of the module or the class
    fails here, not silently on a user's cluster."""
    from pipelines import options
    from pipelines.plumbing import dask_runner

    assert dask_runner.DASK_RUNNER in options.DASK_RUNNERS
    module, _, name = dask_runner.DASK_RUNNER.rpartition(".")
    assert getattr(__import__(module, fromlist=[name]), name) is dask_runner.DaskRunner


def test_a_registered_model_labels_a_night_on_dask_and_the_footers_say_which(model_dir, archive, cluster, tmp_path,
                                                                            monkeypatch):
    """Issue #42: models:/NAME@ALIAS resolved on the launcher; the Dask workers load the plain copy."""
    import glob

    import pyarrow.parquet as pq

    from model import registry
    from tests.registries import register, sqlite_uri

    monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path / "resolved"))
    uri = sqlite_uri(tmp_path)
    register(uri, model_dir, "complaints", "champion")
    _label("models:/complaints@champion", archive, tmp_path / "out", "--registry-uri", uri, "--runner", "DaskRunner",
           "--dask_client_address", cluster.scheduler_address)
    summary = json.load(open(tmp_path / "out" / "summary.json"))
    assert summary["registry"]["version"] == "1" and summary["registry"]["alias"] == "champion"
    for path in glob.glob(str(tmp_path / "out" / "predictions-*.parquet")):
        assert json.loads(pq.read_schema(path).metadata[b"complaints.registry"])["name"] == "complaints"


def test_a_night_on_dask_lands_in_bigquery_as_its_files_hold_it(model_dir, archive, cluster, tmp_path):
    """Issue #41: the BigQuery load runs on the launcher after the Dask job, from the files it committed."""
    import pandas as pd

    from pipelines.plumbing import bigquery
    from tests.bigquery_server import PROJECT, bigquery_emulator

    with bigquery_emulator(tmp_path):
        client = bigquery.client(PROJECT)
        client.create_dataset(f"{PROJECT}.nights")
        table = f"{PROJECT}.nights.labels"
        for _ in range(2):  # the rerun replaces the night
            _label(model_dir, archive, tmp_path / "out", "--bigquery-table", table, "--night", "2026-12-01",
                   "--runner", "DaskRunner", "--dask_client_address", cluster.scheduler_address)
            found = pd.DataFrame([dict(r) for r in client.query(f"SELECT id, label, store, run_id FROM `{table}`")])
            ours, letters, _ = read_output(tmp_path / "out")
            assert sorted(found["id"]) == sorted(ours["id"]) and len(found) == 2497
            assert set(found["run_id"]) == {open(tmp_path / "out" / "_SUCCESS").read()}
            merged = found.merge(ours, on="id", suffixes=("", "_parquet"))
            assert (merged["label"] == merged["label_parquet"]).all()
            assert (merged["store"] == merged["store_parquet"]).all()
            count = next(iter(client.query(f"SELECT COUNT(*) AS n FROM `{table}_dead_letters`").result()))["n"]
            assert count == len(letters) == 3
