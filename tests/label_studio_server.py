"""A real Label Studio on loopback, from its own environment (tests/tool_envs.py), offline, with an API token."""

from __future__ import annotations

import json
import os
import urllib.request

from pipelines.app.pubsub_admin import free_port
from tests import tool_envs

TOKEN = "complaints-test-token"


class LabelStudio:
    """`label-studio start` with a fresh data folder; `api(method, path, body)` speaks its REST API."""

    def __init__(self, folder):
        folder = str(folder)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "LABEL_STUDIO_USERNAME": "reviewer@example.com", "LABEL_STUDIO_PASSWORD": "not-secret-1",
               "LABEL_STUDIO_USER_TOKEN": TOKEN, "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
               "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false", "SENTRY_DSN": "",
               "FRONTEND_SENTRY_DSN": "", "HOST": self.url}
        self.server = tool_envs.Server(
            [tool_envs.executable("label-studio"), "start", "--no-browser", "--host", "127.0.0.1", "--port",
             str(port), "--data-dir", os.path.join(folder, "data")],
            f"{self.url}/health", os.path.join(folder, "label-studio.log"), env=env, cwd=folder)

    def __enter__(self) -> LabelStudio:
        self.server.start(deadline_secs=240)
        return self

    def __exit__(self, *_) -> None:
        self.server.stop()

    def api(self, method: str, path: str, body=None):
        return json.loads(self.get(path, method, body) or b"null")

    def get(self, path: str, method: str = "GET", body=None) -> bytes:
        """The answer's bytes (an export in CSV is no JSON)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method, headers={
            "Authorization": f"Token {TOKEN}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.read()
