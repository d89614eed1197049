"""Registries for the tests: an MLflow SQLite registry in a folder, and a real `mlflow server` on loopback."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request

from model import registry
from pipelines.app.pubsub_admin import free_port
from tests import tool_envs


def sqlite_uri(folder) -> str:
    return f"sqlite:///{os.path.join(str(folder), 'registry.db')}"


def client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def register(uri: str, model_dir: str, name: str = "complaints", alias: str | None = None) -> str:
    """Register `model_dir` as the next version of `name` the way `train --register` does; its number."""
    return registry.register(model_dir, name, alias, uri, params={"test": True}, metrics={}, reports=[])["version"]


class MlflowServer:
    """`mlflow server` from its own environment (tests/tool_envs.py), SQLite store and proxied artifacts in
    `folder`, on a free loopback port; `stop()` and `start()` again keep its store (a registry that went down
    and came back)."""

    def __init__(self, folder):
        self.folder = str(folder)
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, deadline_secs: float = 180) -> MlflowServer:
        log = open(os.path.join(self.folder, "server.log"), "ab")
        self.process = subprocess.Popen(
            [tool_envs.executable("mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--backend-store-uri", f"sqlite:///{self.folder}/server.db",
             "--artifacts-destination", f"{self.folder}/artifacts", "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.folder)
        end = time.monotonic() + deadline_secs
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited {self.process.returncode}: {self.log()[-2000:]}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            time.sleep(0.2)
        raise RuntimeError(f"mlflow server did not answer /health within {deadline_secs:.0f} s: {self.log()[-2000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def log(self) -> str:
        with open(os.path.join(self.folder, "server.log"), errors="replace") as f:
            return f.read()
