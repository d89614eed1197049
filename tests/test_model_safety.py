"""Model directories someone else wrote: refused in one line, by every command that loads one and by the swap."""

from __future__ import annotations

import json
import os
import shutil
import zipfile

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from model import artifact, files, safety
from pipelines.app.cli import cli
from worker.slot import ModelSlot


def _copy(model_dir, target) -> str:
    return artifact.copy_directory(model_dir, str(target))


def _save(model: keras.Model, directory: str) -> None:
    model.save(os.path.join(directory, artifact.MODEL_FILE))


def _with_config(directory: str, change) -> None:
    """Rewrite config.json inside model.keras (the weights and assets as they were)."""
    path = os.path.join(directory, artifact.MODEL_FILE)
    with zipfile.ZipFile(path) as original:
        entries = {name: original.read(name) for name in original.namelist()}
    config = json.loads(entries["config.json"])
    change(config)
    entries["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as rewritten:
        for name, data in entries.items():
            rewritten.writestr(name, data)


def _change_first(config, class_name: str, change) -> None:
    """Apply `change` to the first entry of `class_name` found in a Keras config."""
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("class_name") == class_name:
                change(item)
                return
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _set_vocabulary_path(config) -> None:
    _change_first(config, "TextVectorization", lambda item: item["config"].update(vocabulary="/etc/passwd"))


def lambda_model(model_dir, tmp_path) -> str:
    directory = _copy(model_dir, tmp_path / "lambda")
    inputs = keras.Input((3,))
    _save(keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs)), directory)
    return directory


def conv_model(model_dir, tmp_path) -> str:
    directory = _copy(model_dir, tmp_path / "conv")
    inputs = keras.Input((8, 2))
    _save(keras.Model(inputs, keras.layers.Conv1D(4, 3)(inputs)), directory)
    return directory


def vocabulary_path_model(model_dir, tmp_path) -> str:
    directory = _copy(model_dir, tmp_path / "vocabulary")
    _with_config(directory, _set_vocabulary_path)
    return directory


def changed_weights_model(model_dir, tmp_path) -> str:
    directory = _copy(model_dir, tmp_path / "changed")
    model = keras.models.load_model(os.path.join(model_dir, artifact.MODEL_FILE), compile=False)
    weights = model.get_weights()
    weights[-1] = weights[-1] + np.float32(0.5)  # the output bias, nudged after export
    model.set_weights(weights)
    _save(model, directory)
    return directory


def _register_dense_as_elsewhere(config) -> None:  # Keras would look the registered name up first
    _change_first(config, "Dense", lambda item: item.update(registered_name="someone_else>Dense"))


def registered_elsewhere_model(model_dir, tmp_path) -> str:
    directory = _copy(model_dir, tmp_path / "registered")
    _with_config(directory, _register_dense_as_elsewhere)
    return directory


CASES = [
    (lambda_model, "names the class 'Lambda'"),
    (registered_elsewhere_model, "registered as 'someone_else>Dense'"),
    (conv_model, "names the class 'Conv1D'"),
    (vocabulary_path_model, "vocabulary names the file '/etc/passwd'"),
    (changed_weights_model, "metadata.json says model"),
]


def _one_error_line(result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0], result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("make", "fragment"), CASES, ids=[c[0].__name__ for c in CASES])
def test_unsafe_or_altered_models_are_refused_everywhere(make, fragment, model_dir, loaded, tmp_path):
    bad = make(model_dir, tmp_path)
    runner = CliRunner()
    commands = {
        "predict": ["predict", "--model", bad, "kargo gelmedi"],
        "label": ["label", "--model", bad, "--input", str(tmp_path / "none/*.parquet"), "--output",
                  str(tmp_path / "out")],
        "stream": ["stream", "--model", bad, "--subscription", "projects/p/subscriptions/s", "--output-topic",
                   "projects/p/topics/t"],
        "serve": ["serve", "--model", bad, "--port", "1"],
        "evaluate": ["evaluate", "--model", bad, "--data", str(tmp_path / "none.parquet")],
    }
    for name, args in commands.items():
        result = runner.invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 2, (name, result.output)
        _one_error_line(result, fragment)
    slot = ModelSlot(model_dir)
    assert not slot.offer(bad) and slot.current.version == loaded.version  # the live job's swap


