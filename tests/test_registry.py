"""Models from an MLflow registry (issue #42): register, resolve, promote, follow an alias, lineage.

Against real stores: MLflow's SQLite registry in-process for the commands and both
jobs, and a real `mlflow server` (its own environment, tests/tool_envs.py; loopback
only) for the resolution and the alias watch, including the server going down.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pyarrow.parquet as pq
import pytest

from model import artifact, registration, registry
from model.errors import UserError
from model.sample import generate
from pipelines.app.cli import cli
from pipelines.app.files import write_frame
from pipelines.app.pubsub_admin import free_port
from tests.commands import invoke, one_error
from tests.registries import MlflowServer, client, register, sqlite_uri
from tests.registries import stored as stored_dir

NAME = "complaints"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Resolved copies go to this test's folder; no registry unless a test names one."""
    monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path / "resolved"))
    monkeypatch.delenv(registry.ENV, raising=False)


@pytest.fixture
def two_versions(tmp_path, model_dir, retrained_model_dir):
    """A SQLite registry: version 1 (the session model) @champion, version 2 (a retrain) @challenger."""
    uri = sqlite_uri(tmp_path)
    assert register(uri, model_dir, NAME, "champion") == "1"
    assert register(uri, retrained_model_dir, NAME, "challenger") == "2"
    return uri


def version_of(model_dir: str) -> str:
    return artifact.read_metadata(model_dir)[1]["model_version"]


@pytest.mark.parametrize("path", ["models:/", "models:/x", "models:/x@", "models:/@a", "models:/x/0", "models:/x/1/2",
                                  "models:/x@a b", "models:/x/y@a", "runs:/abc/model", "x@champion"])
def test_a_path_that_names_no_registered_model_is_one_line(path):
    with pytest.raises(UserError, match=r"models:/NAME@ALIAS or models:/NAME/VERSION|deprecated"):
        registry.Reference.parse(path)


def test_the_forms_a_user_writes_are_read():
    assert registry.Reference.parse("models:/complaints@champion") == registry.Reference("complaints", alias="champion")
    assert registry.Reference.parse("models:/tr complaints/07") == registry.Reference("tr complaints", version="7")
    with pytest.raises(UserError, match=r"stages .* are deprecated"):
        registry.Reference.parse("models:/complaints/Production")


def test_a_models_path_without_a_registry_is_one_line_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = set(os.listdir(tmp_path))
    one_error(invoke("predict", "--model", "models:/complaints@champion", "a complaint"), "--registry-uri",
              "MLFLOW_TRACKING_URI")
    assert set(os.listdir(tmp_path)) == before  # MLflow left alone would have made ./mlruns or mlflow.db
    one_error(invoke("promote", NAME, "--version", 1, "--alias", "champion"), "--registry-uri")
    one_error(invoke("predict", "--model", "models:/c@champion", "--registry-uri", "registry-folder", "x"),
              "is not a registry")


