"""Models from an MLflow registry: `models:/NAME@ALIAS` and `models:/NAME/VERSION` resolved to a plain directory.

A registered version is resolved once, where the command runs: its artifact is
downloaded to a cache (`$XDG_CACHE_HOME/complaints/registry/...`), its
`model_version` tag is checked against the directory's own `model_version` (and
`artifact.load` checks that against the weights), and the copy's metadata.json gains
a `registry` entry (registry, name, version, alias, source) that the jobs carry into
`summary.json`, their metrics and the Parquet footers. Everything downstream (workers
on any runner) sees an ordinary model directory, so the worker needs no registry.

The registry is always named: `--registry-uri` or `MLFLOW_TRACKING_URI`. MLflow left
to itself would create `./mlruns` or `mlflow.db` in the current folder, which is
never what a nightly job on a scheduler means. MLflow is the optional `registry`
extra (`mlflow-skinny` with SQLAlchemy and Alembic for `sqlite:///PATH`); it is only
imported here, and only when a registry is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import urllib.parse
from dataclasses import dataclass

from model import files
from model.errors import UserError

SCHEME = "models:/"
ENV = "MLFLOW_TRACKING_URI"
EXPERIMENT = "complaints"
ARTIFACT_PATH = "model"  # the model directory's place in its run's artifacts
VERSION_TAG = "model_version"  # on each registered version: the weights' content id (artifact.model_version)
LINEAGE_KEY = "registry"  # in the resolved copy's metadata.json
PRECISIONS_TAG = "precisions"  # on a version: `complaints precision`'s agreement records (JSON)
CACHE_ENV = "COMPLAINTS_REGISTRY_CACHE"  # where resolved copies go (default ~/.cache/complaints/registry)
FILES_TAG = "files_sha256"  # on each registered version: {file of the model directory: its sha256} (JSON)
_COPY_KEYS = (LINEAGE_KEY, PRECISIONS_TAG)  # what a resolved copy adds to its metadata.json: not in the digest
log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"^[^/@\s][^/@]*$")
_HTTP_DEFAULTS = {  # a registry that is down answers in seconds, not after MLflow's 7 retries with backoff
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


class RegistryUnreachable(UserError):
    """The registry did not answer (down, refused, timed out): the live job keeps serving and counts it."""


@dataclass(frozen=True)
class Reference:
    """What a `models:/` path names: one version, or the version an alias points at."""

    name: str
    alias: str | None = None
    version: str | None = None

    @classmethod
    def parse(cls, path: str) -> Reference:
        body = path[len(SCHEME):] if path.startswith(SCHEME) else ""
        if "@" in body and "/" not in body:
            name, alias = body.split("@", 1)
            if NAME_PATTERN.match(name) and re.fullmatch(r"[A-Za-z0-9_-]+", alias):
                return cls(name, alias=alias)
        elif body.count("/") == 1:
            name, version = body.split("/")
            if NAME_PATTERN.match(name) and version.isdigit() and int(version) > 0:
                return cls(name, version=str(int(version)))
            if NAME_PATTERN.match(name) and version and not version.isdigit():
                raise UserError(f"{path}: MLflow's stages (Staging, Production) are deprecated; name a version "
                                f"(models:/{name}/3) or an alias (models:/{name}@champion)")
        raise UserError(f"{path!r} is not a registered model: write models:/NAME@ALIAS or models:/NAME/VERSION")

    def __str__(self) -> str:
        return f"{SCHEME}{self.name}@{self.alias}" if self.alias else f"{SCHEME}{self.name}/{self.version}"


@dataclass(frozen=True)
class Resolved:
    """A registered version as a local model directory, and where it came from."""

    model_dir: str
    lineage: dict  # registry (without credentials), name, version, alias, source, model_version


def is_registered(path: str | None) -> bool:
    return bool(path) and path.startswith(SCHEME)


def registry_uri(explicit: str | None) -> str:
    """The registry to use: `--registry-uri`, else `$MLFLOW_TRACKING_URI`; neither is one clear line."""
    uri = explicit or os.environ.get(ENV)
    if not uri:
        raise UserError("a models:/ path needs a registry: pass --registry-uri (start with sqlite:///registry.db, "
                        f"a file beside your models) or set {ENV}")
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):  # relative: to this folder, now
        uri = "sqlite:///" + os.path.abspath(uri[len("sqlite:///"):])
    if "://" not in uri and not uri.startswith(("databricks", "sqlite")):
        raise UserError(f"--registry-uri {uri!r} is not a registry: give sqlite:///PATH, http(s)://HOST:PORT or "
                        "another MLflow tracking URI (a bare folder would make MLflow write a file store there)")
    return uri


def shown(uri: str) -> str:
    """The registry's address without a password (it goes into summaries, metrics and Parquet footers)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


_CLIENTS: dict[str, object] = {}  # one per registry and process: a SQL store checks its schema when opened


