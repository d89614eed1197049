"""Registries for the tests: an MLflow SQLite registry in a folder, and a real `mlflow server` on loopback."""

from __future__ import annotations

import os

from model import registration, registry
from pipelines.app.pubsub_admin import free_port
from tests import tool_envs


def sqlite_uri(folder) -> str:
    return f"sqlite:///{os.path.join(str(folder), 'registry.db')}"


def client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def register(uri: str, model_dir: str, name: str = "complaints", alias: str | None = None) -> str:
    """Register `model_dir` as the next version of `name` the way `train --register` does; its number."""
    from worker import pyfunc

    return registration.register(model_dir, name, alias, uri, params={"test": True}, metrics={}, reports=[],
                             packaged=pyfunc.save)["version"]


def stored(uri: str, version: str, name: str = "complaints") -> str:
    """The model directory inside a registered version's files in a local artifact store (its MLflow Model's
    data folder): what a test changes behind the registry's back."""
    return registry.model_folder(client(uri).get_model_version(name, version).source.removeprefix("file://"))


class MlflowServer:
    """`mlflow server` from its own environment (tests/tool_envs.py), SQLite store and proxied artifacts in
    `folder`, on a free loopback port; `stop()` and `start()` again keep its store (a registry that went down
    and came back)."""

    def __init__(self, folder):
        folder = str(folder)
        port = free_port()
        self.uri = f"http://127.0.0.1:{port}"
        self.artifacts = f"{folder}/artifacts"
        self.server = tool_envs.Server(
            [tool_envs.executable("mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
             "--backend-store-uri", f"sqlite:///{folder}/server.db", "--artifacts-destination",
             f"{folder}/artifacts", "--workers", "1"],
            f"{self.uri}/health", os.path.join(folder, "server.log"), cwd=folder)

    def stored(self, version: str, name: str = "complaints") -> str:
        """The model directory inside a registered version's files in this server's artifact store (proxied:
        `mlflow-artifacts:/PATH` is `ARTIFACTS/PATH` on its disk), to change behind the registry's back."""
        source = client(self.uri).get_model_version(name, version).source
        return registry.model_folder(os.path.join(self.artifacts, source.removeprefix("mlflow-artifacts:/")))

    def start(self) -> MlflowServer:
        self.server.start(deadline_secs=180)
        return self

    def stop(self) -> None:
        self.server.stop()