@pytest.mark.slow  # trains a model
def test_train_registers_its_run_and_a_tagged_version_and_moves_the_alias(tmp_path):
    data = tmp_path / "d.parquet"
    write_frame(generate(600, seed=4), str(data))
    uri = sqlite_uri(tmp_path / "reg")
    os.makedirs(tmp_path / "reg")
    args = ["train", "--data", data, "--epochs", 1, "--max-tokens", 500, "--lstm-units", 4, "--dense-units", 4,
            "--embedding-dim", 4, "--architecture", "bilstm", "--no-refit", "--quiet", "--registry-uri", uri]
    one_error(invoke(*args, "--out", tmp_path / "x", "--alias", "challenger"), "--register NAME")
    closed = f"http://127.0.0.1:{free_port()}"
    one_error(invoke(*args[:-2], "--out", tmp_path / "y", "--register", NAME, "--registry-uri", closed),
              "did not answer")
    assert not (tmp_path / "y").exists()  # refused before any training
    result = invoke(*args, "--out", tmp_path / "m", "--register", NAME, "--alias", "challenger")
    assert result.exit_code == 0, result.output
    assert f"as models:/{NAME}/1 in {uri}" in result.output and "@challenger now points at it" in result.output
    mlflow = client(uri)
    version = mlflow.get_model_version_by_alias(NAME, "challenger")
    metadata = artifact.read_metadata(str(tmp_path / "m"))[1]
    assert str(version.version) == "1" and version.tags["model_version"] == metadata["model_version"]
    run = mlflow.get_run(version.run_id)
    assert run.data.params["epochs"] == "1" and run.data.params["lstm_units"] == "4"
    assert run.data.metrics["test_accuracy"] == pytest.approx(metadata["test_metrics"]["accuracy"])
    assert "test_ece_after" in run.data.metrics
    logged = {a.path for a in mlflow.list_artifacts(run.info.run_id, "model")}  # an MLflow Model (#53 item 1)
    assert {"model/MLmodel", "model/data", "model/code", "model/requirements.txt", "model/input_example.json"} <= logged
    inside = {a.path for a in mlflow.list_artifacts(run.info.run_id, "model/data/m")}
    assert {"model/data/m/model.keras", "model/data/m/metadata.json", "model/data/m/labels.json"} <= inside
    assert any(a.path.endswith(".png") for a in mlflow.list_artifacts(run.info.run_id, "report"))
    assert not glob.glob(str(tmp_path / "mlruns")) and (tmp_path / "reg" / "mlartifacts").is_dir()
    again = invoke(*args, "--out", tmp_path / "m2", "--register", NAME, "--alias", "challenger", "--seed", 9)
    assert "(it was version 1)" in again.output and f"models:/{NAME}/2" in again.output


def test_every_command_that_takes_a_model_takes_a_registered_one():
    for name, command in cli.commands.items():
        options = {o for p in command.params for o in p.opts}
        if "--model" in options:
            assert "--registry-uri" in options, name
            model = next(p for p in command.params if "--model" in p.opts)
            assert "models:/" in (model.help or ""), name


def test_predict_evaluate_compare_and_precision_resolve_registered_models(two_versions, model_dir,
                                                                         retrained_model_dir, tmp_path):
    uri = two_versions
    answer = invoke("predict", "--model", f"models:/{NAME}@champion", "--registry-uri", uri, "--json",
                    "kargom gelmedi")
    assert answer.exit_code == 0, answer.output
    assert json.loads(answer.output.splitlines()[-1])["model_version"] == version_of(model_dir)
    data = tmp_path / "labelled.parquet"
    write_frame(generate(300, seed=8), str(data))
    evaluated = invoke("evaluate", "--model", f"models:/{NAME}/2", "--registry-uri", uri, "--data", data,
                       "--report-dir", tmp_path / "eval")
    assert evaluated.exit_code == 0, evaluated.output
    compared = invoke("compare", "--model", f"models:/{NAME}@champion", "--model", f"models:/{NAME}@challenger",
                      "--registry-uri", uri, "--data", data, "--report-dir", tmp_path / "cmp")
    assert compared.exit_code == 0, compared.output
    report = json.load(open(tmp_path / "cmp" / "compare.json"))
    assert version_of(model_dir) in json.dumps(report) and version_of(retrained_model_dir) in json.dumps(report)
    stored = os.path.join(stored_dir(uri, "1"), "metadata.json")
    registered_bytes = open(stored, "rb").read()
    measured = invoke("precision", "--model", f"models:/{NAME}@champion", "--registry-uri", uri, "--data", data,
                      "--max-rows", 200)
    assert measured.exit_code == 0, measured.output
    assert "the precisions tag of complaints@champion version 1" in measured.output
    tagged = json.loads(client(uri).get_model_version(NAME, "1").tags["precisions"])
    assert "fp32" not in tagged and tagged  # lower precisions only, each measured against FP32
    assert open(stored, "rb").read() == registered_bytes  # the registered files were not rewritten
    os.environ[registry.CACHE_ENV] = str(tmp_path / "another-machine")  # restored by _own_cache's monkeypatch
    fresh = registry.resolve(f"models:/{NAME}/1", uri)
    assert artifact.read_metadata(fresh.model_dir)[1]["precisions"] == tagged  # what auto reads, anywhere


