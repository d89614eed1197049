"""A real BigQuery emulator (bqemulator, DuckDB-backed) on loopback, from its own environment (tests/tool_envs.py).

It is started with `BQEMU_GCS_LOCAL_ROOT` pointing where the storage emulator keeps
its objects on disk (`gcs_root`), so a load job from `gs://BUCKET/…` reads the very
files the job committed there, as BigQuery reads Cloud Storage. The environment's
`BIGQUERY_EMULATOR_HOST` (REST) and `BIGQUERY_EMULATOR_GRPC_HOST` (the Storage Read
API) are set while it runs, as a user would set them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from pipelines.app.pubsub_admin import free_port
from pipelines.plumbing.bigquery import EMULATOR_GRPC_HOST, EMULATOR_HOST
from tests import tool_envs

PROJECT = "complaints-test"


@contextlib.contextmanager
def bigquery_emulator(folder, gcs_root: str | None = None) -> Iterator[tool_envs.Server]:
    """Start the emulator; yield its server (`.process`, to freeze it) with `BIGQUERY_EMULATOR_HOST` set to its
    REST address; stop it after."""
    folder = str(folder)
    rest, grpc = free_port(), free_port()
    env = {**os.environ, "HOME": tool_envs.home("bqemulator")}  # its DuckDB extensions (tool_envs._AFTER)
    if gcs_root:
        env["BQEMU_GCS_LOCAL_ROOT"] = gcs_root
    server = tool_envs.Server(
        [tool_envs.executable("bqemulator"), "start", "--rest-port", str(rest), "--grpc-port", str(grpc),
         "--project", PROJECT, "--log-level", "warning"],
        f"http://127.0.0.1:{rest}/bigquery/v2/projects/{PROJECT}/datasets", os.path.join(folder, "bqemulator.log"),
        env=env, cwd=folder)
    server.start(deadline_secs=120)
    previous = {name: os.environ.get(name) for name in (EMULATOR_HOST, EMULATOR_GRPC_HOST)}
    os.environ[EMULATOR_HOST] = f"http://127.0.0.1:{rest}"
    os.environ[EMULATOR_GRPC_HOST] = f"127.0.0.1:{grpc}"
    try:
        yield server
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()