@pytest.mark.parametrize(("labels", "fragment"), [
    (["a", 1, None], "list of non-empty strings"),
    (["a", ""], "list of non-empty strings"),
    ({"0": "a"}, "list of non-empty strings"),
    (["a", "a"], "more than once"),
])
def test_labels_must_be_unique_non_empty_strings(labels, fragment, model_dir, tmp_path):
    bad = _copy(model_dir, tmp_path / "labels")
    artifact.write_json(os.path.join(bad, artifact.LABELS_FILE), labels)
    _one_error_line(CliRunner().invoke(cli, ["predict", "--model", bad, "kargo"]), fragment)


def test_oversize_files_are_refused_before_they_are_read(model_dir, tmp_path, monkeypatch):
    big_labels = _copy(model_dir, tmp_path / "big-labels")
    with open(os.path.join(big_labels, artifact.LABELS_FILE), "w") as f:
        json.dump(["x" * (safety.MAX_LABELS_BYTES + 1)], f)
    _one_error_line(CliRunner().invoke(cli, ["predict", "--model", big_labels, "kargo"]), "bytes, over the")
    monkeypatch.setattr(safety, "MAX_METADATA_BYTES", 100)  # rather than write 64 MB
    _one_error_line(CliRunner().invoke(cli, ["predict", "--model", _copy(model_dir, tmp_path / "meta"), "k"]),
                    "metadata.json is")


@pytest.mark.parametrize(("key", "value"), [("model_version", 12), ("n_classes", "32"), ("locale", None)])
def test_metadata_fields_are_checked_by_type(key, value, model_dir, tmp_path):
    bad = _copy(model_dir, tmp_path / "meta")
    path = os.path.join(bad, artifact.METADATA_FILE)
    metadata = json.load(open(path))
    metadata[key] = value
    artifact.write_json(path, metadata)
    _one_error_line(CliRunner().invoke(cli, ["predict", "--model", bad, "kargo"]), f"'{key}' must be")


def test_the_projects_own_architectures_pass(model_dir, linear_trained):
    for directory in (model_dir, linear_trained[0]):
        path = os.path.join(directory, artifact.MODEL_FILE)
        assert safety.checked_model_bytes(path) == open(path, "rb").read()


def test_the_bytes_checked_are_the_bytes_loaded(model_dir, tmp_path, monkeypatch):
    """model.keras is read once: a file swapped for another after the check is never what Keras loads."""
    directory = _copy(model_dir, tmp_path / "once")
    path = os.path.join(directory, artifact.MODEL_FILE)
    reads, real_read = [], files.read_bytes
    lambda_bytes = open(os.path.join(lambda_model(model_dir, tmp_path), artifact.MODEL_FILE), "rb").read()

    def read_then_swap(name):
        data = real_read(name)
        if name == path:
            reads.append(name)
            with open(path, "wb") as f:  # an attacker's file lands right after the check's read
                f.write(lambda_bytes)
        return data

    monkeypatch.setattr(files, "read_bytes", read_then_swap)
    monkeypatch.setattr(artifact, "_LOADED", {})
    loaded = artifact.load(directory)
    assert reads == [path]
    assert loaded.labels == artifact.load(model_dir).labels and len(loaded.model.layers) > 2


def test_a_model_file_that_is_not_a_zip_is_one_line(model_dir, tmp_path):
    bad = _copy(model_dir, tmp_path / "notzip")
    shutil.copy(os.path.join(bad, artifact.LABELS_FILE), os.path.join(bad, artifact.MODEL_FILE))
    _one_error_line(CliRunner().invoke(cli, ["predict", "--model", bad, "kargo"]), "not a Keras model file")


def test_watched_directories_reached_through_links_are_passed_over(model_dir, tmp_path, caplog):
    watched = tmp_path / "models"
    watched.mkdir()
    real = _copy(model_dir, watched / "real")
    os.symlink(model_dir, watched / "linked-dir")
    partly = _copy(model_dir, watched / "linked-file")
    os.remove(os.path.join(partly, artifact.MODEL_FILE))
    os.symlink(os.path.join(model_dir, artifact.MODEL_FILE), os.path.join(partly, artifact.MODEL_FILE))
    assert artifact.complete_directories(str(watched / "*")) == [real]
    assert "linked-dir is a symbolic link" in caplog.text and "linked-file/model.keras" in caplog.text
