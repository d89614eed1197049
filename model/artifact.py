"""The model directory every later part loads: one end-to-end model plus its facts.

Layout:
    model.keras     raw strings in, class probabilities out (standardise + vectorise inside)
    labels.json     list: index → category name
    metadata.json   format version, model version, sizes, locale, data fingerprint, metrics …

Files go through `model.files`, so the same code reads a local directory or gs://.
Importing this module registers the standardisation functions (via model.text),
which is all `keras.models.load_model` needs: no pickled Python.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

import model.linear  # registers SublinearTfIdf for loading
import model.text  # noqa: F401  (registers the standardisation functions for loading)
from model import files, pretrained, safety  # pretrained: registers E5Embedding for loading
from model.errors import UserError

FORMAT_VERSION = 1
MODEL_FILE = "model.keras"
LABELS_FILE = "labels.json"
METADATA_FILE = "metadata.json"
REQUIRED_FILES = (MODEL_FILE, LABELS_FILE, METADATA_FILE)


@dataclass
class Artifact:
    """A loaded model directory."""

    model: keras.Model
    labels: list[str]
    metadata: dict
    path: str

    @property
    def version(self) -> str:
        return self.metadata["model_version"]

    @property
    def locale(self) -> str:
        return self.metadata["locale"]

    @classmethod
    def in_memory(cls, model: keras.Model, labels: list[str], locale: str) -> Artifact:
        """A model not yet exported, as `load` would give it back (training serves its test split with it)."""
        return cls(model, list(labels), {"model_version": model_version(model, labels, locale), "locale": locale},
                   "(not exported)")


join = files.join  # one path rule for the model directory, kept here for the callers that import it


def model_version(model: keras.Model, labels: list[str], locale: str) -> str:
    """A content id: the same weights, vocabulary, labels and locale give the same id."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    for layer in _walk(model):
        if isinstance(layer, keras.layers.TextVectorization):
            digest.update("\n".join(layer.get_vocabulary()).encode("utf-8"))
        if isinstance(layer, pretrained.E5Embedding):  # the encoder's weights are not the model's
            digest.update(layer.encoder.encode("ascii"))
    digest.update(json.dumps(labels, ensure_ascii=False).encode("utf-8"))
    digest.update(locale.encode("utf-8"))
    return digest.hexdigest()[:12]


def _walk(layer: keras.layers.Layer):
    yield layer
    for sub in getattr(layer, "layers", []):
        yield from _walk(sub)


def save(directory: str, model: keras.Model, labels: list[str], metadata: dict,
         extra_files: dict[str, bytes] | None = None) -> dict:
    """Write the artifact; `metadata` gains the format, version and environment facts.

    `extra_files` (the drift reference) are written before metadata.json, like the rest."""
    files.makedirs(directory)
    locale = metadata["locale"]
    full = {
        "format_version": FORMAT_VERSION,
        "model_version": model_version(model, labels, locale),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "n_classes": len(labels),
        **metadata,
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }
    local_model = directory if not files.remote(directory) else None
    if local_model is not None:
        model.save(join(directory, MODEL_FILE))
    else:  # Keras writes .keras files locally; copy up to remote filesystems.
        tmp = f"/tmp/{full['model_version']}.keras"
        model.save(tmp)
        files.copy(tmp, join(directory, MODEL_FILE))
        os.remove(tmp)
    write_json(join(directory, LABELS_FILE), labels)
    for name, content in (extra_files or {}).items():
        files.write_bytes(join(directory, name), content)
    # metadata.json last: its presence marks a complete artifact.
    write_json(join(directory, METADATA_FILE), full)
    return full


def add_to_metadata(directory: str, key: str, value) -> dict:
    """metadata.json with `key` set, replaced whole: a local file by rename (a reader sees the old or the new,
    never half), an object by one upload (atomic on object stores). The model's version does not change."""
    _, metadata = read_metadata(directory)
    updated = {**metadata, key: value}
    path = join(directory, METADATA_FILE)
    if files.remote(path):
        write_json(path, updated)
    else:
        staged = f"{path}.{os.getpid()}.tmp"
        write_json(staged, updated)
        os.replace(staged, path)
    return updated


def write_json(path: str, value) -> None:
    files.write_bytes(path, (json.dumps(value, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))


def _read_json(path: str):
    try:
        return json.loads(files.read_bytes(path).decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc}): re-export the model with `complaints train`") from None