def mlflow_client(uri: str):
    """One MLflow client per registry and process, its HTTP retries cut (a registry that is down answers fast)."""
    if uri in _CLIENTS:
        return _CLIENTS[uri]
    for name, value in _HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise UserError("models:/ paths and --register need MLflow: pip install 'complaints[registry]'") from None
    for noisy in ("alembic", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    with answering(uri, "opening it"):
        client = _CLIENTS[uri] = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return client


@contextlib.contextmanager
def answering(uri: str, what: str):
    """MLflow's exceptions as one line: a name or version that does not exist is the user's to fix; anything
    else means the registry did not answer properly."""
    try:
        yield
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 (MlflowException, requests', SQLAlchemy's: all mean the same here)
        code = getattr(exc, "error_code", None)
        message = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        if code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS"):
            raise UserError(f"{what}: {message}") from None
        raise RegistryUnreachable(f"the registry {shown(uri)} did not answer ({what}: {message}): check that it "
                                  "is up and --registry-uri is right") from None


def version_of(reference: Reference, uri: str):
    """The registry's record of the version `reference` names now (an alias read at this moment)."""
    client = mlflow_client(uri)
    with answering(uri, f"{reference} in {shown(uri)}"):
        if reference.alias:
            return client.get_model_version_by_alias(reference.name, reference.alias)
        return client.get_model_version(reference.name, reference.version)


def resolve(path: str, uri: str | None) -> Resolved:
    """`models:/…` → a checked local copy of the version it names now (downloaded once per version)."""
    reference, uri = Reference.parse(path), registry_uri(uri)
    record = version_of(reference, uri)
    expected = (record.tags or {}).get(VERSION_TAG)
    if not expected:
        raise UserError(f"{reference} is version {record.version} of {reference.name}, which has no {VERSION_TAG} "
                        "tag: register models with `complaints train --register`, or tag the version with its "
                        "metadata.json's model_version")
    lineage = {"registry": shown(uri), "name": reference.name, "version": str(record.version),
               "alias": reference.alias, "source": record.source, "model_version": expected}
    target = _cache_dir(uri, reference, str(record.version))
    digests = _registered_digests(record, reference)
    if _cached(target, lineage) and digests and (changed := _changed_file(target, digests)):
        log.warning("the cached copy of %s (version %s) has a changed %s: discarded, fetching the registered one "
                    "again", reference, record.version, changed)
        shutil.rmtree(target, ignore_errors=True)
    if not _cached(target, lineage):
        _download(uri, reference, record, target, lineage, digests)
    _carry_measurements(target, record.tags or {})
    return Resolved(target, lineage)


def file_digests(model_dir: str) -> dict[str, str]:
    """Every file of a model directory and its sha256: what a registered version must hold, byte for byte. The
    metadata is hashed without what a resolved copy adds to it (its lineage, carried measurements), so the
    same registered files give the same digests before and after they are resolved."""
    from model import artifact

    digests = {}
    for folder, _, names in os.walk(model_dir):
        for name in names:
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, model_dir).replace(os.sep, "/")
            digest = hashlib.sha256()
            if relative == artifact.METADATA_FILE:
                with open(path, encoding="utf-8") as f:
                    own = {k: v for k, v in json.load(f).items() if k not in _COPY_KEYS}
                digest.update(json.dumps(own, sort_keys=True).encode())
            else:
                with open(path, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
            digests[relative] = digest.hexdigest()
    return digests


def _registered_digests(record, reference: Reference) -> dict[str, str] | None:
    """The version's per-file digests; None for a version registered before they were kept."""
    value = (record.tags or {}).get(FILES_TAG)
    if value is None:
        return None
    try:
        digests = json.loads(value)
    except ValueError:
        digests = None
    if not isinstance(digests, dict) or not digests:
        raise UserError(f"the {FILES_TAG} tag of {reference} (version {record.version}) is not a JSON object of "
                        "file digests: register the model again")
    return digests


def _changed_file(model_dir: str, digests: dict[str, str]) -> str | None:
    """The first file (in name order) that is missing, added or changed against `digests`; None if all match."""
    try:
        found = file_digests(model_dir)
    except (OSError, ValueError) as exc:
        return f"metadata.json ({exc})"
    for name in sorted(set(found) | set(digests)):
        if found.get(name) != digests.get(name):
            return name if name in found else f"{name} (missing)"
    return None


def _carry_measurements(target: str, tags: dict) -> None:
    """What `complaints precision` measured on a registered version lives in its `precisions` tag (registered
    files are not rewritten); the copy's metadata.json gets it, where `--precision auto` reads it."""
    from model import artifact, precision

    if PRECISIONS_TAG not in tags:
        return
    try:
        records = json.loads(tags[PRECISIONS_TAG])
    except ValueError:
        records = None
    if not isinstance(records, dict):
        raise UserError(f"the {PRECISIONS_TAG} tag of this version is not a JSON object: remove it and run "
                        "`complaints precision` on the version again")
    if artifact.read_metadata(target)[1].get(precision.RECORD_KEY) != records:
        artifact.add_to_metadata(target, precision.RECORD_KEY, records)


def record_measurements(lineage: dict, records: dict, uri: str | None) -> None:
    """Keep `complaints precision`'s records with the registered version (its `precisions` tag)."""
    uri = registry_uri(uri)
    with answering(uri, f"tagging {lineage['name']} version {lineage['version']}"):
        mlflow_client(uri).set_model_version_tag(lineage["name"], lineage["version"], PRECISIONS_TAG,
                                           json.dumps(records, sort_keys=True))


def _cache_dir(uri: str, reference: Reference, version: str) -> str:
    base = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "complaints", "registry")
    registry = hashlib.sha256(uri.encode()).hexdigest()[:12]
    name = urllib.parse.quote(reference.name, safe="")
    return os.path.join(base, registry, name, f"{version}@{reference.alias or '-'}")


