"""A model directory someone else wrote is checked before Keras reads it: nothing in it may run code.

`model.keras` is a zip of a JSON config and weights. Keras' `safe_mode` refuses
pickled Python lambdas, but the config may still name any layer class Keras (or a
registered package) knows, and a TextVectorization may name a vocabulary *file* to
read. So before loading, the config is walked and every class it names must be one
that this project's own architectures use (`ALLOWED`), under its own registered name
(Keras looks a `registered_name` up before the module and class), every function one
of the project's standardisers, and every vocabulary a list, not a path. The bytes
checked are the bytes loaded (`checked_model_bytes`). Files have size
limits, read before anything is parsed. One `UserError` line for each refusal, in
every command that loads a model and in the live job's model swap (they all go
through `model.artifact.load`).
"""

from __future__ import annotations

import io
import json
import zipfile

from model import files
from model.errors import UserError

MAX_MODEL_BYTES = 1 << 30  # the reference BiLSTM is about 10 MB, the linear model at 431,306 rows about 40 MB
MAX_LABELS_BYTES = 1 << 20
MAX_METADATA_BYTES = 64 << 20  # the drift baseline lives here
MAX_CONFIG_BYTES = 16 << 20  # config.json inside model.keras (the vocabulary is stored beside it, as assets)

# (module, class name) of everything the project's architectures put in a config (model/architecture.py,
# model/linear.py, model/pretrained.py, model/calibration.py): the BiLSTM, the linear TF-IDF model (with or
# without the e5 encoder), the temperature.
ALLOWED = {
    *(("keras.layers", name) for name in (
        "InputLayer", "TextVectorization", "Embedding", "Bidirectional", "LSTM", "Dropout", "Dense",
        "GlobalMaxPooling1D", "Softmax", "Rescaling", "Concatenate", "Add")),
    *(("keras.initializers", name) for name in ("GlorotUniform", "Orthogonal", "RandomUniform", "Zeros", "Ones")),
    ("keras", "DTypePolicy"),
    ("keras.src.models.functional", "Functional"),
    ("model.linear", "SublinearTfIdf"),
    ("model.pretrained", "E5Embedding"),
}
PACKAGE = "complaints"  # the project's `keras.saving.register_keras_serializable` package
ALLOWED_FUNCTIONS = {f"{PACKAGE}>standardize_turkish", f"{PACKAGE}>standardize_unicode"}


def check_size(path: str, limit: int) -> None:
    try:
        size = files.stat(path).length
    except OSError:
        return  # a missing file is reported by the caller, in its own words
    if size > limit:
        raise UserError(f"{path} is {size:,} bytes, over the {limit:,} a model directory's file may have: "
                        "it is not a model this project wrote; train one with `complaints train`")


def checked_model_bytes(path: str) -> bytes:
    """`model.keras`'s bytes, read once and checked: the caller loads these very bytes, so a file replaced
    between the check and the load cannot slip through. One line for a config that names anything the
    project's architectures do not."""
    check_size(path, MAX_MODEL_BYTES)
    data = files.read_bytes(path)
    if len(data) > MAX_MODEL_BYTES:  # grew after the size check
        raise UserError(f"{path} is over the {MAX_MODEL_BYTES:,} bytes a model file may have: it is not a model "
                        "this project wrote; train one with `complaints train`")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            info = archive.getinfo("config.json")
            if info.file_size > MAX_CONFIG_BYTES:
                raise UserError(f"{path}: its config.json is {info.file_size:,} bytes: not a model this project "
                                "wrote")
            config = json.loads(archive.read(info))
    except UserError:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, RecursionError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} does not load (not a Keras model file: {first}): retrain or re-copy the "
                        "model") from None
    problem = _first_problem(config)
    if problem:
        raise UserError(f"{path} {problem}: this project loads only the layers its own architectures use; "
                        "train the model with `complaints train`")
    return data


def _first_problem(config) -> str | None:
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
            continue
        if not isinstance(item, dict):
            continue
        if "class_name" in item:
            problem = _class_problem(item)
            if problem:
                return problem
        stack.extend(item.values())
    return None


def _class_problem(item: dict) -> str | None:
    name, module = item.get("class_name"), item.get("module")
    if name == "__keras_tensor__":
        return None
    registered = item.get("registered_name")
    if name == "function":
        if registered not in (None, "function"):
            return f"names the function {item.get('config')!r} registered as {registered!r:.200}"
        return None if item.get("config") in ALLOWED_FUNCTIONS else \
            f"names the function {item.get('config')!r}"
    if (module, name) not in ALLOWED:
        return f"names the class {name!r} (module {module!r})"
    # Keras resolves a registered name before the module and class: it must name the same class.
    if registered not in (None, name, f"{PACKAGE}>{name}"):
        return f"names the class {name!r} registered as {registered!r:.200}"
    if name == "TextVectorization":
        vocabulary = (item.get("config") or {}).get("vocabulary")
        if isinstance(vocabulary, str):
            return f"has a TextVectorization whose vocabulary names the file {vocabulary[:200]!r}"
    return None


def check_labels(directory: str, labels, n_outputs: int | None = None) -> None:
    if not isinstance(labels, list) or not all(isinstance(label, str) and label.strip() for label in labels):
        raise UserError(f"{directory}/labels.json must be a list of non-empty strings: retrain the model")
    if len(set(labels)) != len(labels):
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        raise UserError(f"{directory}/labels.json names {duplicates[:5]} more than once: retrain the model")
    if n_outputs is not None and n_outputs != len(labels):
        raise UserError(f"{directory}: the model has {n_outputs} outputs but labels.json has {len(labels)} labels")


METADATA_TYPES = {"format_version": int, "model_version": str, "n_classes": int, "locale": str}


def check_metadata(directory: str, metadata: dict) -> None:
    for key, kind in METADATA_TYPES.items():
        value = metadata.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise UserError(f"{directory}/metadata.json: {key!r} must be {kind.__name__}, not {value!r:.80}: "
                            "retrain the model")
