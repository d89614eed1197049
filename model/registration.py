"""Registering and promoting versions in an MLflow registry: the writing side of `model.registry`.

`train --register` and `complaints register` log a run (parameters, held-out metrics,
the training data as a dataset input, the source commit, the reports) and register
its model as a new version tagged with its `model_version` and every file's sha256;
`promote` moves an alias. Reading (resolving, checking, caching, staging) is
`model.registry`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Callable

from model import artifact, registry
from model.errors import UserError


def check_registration(name: str, alias: str | None, uri: str | None) -> str:
    """Before training: the name, the alias and the registry are fit (an hour of training is not lost to a
    typo or a registry that is down); returns the registry's URI."""
    if not registry.NAME_PATTERN.match(name):
        raise UserError(f"{name!r} cannot name a registered model (no '/', '@' or leading space)")
    if alias is not None:
        _check_alias(alias)
    uri = registry.registry_uri(uri)
    client = registry.mlflow_client(uri)
    with registry.answering(uri, "reaching the registry"):
        client.search_registered_models(max_results=1)
    return uri


def _check_alias(alias: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", alias) or alias.lower() == "latest" or re.fullmatch(r"v\d+", alias):
        raise UserError(f"{alias!r} cannot be an alias: letters, digits, '_' and '-' only, and not 'latest' or "
                        "v<number> (MLflow reserves them)")


def register(model_dir: str, name: str, alias: str | None, uri: str | None, *, params: dict, metrics: dict,
             reports: list[str], packaged: Callable[[str, str], None] | None = None) -> dict:
    """Log a training run (parameters, test metrics, report files, the model directory) and register the
    directory as a new version of `name`, tagged with its model_version and every file's sha256; `alias` then
    points at it. `packaged(model_dir, path)` writes the directory as an MLflow Model at `path` (the worker's
    python_function flavour), which is what is logged and registered when given."""

    uri = check_registration(name, alias, uri)
    client = registry.mlflow_client(uri)
    _, metadata = artifact.read_metadata(model_dir)
    with registry.answering(uri, f"registering {model_dir} as {name}"):
        experiment = client.get_experiment_by_name(registry.EXPERIMENT)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(
            registry.EXPERIMENT, artifact_location=_artifact_root(uri))
        run = client.create_run(experiment_id, run_name=f"train {metadata['model_version']}",
                                tags={registry.VERSION_TAG: metadata["model_version"], **_source_commit()})
        run_id = run.info.run_id
        _log_training_data(client, run_id, metadata, params.get("data"))
        for key, value in params.items():
            client.log_param(run_id, key, str(value)[:6000])
        for key, value in metrics.items():
            client.log_metric(run_id, key, float(value))
        with tempfile.TemporaryDirectory() as scratch:
            logged = os.path.join(scratch, registry.ARTIFACT_PATH) if packaged else model_dir
            if packaged:
                packaged(model_dir, logged)
            client.log_artifacts(run_id, logged, registry.ARTIFACT_PATH)
        for report in reports:
            client.log_artifact(run_id, report, "report")
        client.set_terminated(run_id)
        with contextlib.suppress(Exception):
            client.create_registered_model(name)  # exists already: a new version of it
        tags = {registry.VERSION_TAG: metadata["model_version"],
                registry.FILES_TAG: json.dumps(registry.file_digests(model_dir), sort_keys=True, separators=(",", ":"))}
        version = client.create_model_version(name, source=f"{run.info.artifact_uri}/{registry.ARTIFACT_PATH}",
                                              run_id=run_id, tags=tags)
        previous = _alias_holder(client, name, alias) if alias else None
        if alias:
            client.set_registered_model_alias(name, alias, version.version)
    return {"registry": registry.shown(uri), "name": name, "version": str(version.version), "alias": alias,
            "previous": previous, "run_id": run_id, "model_version": metadata["model_version"]}


def _source_commit() -> dict[str, str]:
    """MLflow's `mlflow.source.git.commit` tag, where the project runs from a git checkout (the code that trained
    the model); nothing where it does not (an installed wheel)."""

    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"mlflow.source.git.commit": commit} if re.fullmatch(r"[0-9a-f]{40}", commit) else {}


def _log_training_data(client, run_id: str, metadata: dict, data: str | None) -> None:
    """The training data as the run's MLflow dataset input: where it came from, its rows and its content
    fingerprint (the same `data_fingerprint` as the model's metadata), so the UI shows what a version learnt
    from."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    training = metadata.get("training") or {}
    source = data or ", ".join(training.get("files") or []) or "unknown"
    dataset = Dataset(name="training data", digest=str(training.get("data_fingerprint", "unknown")),
                      source_type="local", source=json.dumps({"uri": source}),
                      profile=json.dumps({"num_rows": training.get("rows"), "split_rows": training.get("split_rows")}))
    client.log_inputs(run_id, datasets=[DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])])


def _artifact_root(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: beside a SQLite registry's file (MLflow's default is
    ./mlruns in whatever folder the command ran in); a server decides for itself."""
    if uri.startswith("sqlite:///"):
        database = uri[len("sqlite:///"):]
        return "file://" + os.path.join(os.path.dirname(os.path.abspath(database)), "mlartifacts")
    return None


def _alias_holder(client, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except Exception as exc:
        if getattr(exc, "error_code", None) in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"):
            return None
        raise


def promote(name: str, version: str, alias: str, uri: str | None) -> str | None:
    """Point `alias` at `version` of `name`; returns the version that held it before (None if it was free).
    Moving it back is the rollback."""
    _check_alias(alias)
    uri = registry.registry_uri(uri)
    client = registry.mlflow_client(uri)
    with registry.answering(uri, f"{registry.SCHEME}{name}/{version} in {registry.shown(uri)}"):
        record = client.get_model_version(name, version)
        if not (record.tags or {}).get(registry.VERSION_TAG):
            raise UserError(f"{registry.SCHEME}{name}/{version} has no {registry.VERSION_TAG} tag, so no job would "
                            "serve it: register models with `complaints train --register`")
        previous = _alias_holder(client, name, alias)
        client.set_registered_model_alias(name, alias, version)
    return previous
