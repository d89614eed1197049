"""Swapping the served model in a running process: what is taken, what is refused, and why."""

from __future__ import annotations

import logging
import os
import shutil

import pyarrow as pa
import pytest

from model import artifact
from model.errors import UserError
from worker.config import WorkerConfig
from worker.handler import ComplaintModelHandler
from worker.slot import ModelSlot

pytestmark = pytest.mark.slow  # whole jobs, services or trainings: left out of `pytest -m "not slow"`


def test_a_model_with_the_same_labels_is_taken(model_dir, retrained_model_dir, loaded):
    slot = ModelSlot(model_dir)
    assert slot.current.version == loaded.version
    assert slot.offer(retrained_model_dir)
    retrained = artifact.load(retrained_model_dir)
    assert retrained.version != loaded.version
    assert slot.current.version == retrained.version and slot.model_dir == retrained_model_dir


def test_a_model_that_does_not_load_is_refused(model_dir, loaded, tmp_path):
    broken = artifact.copy_directory(model_dir, str(tmp_path / "broken"))
    with open(os.path.join(broken, artifact.MODEL_FILE), "wb") as f:
        f.write(b"not a keras file")
    slot = ModelSlot(model_dir)
    assert not slot.offer(broken)
    assert slot.current.version == loaded.version and slot.model_dir == model_dir


@pytest.mark.parametrize("change", ["other label set", "same labels, other order"])
def test_a_model_whose_labels_would_change_meaning_is_refused(change, model_dir, other_labels_model_dir, loaded,
                                                              tmp_path):
    candidate = other_labels_model_dir
    if change == "same labels, other order":
        candidate = artifact.copy_directory(model_dir, str(tmp_path / "reordered"))
        artifact.write_json(os.path.join(candidate, artifact.LABELS_FILE), list(reversed(loaded.labels)))
    slot = ModelSlot(model_dir)
    assert not slot.offer(candidate)
    assert slot.current.version == loaded.version


def test_the_watch_takes_the_newest_complete_directory_that_appears(model_dir, retrained_model_dir, loaded,
                                                                    tmp_path):
    models = tmp_path / "models"
    artifact.copy_directory(model_dir, str(models / "a"))
    slot = ModelSlot(str(models / "a"))
    slot.watch(str(models / "*"), interval_secs=0)  # what is there at start-up is not new
    os.makedirs(models / "b-partial")  # still being written: no metadata.json yet
    shutil.copy(os.path.join(retrained_model_dir, artifact.MODEL_FILE), models / "b-partial")
    slot.watch(str(models / "*"), interval_secs=0)
    assert slot.current.version == loaded.version
    artifact.copy_directory(retrained_model_dir, str(models / "b"))
    slot.watch(str(models / "*"), interval_secs=3600)
    assert slot.current.version == artifact.load(retrained_model_dir).version
    shutil.rmtree(models / "b-partial")
    artifact.copy_directory(model_dir, str(models / "c"))
    slot.watch(str(models / "*"), interval_secs=0)  # within the interval: not looked at yet
    assert slot.model_dir == str(models / "b")


def test_beams_model_update_hook_offers_the_new_model(model_dir, retrained_model_dir, other_labels_model_dir):
    """RunInference's model_metadata_pcoll calls update_model_path, then load_model."""
    handler = ComplaintModelHandler(WorkerConfig(model_dir))
    slot = handler.load_model()
    handler.update_model_path(os.path.join(retrained_model_dir, artifact.METADATA_FILE))  # as WatchFilePattern says it
    assert handler.load_model() is slot and slot.model_dir == retrained_model_dir
    handler.update_model_path(other_labels_model_dir)
    assert handler.load_model() is slot and slot.model_dir == retrained_model_dir  # refused: B keeps serving


def test_the_watch_falls_back_to_an_older_new_directory_when_the_newest_is_unfit(
        model_dir, retrained_model_dir, other_labels_model_dir, loaded, tmp_path):
    models = tmp_path / "models"
    artifact.copy_directory(model_dir, str(models / "a"))
    slot = ModelSlot(str(models / "a"))
    slot.watch(str(models / "*"), interval_secs=0)
    artifact.copy_directory(retrained_model_dir, str(models / "b"))
    artifact.copy_directory(other_labels_model_dir, str(models / "c"))
    os.utime(models / "c" / artifact.METADATA_FILE, (2e9, 2e9))  # c is the newest, and unfit
    slot.watch(str(models / "*"), interval_secs=0)
    assert slot.model_dir == str(models / "b")