def test_the_nightly_job_records_the_registered_version_that_labelled_it(two_versions, model_dir, tmp_path):
    archive = tmp_path / "night.parquet"
    write_frame(generate(400, seed=3, labelled=False), str(archive))
    result = invoke("label", "--model", f"models:/{NAME}@champion", "--registry-uri", two_versions,
                    "--input", archive, "--output", tmp_path / "out", "--no-progress")
    assert result.exit_code == 0, result.output
    assert f"({NAME}@champion version 1 from {two_versions})" in result.output
    summary = json.load(open(tmp_path / "out" / "summary.json"))
    lineage = {"registry": two_versions, "name": NAME, "version": "1", "alias": "champion",
               "model_version": version_of(model_dir)}
    assert {k: summary["registry"][k] for k in lineage} == lineage and summary["model_version"] == lineage[
        "model_version"]
    written = glob.glob(str(tmp_path / "out" / "*.parquet"))
    assert any("dead_letters-" in path for path in written)  # the sample archive has a few
    for path in written:
        footer = json.loads(pq.read_schema(path).metadata[b"complaints.registry"])
        assert {k: footer[k] for k in lineage} == lineage
        if "predictions-" in path:
            assert set(pd.read_parquet(path)["model_version"]) == {lineage["model_version"]}


def test_a_registered_challenger_shadows_the_champions_night(two_versions, model_dir, retrained_model_dir, tmp_path):
    _shadow_night(two_versions, model_dir, retrained_model_dir, tmp_path)


def _shadow_night(uri: str, model_dir: str, challenger_dir: str, tmp_path) -> None:
    """`label --model models:/…@champion --shadow models:/…@challenger` (#53 items 6, 7): each model's files carry
    its own registered version, and the summary names the challenger's."""
    archive, output = tmp_path / "shadowed.parquet", tmp_path / "shadowed"
    write_frame(generate(300, seed=4, labelled=False), str(archive))
    result = invoke("label", "--model", f"models:/{NAME}@champion", "--shadow", f"models:/{NAME}@challenger",
                    "--registry-uri", uri, "--input", archive, "--output", output, "--no-progress")
    assert result.exit_code == 0, result.output
    summary = json.load(open(output / "summary.json"))
    assert summary["registry"]["alias"] == "champion" and summary["shadow"]["registry"]["alias"] == "challenger"
    assert summary["shadow"]["model_version"] == version_of(challenger_dir) != summary["model_version"]
    assert summary["shadow"]["rows"] == summary["predicted"] > 0
    for kind, alias, version in (("predictions", "champion", model_dir), ("shadow", "challenger", challenger_dir)):
        for path in glob.glob(str(output / f"{kind}-*.parquet")):
            footer = json.loads(pq.read_schema(path).metadata[b"complaints.registry"])
            assert footer["alias"] == alias and footer["model_version"] == version_of(version)


def test_promote_moves_the_alias_says_who_held_it_and_moving_it_back_rolls_back(two_versions, model_dir,
                                                                                retrained_model_dir):
    uri = two_versions

    def served() -> str:
        answer = invoke("predict", "--model", f"models:/{NAME}@champion", "--registry-uri", uri, "--json", "iade")
        return json.loads(answer.output.splitlines()[-1])["model_version"]

    assert served() == version_of(model_dir)
    moved = invoke("promote", NAME, "--version", 2, "--alias", "champion", "--registry-uri", uri)
    assert moved.exit_code == 0 and f"models:/{NAME}@champion → version 2 (it was version 1)" in moved.output
    assert served() == version_of(retrained_model_dir)
    assert "(it was version 2)" in invoke("promote", NAME, "--version", 1, "--alias", "champion",
                                          "--registry-uri", uri).output
    assert served() == version_of(model_dir)
    assert "(it was free)" in invoke("promote", NAME, "--version", 1, "--alias", "stable", "--registry-uri",
                                     uri).output
    one_error(invoke("promote", NAME, "--version", 9, "--alias", "champion", "--registry-uri", uri), "not found")
    one_error(invoke("promote", "nobody", "--version", 1, "--alias", "champion", "--registry-uri", uri), "not found")
    one_error(invoke("promote", NAME, "--version", 1, "--alias", "latest", "--registry-uri", uri), "reserves")