def read_metadata(directory: str) -> tuple[list[str], dict]:
    """Labels and metadata, checked, without loading TensorFlow weights."""
    if not files.isdir(directory):
        raise UserError(
            f"model directory {directory} does not exist: train one with `complaints train --out {directory}`"
        )
    missing = [n for n in REQUIRED_FILES if not files.exists(join(directory, n))]
    if missing:
        raise UserError(
            f"{directory} is not a complete model directory (missing {', '.join(missing)}): "
            "point --model at the output of `complaints train`, or train again"
        )
    safety.check_size(join(directory, LABELS_FILE), safety.MAX_LABELS_BYTES)
    safety.check_size(join(directory, METADATA_FILE), safety.MAX_METADATA_BYTES)
    labels = _read_json(join(directory, LABELS_FILE))
    metadata = _read_json(join(directory, METADATA_FILE))
    version = metadata.get("format_version") if isinstance(metadata, dict) else None
    if version != FORMAT_VERSION:
        raise UserError(
            f"{directory} has model format {version!r}, this version reads format {FORMAT_VERSION}: "
            "retrain the model with this version of complaints"
        )
    safety.check_metadata(directory, metadata)
    safety.check_labels(directory, labels)
    if len(labels) != metadata.get("n_classes"):
        raise UserError(f"{directory}/{LABELS_FILE} does not match metadata.json's class count: retrain the model")
    return labels, metadata


def load(directory: str) -> Artifact:
    """Load a model directory, or raise a UserError that says what is wrong with it.

    A process loads each unchanged directory once: the nightly job's pre-flight and
    its in-process worker share one load (about half a second for the reference model).
    """
    labels, metadata = read_metadata(directory)
    key = cache_key(directory)
    if key is not None and key in _LOADED:
        return _LOADED[key]
    pretrained.check(directory, metadata)
    data = safety.checked_model_bytes(join(directory, MODEL_FILE))  # before Keras parses anything in it
    local = files.private_copy(data, suffix=".keras")  # Keras reads a local .keras file: these very bytes
    try:
        model = keras.models.load_model(local, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 (Keras raises many types for a broken file)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{directory}/{MODEL_FILE} does not load ({first}): retrain or re-copy the model") from None
    finally:
        os.remove(local)
    safety.check_labels(directory, labels, model.outputs[0].shape[-1])
    pretrained.check_layers(directory, _walk(model))
    actual = model_version(model, labels, str(metadata.get("locale")))
    if actual != metadata.get("model_version"):
        raise UserError(f"{directory}: metadata.json says model {metadata.get('model_version')!r} but its weights, "
                        f"vocabulary and labels are model {actual!r} (files from two exports, or changed after "
                        "export): copy the whole directory again, or retrain")
    loaded = Artifact(model=model, labels=labels, metadata=metadata, path=directory)
    if key is not None:
        _LOADED.clear()  # one entry: a swap replaces it, and old models are freed
        _LOADED[key] = loaded
    return loaded


_LOADED: dict[tuple, Artifact] = {}


def cache_key(directory: str) -> tuple | None:
    """The directory and its files' sizes and modification times: a file changed in place is loaded afresh."""
    try:
        stats = [files.stat(join(directory, name)) for name in REQUIRED_FILES]
    except OSError:
        return None
    return (directory.rstrip("/"), *((s.length, s.mtime_nsec) for s in stats))


def complete_directories(pattern: str) -> list[str]:
    """Model directories matching `pattern` (e.g. `models/*` or `gs://b/models/*`) that hold metadata.json.

    metadata.json is written last, so a directory still being written is not listed.
    A pattern may also name the metadata files themselves (`models/*/metadata.json`).
    """
    found = set()
    for match in files.glob(pattern):
        match = match.rstrip("/")
        directory = match.rsplit("/", 1)[0] if match.endswith("/" + METADATA_FILE) else match
        if files.exists(join(directory, METADATA_FILE)) and not _linked(directory):
            found.add(directory)
    return sorted(found)


def _linked(directory: str) -> bool:
    """A local model directory reached through a symbolic link (itself or one of its files) is passed
    over: the watched folder is what the operator vouches for, not wherever a link points."""
    if files.remote(directory):
        return False  # object stores have no links
    links = [p for p in [directory, *(join(directory, n) for n in REQUIRED_FILES)] if os.path.islink(p)]
    if links:
        logging.getLogger(__name__).warning("not serving %s: %s is a symbolic link", directory, links[0])
    return bool(links)


def copy_directory(source: str, target: str) -> str:
    """Copy a model directory so that a watcher never sees it half-written: metadata.json last."""
    source = source.rstrip("/")
    for relative in files.files_under(source):
        if relative != METADATA_FILE:
            into = join(target, relative)
            files.makedirs(os.path.dirname(into) if not files.remote(into) else target)
            files.copy(join(source, relative), into)
    files.copy(join(source, METADATA_FILE), join(target, METADATA_FILE))
    return target