def _cached(target: str, lineage: dict) -> bool:
    from model import artifact

    try:
        _, metadata = artifact.read_metadata(target)
    except UserError:
        return False
    return metadata.get(LINEAGE_KEY) == lineage and metadata.get("model_version") == lineage["model_version"]


def _download(uri: str, reference: Reference, record, target: str, lineage: dict,
              digests: dict[str, str] | None) -> None:
    """Download into a fresh folder beside `target`, check it, then rename it into place: a reader of the cache
    sees a whole checked copy or none."""
    from model import artifact

    client = mlflow_client(uri)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=".download-", dir=os.path.dirname(target))
    try:
        import mlflow.artifacts

        with answering(uri, f"downloading {reference} (version {record.version}, {record.source})"):
            source = client.get_model_version_download_uri(reference.name, record.version)
            got = model_folder(
                mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=scratch, tracking_uri=uri))
        if digests and (changed := _changed_file(got, digests)):
            raise UserError(f"{reference} (version {record.version}): the registered {changed} does not match the "
                            f"version's {FILES_TAG} tag, so the registered files were changed after registration; "
                            "register the model again (or promote another version)")
        _, metadata = artifact.read_metadata(got)
        if metadata.get("model_version") != lineage["model_version"]:
            raise UserError(f"{reference} (version {record.version}) is tagged {VERSION_TAG}="
                            f"{lineage['model_version']} but its files are model {metadata.get('model_version')}: "
                            "the registered files were replaced; register the model again")
        artifact.add_to_metadata(got, LINEAGE_KEY, lineage)
        if _cached(target, lineage):
            return  # another process put the same version there meanwhile: keep the copy it may be serving
        shutil.rmtree(target, ignore_errors=True)  # a copy that no longer matches the registry
        try:
            os.rename(got, target)
        except OSError:  # another process put the same version there first
            if not _cached(target, lineage):
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def model_folder(downloaded: str) -> str:
    """The model directory in a registered artifact: an MLflow Model's data folder (what `train --register`
    registers), or the artifact itself (versions registered as a bare directory)."""
    if not os.path.exists(os.path.join(downloaded, "MLmodel")):
        return downloaded
    from mlflow.models import Model

    data = Model.load(os.path.join(downloaded, "MLmodel")).flavors.get("python_function", {}).get("data")
    if not data or not os.path.isdir(os.path.join(downloaded, data)):
        raise UserError(f"the registered MLflow Model at {downloaded} has no python_function data folder: register "
                        "models with `complaints train --register` or `complaints register`")
    return os.path.join(downloaded, data)


def lineage_of(metadata: dict) -> dict | None:
    """The registry lineage a resolved copy carries, or None for a model given as a directory."""
    value = metadata.get(LINEAGE_KEY)
    return value if isinstance(value, dict) else None


def described(lineage: dict | None) -> str:
    if not lineage:
        return ""
    named = f"@{lineage['alias']}" if lineage.get("alias") else ""
    return f"{lineage['name']}{named} version {lineage['version']} from {lineage['registry']}"


def stage(model_dir: str, prefix: str, lineage: dict) -> str:
    """A copy of a resolved model under `prefix` (the remote runner's temp location), once per version and
    metadata: remote workers read it there, as they would any gs:// model directory. The metadata's digest is
    in the folder's name, so a precision record changed on the version since (`complaints precision`) reaches
    the workers with a new copy instead of a stale one the launcher no longer agrees with."""
    from model import artifact

    with open(os.path.join(model_dir, artifact.METADATA_FILE), "rb") as f:
        metadata = hashlib.sha256(f.read()).hexdigest()[:12]
    folder = "/".join(["complaints-models", urllib.parse.quote(lineage["name"], safe=""),
                       f"{lineage['version']}@{lineage.get('alias') or '-'}-{lineage['model_version']}-{metadata}"])
    target = files.join(prefix.rstrip("/"), folder)
    if not files.exists(files.join(target, artifact.METADATA_FILE)):
        artifact.copy_directory(model_dir, target)
    return target