def test_a_version_whose_tag_or_files_do_not_match_is_refused(two_versions, tmp_path):
    uri, mlflow = two_versions, client(two_versions)
    first = mlflow.get_model_version(NAME, "1")
    mlflow.create_model_version(NAME, source=first.source, run_id=first.run_id, tags={"model_version": "0123abcd"})
    one_error(invoke("predict", "--model", f"models:/{NAME}/3", "--registry-uri", uri, "x"),
              "tagged model_version=0123abcd", "register the model again")
    mlflow.create_model_version(NAME, source=first.source, run_id=first.run_id)
    one_error(invoke("predict", "--model", f"models:/{NAME}/4", "--registry-uri", uri, "x"), "no model_version tag")
    # the registered weights replaced behind the registry's back: metadata and weights no longer agree
    stored = stored_dir(uri, "1")
    shutil.copy(os.path.join(stored_dir(uri, "2"), "model.keras"),
                os.path.join(stored, "model.keras"))
    one_error(invoke("predict", "--model", f"models:/{NAME}/1", "--registry-uri", uri, "x"),
              "version 1", "registered model.keras does not match", "files_sha256")


def test_a_registered_file_edited_or_added_after_registration_is_refused_naming_it(two_versions, tmp_path):
    """#53 item 2: every file is pinned by the version's files_sha256 tag, the layer config included (the
    model_version tag hashes weights, vocabulary, labels and locale only)."""
    _refuses_changed_registered_files(two_versions, stored_dir(two_versions, "2"))


def _refuses_changed_registered_files(uri: str, stored: str) -> None:
    pinned = json.loads(client(uri).get_model_version(NAME, "2").tags[registry.FILES_TAG])
    assert {artifact.MODEL_FILE, artifact.METADATA_FILE} <= set(pinned) and pinned == registry.file_digests(stored)
    with open(os.path.join(stored, "notes.txt"), "w") as f:
        f.write("added after registration")
    one_error(invoke("predict", "--model", f"models:/{NAME}/2", "--registry-uri", uri, "x"), "version 2",
              "notes.txt")
    os.remove(os.path.join(stored, "notes.txt"))
    path = os.path.join(stored, artifact.METADATA_FILE)
    original = open(path, "rb").read()
    metadata = json.loads(original)
    metadata["temperature"] = 0.5  # what a hand edit of the calibration would do
    json.dump(metadata, open(path, "w", encoding="utf-8"))
    one_error(invoke("predict", "--model", f"models:/{NAME}/2", "--registry-uri", uri, "x"), "metadata.json")
    open(path, "wb").write(original)  # as registered again: served
    assert invoke("predict", "--model", f"models:/{NAME}/2", "--registry-uri", uri, "x").exit_code == 0


def test_a_registered_version_is_an_mlflow_model_whose_pyfunc_answers_as_predict_does(two_versions, monkeypatch):
    """#53 item 1: MLflow's own loader serves the version (signature, input example, requirements), with the
    verdicts `complaints predict` gives, row for row, dead letters included."""
    import mlflow.pyfunc
    import pandas as pd

    monkeypatch.setenv(registry.ENV, two_versions)
    loaded = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    assert [c.name for c in loaded.metadata.get_input_schema().inputs] == ["text"]
    assert {"category", "confidence", "top_k", "needs_review", "model_version", "dead_letter"} == {
        c.name for c in loaded.metadata.get_output_schema().inputs}
    texts = ["Kargom 10 gündür gelmedi, iade istiyorum", "", "Faturama izinsiz ücret yansıtıldı", "x" * 60_000,
             "Otel odası kirliydi 🙂"]
    answered = loaded.predict(pd.DataFrame({"text": texts}))
    result = invoke("predict", "--model", f"models:/{NAME}@champion", "--registry-uri", two_versions, "--json",
                    *texts)
    lines = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert len(lines) == len(answered) == len(texts)
    for row, line in zip(answered.to_dict("records"), lines, strict=True):
        if "dead_letter" in line:
            assert row["dead_letter"].startswith(line["dead_letter"]["reason"]) and pd.isna(row["category"])
            continue
        assert (row["category"], row["needs_review"], row["model_version"]) == (
            line["label"], line["needs_review"], line["model_version"])
        assert row["confidence"] == pytest.approx(line["confidence"], abs=1e-6)
        assert [t["label"] for t in row["top_k"]] == [t["label"] for t in line["top_k"]]
    assert answered["dead_letter"].notna().sum() == 1  # the empty text, as the jobs would dead-letter it