def test_a_directory_copied_file_by_file_is_served_once_complete(model_dir, retrained_model_dir, loaded, tmp_path,
                                                                  caplog):
    """As `gcloud storage cp -r` may copy it: metadata.json first, then model.keras in two writes."""
    caplog.set_level(logging.INFO, logger="complaints.worker")
    models = tmp_path / "models"
    artifact.copy_directory(model_dir, str(models / "a"))
    slot = ModelSlot(str(models / "a"))
    slot.watch(str(models / "*"), interval_secs=0)
    arriving = models / "b"
    arriving.mkdir()
    for name in (artifact.METADATA_FILE, artifact.LABELS_FILE):
        shutil.copy(os.path.join(retrained_model_dir, name), arriving / name)
    slot.watch(str(models / "*"), interval_secs=0)  # no model.keras yet: refused
    assert slot.model_dir == str(models / "a")
    data = open(os.path.join(retrained_model_dir, artifact.MODEL_FILE), "rb").read()
    (arriving / artifact.MODEL_FILE).write_bytes(data[: len(data) // 2])
    slot.watch(str(models / "*"), interval_secs=0)  # half of it: refused again, since it changed
    assert slot.model_dir == str(models / "a")
    slot.watch(str(models / "*"), interval_secs=0)  # unchanged since: not offered again
    (arriving / artifact.MODEL_FILE).write_bytes(data)
    slot.watch(str(models / "*"), interval_secs=0)
    assert slot.model_dir == str(arriving) and slot.current.version == artifact.load(retrained_model_dir).version
    refusals = [r for r in caplog.records if r.getMessage().startswith("refused model")]
    assert len(refusals) == 2
    assert sum("changed since it was last considered" in r.getMessage() for r in caplog.records) == 2


def test_metadata_that_claims_other_weights_is_refused(model_dir, retrained_model_dir, loaded, tmp_path):
    """metadata.json of one export beside model.keras of another: the version is recomputed at load."""
    mixed = artifact.copy_directory(model_dir, str(tmp_path / "mixed"))
    shutil.copy(os.path.join(retrained_model_dir, artifact.MODEL_FILE), os.path.join(mixed, artifact.MODEL_FILE))
    with pytest.raises(UserError, match=r"metadata\.json says model"):
        artifact.load(mixed)
    slot = ModelSlot(model_dir)
    assert not slot.offer(mixed) and slot.current.version == loaded.version


def test_a_registry_that_never_answers_holds_the_watch_thread_never_the_batch(model_dir, loaded, monkeypatch):
    """#53 item 5: the poll, download, load and compile run beside the job. A registry that accepts the
    connection and never answers (a black hole) holds only the watch thread: the batch that found the look
    due is classified and returned while the poll is still waiting, and the next batch does not start another."""
    import socket
    import threading

    from worker import core

    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)  # connections complete in the kernel's backlog; nothing ever reads or answers them
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    try:
        config = WorkerConfig(model_dir, watch_models="models:/complaints@champion", watch_interval_secs=1,
                              registry_uri=f"http://127.0.0.1:{hole.getsockname()[1]}")
        handler = ComplaintModelHandler(config, warm_up=False)
        slot = handler.load_model()
        batch = core.Rows(["a", "b"], ["kargom gelmedi", "fatura yüksek"], pa.table({"_": [0, 0]}).select([]))
        [classified] = handler.run_inference(batch, slot)
        assert len(classified.predicted) == 2 and slot.current.version == loaded.version
        watching = [t for t in threading.enumerate() if t.name == "complaints-model-watch"]
        assert watching and watching[0].is_alive()  # the poll still waits on the registry; the batch did not
        [again] = handler.run_inference(batch, slot)
        assert len(again.predicted) == 2
        assert len([t for t in threading.enumerate() if t.name == "complaints-model-watch"]) == 1
    finally:
        hole.close()
