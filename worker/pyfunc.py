"""A model directory as an MLflow Model: the `python_function` flavour over the jobs' own classification core.

`mlflow.pyfunc.load_model("models:/complaints@champion").predict(pd.DataFrame({"text": [...]}))`
answers what `complaints predict` answers, row for row, because it is the same
`LocalClassifier` (the jobs' validation, handler and core) over the same directory;
only the shape of the answer is MLflow's: one row per text with `category`,
`confidence`, `top_k`, `needs_review`, `model_version`, and `dead_letter` (the reason a
text the jobs would dead-letter was refused; null otherwise).

Every version `train --register` registers is such a model: `MLmodel` with this
flavour and a signature, an input example, pinned requirements, and the code of
`model/` and `worker/` beside the directory (`code/`), so `mlflow.pyfunc.load_model`,
`mlflow models serve` and `mlflow.evaluate` work where the project is not installed.
The project's own loader reads the directory inside (`data/`) with its allow-list and
safe mode, as it reads any model directory.
"""

from __future__ import annotations

import importlib.metadata
import os

import pandas as pd

COLUMNS = ["category", "confidence", "top_k", "needs_review", "model_version", "dead_letter"]
EXAMPLE = ["Kargom 10 gündür gelmedi, iade istiyorum", "Faturama izinsiz ücret yansıtıldı"]


def _load_pyfunc(data_path: str) -> Classifier:
    """MLflow's entry point (`loader_module`): the model directory inside the MLflow model."""
    return Classifier(data_path)


class Classifier:
    """The python_function model: texts in, the jobs' verdicts out."""

    def __init__(self, model_dir: str) -> None:
        from worker.config import WorkerConfig
        from worker.local import LocalClassifier

        self.local = LocalClassifier(WorkerConfig(model_dir=model_dir))

    def predict(self, model_input, params: dict | None = None) -> pd.DataFrame:
        from worker.local import texts_as_records
        from worker.transform import DEAD_LETTERS

        texts = _texts(model_input)
        rows = []
        for tag, record in self.local.classify(texts_as_records(texts)):
            if tag == DEAD_LETTERS:
                rows.append({"model_version": self.local.version,
                             "dead_letter": f"{record['reason']}: {record['detail']}"})
            else:
                rows.append({"category": record["label"], "confidence": record["confidence"],
                             "top_k": record["top_k"], "needs_review": record["needs_review"],
                             "model_version": record["model_version"]})
        return pd.DataFrame(rows, columns=COLUMNS)


def _texts(model_input) -> list:
    if isinstance(model_input, pd.DataFrame):
        if "text" not in model_input.columns:
            raise ValueError(f"the input needs a `text` column (it has {list(model_input.columns)})")
        return model_input["text"].tolist()
    if isinstance(model_input, str):
        return [model_input]
    return list(model_input)


def save(model_dir: str, path: str) -> None:
    """Write `model_dir` as an MLflow Model at `path` (which must not exist): the directory under `data/`."""
    import mlflow.pyfunc
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, Object, Property, Schema

    import model
    import worker

    outputs = Schema([
        ColSpec("string", "category", required=False), ColSpec("double", "confidence", required=False),
        ColSpec(Array(Object([Property("label", "string"), Property("confidence", "double")])), "top_k",
                required=False),
        ColSpec("boolean", "needs_review", required=False), ColSpec("string", "model_version"),
        ColSpec("string", "dead_letter", required=False)])
    mlflow.pyfunc.save_model(
        path, loader_module=__name__, data_path=model_dir,
        code_paths=[os.path.dirname(model.__file__), os.path.dirname(worker.__file__)],
        signature=ModelSignature(inputs=Schema([ColSpec("string", "text")]), outputs=outputs),
        input_example=pd.DataFrame({"text": EXAMPLE}), pip_requirements=pinned() + encoder_requirement(model_dir))


def encoder_requirement(model_dir: str) -> list[str]:
    """An e5-linear model also needs its pretrained encoder, at the version it was trained with."""
    from model import artifact, pretrained

    _, metadata = artifact.read_metadata(model_dir)
    encoder = pretrained.recorded(model_dir, metadata)  # registering needs the record, not the encoder itself
    return [str(encoder.get("requirement", pretrained.REQUIREMENT))] if encoder else []


def pinned() -> list[str]:
    """The project's own requirements at the versions installed here (what the model was trained and checked
    with); the extras (MLflow, Dask, the page) are not needed to serve it."""
    wanted = [r.split(";")[0] for r in importlib.metadata.requires("complaints") or [] if "extra ==" not in r]
    names = [w.split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip() for w in wanted]
    return [f"{name}=={importlib.metadata.version(name)}" for name in names if name not in ("click",)]