def test_a_directory_exported_earlier_is_registered_with_its_lineage(model_dir, tmp_path):
    """#53 item 3: `complaints register DIR --name` (after a registration that failed, or for a model trained
    elsewhere); the run carries the training data as an MLflow dataset input, the source commit, the held-out
    metrics and the report files."""
    uri = sqlite_uri(tmp_path)
    result = invoke("register", model_dir, "--name", NAME, "--alias", "challenger", "--registry-uri", uri)
    assert result.exit_code == 0, result.output
    assert f"as models:/{NAME}/1" in result.output and "@challenger now points at it" in result.output
    mlflow = client(uri)
    run = mlflow.get_run(mlflow.get_model_version_by_alias(NAME, "challenger").run_id)
    metadata = artifact.read_metadata(model_dir)[1]
    [given] = run.inputs.dataset_inputs
    assert given.dataset.digest == metadata["training"]["data_fingerprint"]
    assert json.loads(given.dataset.profile)["num_rows"] == metadata["training"]["rows"]
    assert re.fullmatch(r"[0-9a-f]{40}", run.data.tags.get("mlflow.source.git.commit", ""))
    assert run.data.metrics["test_macro_f1"] == pytest.approx(metadata["test_metrics"]["macro_f1"])
    assert run.data.metrics["test_ece"] == pytest.approx(metadata["test_metrics"]["ece"])
    assert any(a.path.endswith("reliability.png") for a in mlflow.list_artifacts(run.info.run_id, "report"))
    (tmp_path / "broken").mkdir()
    one_error(invoke("register", tmp_path / "broken", "--name", NAME, "--registry-uri", uri), "broken")


def test_a_changed_cached_copy_is_discarded_and_fetched_again_with_one_warning(two_versions, model_dir, caplog):
    """#53 item 2: the registry is the source of truth; a cached model.keras with one byte changed (a bad disk,
    a hand edit) is never the reason a night fails."""
    first = registry.resolve(f"models:/{NAME}@champion", two_versions)
    weights = os.path.join(first.model_dir, artifact.MODEL_FILE)
    with open(weights, "r+b") as f:
        f.seek(os.path.getsize(weights) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    with caplog.at_level("WARNING", logger="model.registry"):
        again = registry.resolve(f"models:/{NAME}@champion", two_versions)
    warned = [r.getMessage() for r in caplog.records if "cached copy" in r.getMessage()]
    assert len(warned) == 1 and "model.keras" in warned[0] and "fetching the registered one again" in warned[0]
    assert artifact.load(again.model_dir).version == version_of(model_dir)
    result = invoke("predict", "--model", f"models:/{NAME}@champion", "--registry-uri", two_versions, "kargo")
    assert result.exit_code == 0, result.output


def test_a_deleted_version_is_one_line_and_its_cached_copy_is_not_served(two_versions):
    uri = two_versions
    assert invoke("predict", "--model", f"models:/{NAME}/2", "--registry-uri", uri, "x").exit_code == 0
    client(uri).delete_model_version(NAME, "2")
    one_error(invoke("predict", "--model", f"models:/{NAME}/2", "--registry-uri", uri, "x"), "not found")
    one_error(invoke("predict", "--model", f"models:/{NAME}@challenger", "--registry-uri", uri, "x"), "challenger")


def test_a_resolved_copy_is_reused_and_a_changed_one_downloaded_again(two_versions, model_dir):
    first = registry.resolve(f"models:/{NAME}@champion", two_versions)
    stamp = os.stat(os.path.join(first.model_dir, artifact.MODEL_FILE)).st_mtime_ns
    assert registry.resolve(f"models:/{NAME}@champion", two_versions).model_dir == first.model_dir
    assert os.stat(os.path.join(first.model_dir, artifact.MODEL_FILE)).st_mtime_ns == stamp  # not downloaded again
    artifact.add_to_metadata(first.model_dir, "model_version", "tampered")
    again = registry.resolve(f"models:/{NAME}@champion", two_versions)
    assert again.model_dir == first.model_dir and version_of(again.model_dir) == version_of(model_dir)
    assert artifact.load(again.model_dir).version == version_of(model_dir)


def _follow_through(uri: str, model_dir: str, retrained_model_dir: str):
    """The live job's alias watch, in-process: nothing new, a promotion, a rollback."""
    from worker.slot import ModelSlot

    slot = ModelSlot(registry.resolve(f"models:/{NAME}@champion", uri).model_dir, xla=False)
    assert not slot.follow(f"models:/{NAME}@champion", uri)  # already serving the version it points at
    registration.promote(NAME, "2", "champion", uri)
    assert slot.follow(f"models:/{NAME}@champion", uri) and slot.current.version == version_of(retrained_model_dir)
    registration.promote(NAME, "1", "champion", uri)
    assert slot.follow(f"models:/{NAME}@champion", uri) and slot.current.version == version_of(model_dir)
    return slot


def test_the_alias_watch_follows_promotions_and_rollbacks_on_sqlite(two_versions, model_dir, retrained_model_dir):
    _follow_through(two_versions, model_dir, retrained_model_dir)


@pytest.mark.slow  # a real MLflow server (its environment is built on first use, then cached)
def test_a_real_mlflow_server_resolves_registers_and_is_followed_through_an_outage(
        tmp_path, model_dir, retrained_model_dir):
    from worker import telemetry

    server = MlflowServer(tmp_path).start()
    try:
        uri = server.uri
        assert register(uri, model_dir, NAME, "champion") == "1"
        assert register(uri, retrained_model_dir, NAME, "challenger") == "2"
        resolved = registry.resolve(f"models:/{NAME}@challenger", uri)
        assert resolved.lineage["source"].startswith("mlflow-artifacts:")  # proxied by the server, not a path
        assert artifact.load(resolved.model_dir).version == version_of(retrained_model_dir)
        _served_by_mlflow_and_healed(uri, resolved, retrained_model_dir)
        _shadow_night(uri, model_dir, retrained_model_dir, tmp_path)
        os.environ[registry.CACHE_ENV] = str(tmp_path / "fresh-cache")  # restored by _own_cache's monkeypatch
        _refuses_changed_registered_files(uri, server.stored("2"))
        _restaged_on_a_changed_tag(uri, tmp_path)
        slot = _follow_through(uri, model_dir, retrained_model_dir)
        server.stop()
        before = telemetry.REGISTRY_UNREACHABLE._value.get()
        assert not slot.follow(f"models:/{NAME}@champion", uri)  # down: counted, logged, still serving
        assert telemetry.REGISTRY_UNREACHABLE._value.get() == before + 1
        assert slot.current.version == version_of(model_dir)
        one_error(invoke("predict", "--model", f"models:/{NAME}@champion", "--registry-uri", uri, "x"),
                  "did not answer")
        server.start()  # back, with the same store
        registration.promote(NAME, "2", "champion", uri)
        assert slot.follow(f"models:/{NAME}@champion", uri)
        assert slot.current.version == version_of(retrained_model_dir)
    finally:
        server.stop()


def _served_by_mlflow_and_healed(uri: str, resolved, model_dir: str) -> None:
    """Through the server: MLflow's own pyfunc loader serves the version, and a changed cached copy is fetched
    again (#53 items 1, 2, 7)."""
    import mlflow.pyfunc
    import pandas as pd

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(registry.ENV, uri)
        answered = mlflow.pyfunc.load_model(f"models:/{NAME}@challenger").predict(pd.DataFrame({"text": ["kargo"]}))
    assert answered["model_version"].tolist() == [version_of(model_dir)]
    with open(os.path.join(resolved.model_dir, "labels.json"), "a") as f:
        f.write(" ")
    again = registry.resolve(f"models:/{NAME}@challenger", uri)
    assert registry.file_digests(again.model_dir) == json.loads(
        client(uri).get_model_version(NAME, "2").tags[registry.FILES_TAG])


def test_a_remote_runner_gets_a_staged_copy_and_never_the_launchers_disk(two_versions, tmp_path):
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.served_model import served_from
    from worker.config import WorkerConfig

    resolved = registry.resolve(f"models:/{NAME}@champion", two_versions)
    metadata = artifact.read_metadata(resolved.model_dir)[1]
    local = served_from(WorkerConfig(resolved.model_dir), metadata, PipelineOptions(["--runner", "DirectRunner"]))
    assert local.model_dir == resolved.model_dir and json.loads(local.lineage)["version"] == "1"
    with pytest.raises(UserError, match="--temp_location gs://"):
        served_from(WorkerConfig(resolved.model_dir), metadata,
                    PipelineOptions(["--runner", "DataflowRunner", "--temp_location", str(tmp_path / "tmp")]))
    plain = {"model_version": "x"}  # a model given as a directory: nothing to stage, no lineage
    assert served_from(WorkerConfig("m"), plain, PipelineOptions(["--runner", "DataflowRunner"])) == WorkerConfig("m")


def test_a_changed_precision_record_is_staged_anew_for_remote_workers(two_versions, tmp_path):
    """#53 item 4: the staged copy follows the version's records; the workers never serve a precision the
    launcher's current record forbids."""
    _restaged_on_a_changed_tag(two_versions, tmp_path)


def _restaged_on_a_changed_tag(uri: str, tmp_path) -> None:
    from model import precision

    resolved = registry.resolve(f"models:/{NAME}@champion", uri)
    first = registry.stage(resolved.model_dir, str(tmp_path / "staging"), resolved.lineage)
    assert registry.stage(resolved.model_dir, str(tmp_path / "staging"), resolved.lineage) == first  # once
    registry.record_measurements(resolved.lineage, {"bf16": {"agreement": 0.5, "allowed": False}}, uri)
    again = registry.resolve(f"models:/{NAME}@champion", uri)
    second = registry.stage(again.model_dir, str(tmp_path / "staging"), again.lineage)
    assert second != first
    staged = artifact.read_metadata(second)[1][precision.RECORD_KEY]
    assert staged == {"bf16": {"agreement": 0.5, "allowed": False}}


@pytest.mark.slow  # a whole night in a child process
def test_an_alias_moved_during_a_night_leaves_the_night_on_the_version_it_started_with(
        two_versions, model_dir, tmp_path):
    archive = tmp_path / "night.parquet"
    write_frame(generate(30_000, seed=5, labelled=False), str(archive))
    output = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines", "label", "--model", f"models:/{NAME}@champion", "--registry-uri",
         two_versions, "--input", str(archive), "--output", str(output), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        cwd=os.path.dirname(os.path.dirname(__file__)))
    try:
        deadline = time.monotonic() + 180
        while not glob.glob(str(output / ".staging-*")):
            assert process.poll() is None and time.monotonic() < deadline, process.stdout.read().decode()
            time.sleep(0.05)
        registration.promote(NAME, "2", "champion", two_versions)  # while the night works
        assert process.wait(timeout=300) == 0, process.stdout.read().decode()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    summary = json.load(open(output / "summary.json"))
    assert summary["registry"]["version"] == "1" and summary["model_version"] == version_of(model_dir)
    labelled = pd.concat(pd.read_parquet(p) for p in glob.glob(str(output / "predictions-*.parquet")))
    assert set(labelled["model_version"]) == {version_of(model_dir)} and len(labelled) == summary["predicted"]
