"""A live Label Studio, through its REST API: the review loop without files in between.

`review export --label-studio URL --project NAME` creates the project (or brings its
labelling config up to date) and pushes only the tasks it does not hold yet, known by
their `review_key` (one complaint of one night), so exporting a night again, or an
overlapping selection, never makes a second task. `review import --label-studio URL
--project NAME` pulls the project's JSON export, which holds every annotation with its
annotator and time. Only documented endpoints are used, with the standard library: the
Label Studio SDK pins its own dependencies, which conflict with this project's lock.

The token is read from `LABEL_STUDIO_API_KEY` (the SDK's name for it), never from a flag:
a flag's value lands in shell history and in the process list.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request

from model.errors import UserError
from pipelines.app import label_studio

TOKEN_VARIABLE = "LABEL_STUDIO_API_KEY"
TIMEOUT_SECS = 120  # an export of a large project is built while the request waits


class Studio:
    """One Label Studio server, spoken to with the user's token; every failure is one line naming what to do."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        token = token if token is not None else os.environ.get(TOKEN_VARIABLE, "")
        if not token.strip():
            raise UserError(f"set {TOKEN_VARIABLE} to your Label Studio access token (Account & Settings → Legacy "
                            "Token): the token is read from the environment, never from a flag")
        self.token = token.strip()

    def call(self, method: str, path: str, body: object = None) -> bytes:
        request = urllib.request.Request(
            self.url + path, data=None if body is None else json.dumps(body).encode(), method=method,
            headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECS) as answer:
                return answer.read()
        except urllib.error.HTTPError as exc:
            said = exc.read()[:300].decode("utf-8", "replace")
            if exc.code in (401, 403):
                raise UserError(f"Label Studio at {self.url} refused the token in {TOKEN_VARIABLE} ({exc.code}): "
                                "give a valid access token (Account & Settings → Legacy Token)") from None
            raise UserError(f"Label Studio at {self.url} answered {method} {path} with {exc.code}: {said}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise UserError(f"cannot reach Label Studio at {self.url} ({getattr(exc, 'reason', exc)}): is it "
                            "running, and is the URL right?") from None

    def json(self, method: str, path: str, body: object = None):
        return json.loads(self.call(method, path, body) or b"null")

    def project(self, title: str, config: str | None = None) -> int:
        """The id of the project called `title`; created with `config` when there is none (and `config` is
        given), its labelling config brought up to date when it differs."""
        found, page = [], 1
        while True:
            listed = self.json("GET", f"/api/projects?page={page}&page_size=100")
            results = listed.get("results", []) if isinstance(listed, dict) else listed
            found += [p for p in results if p.get("title") == title]
            if not isinstance(listed, dict) or not listed.get("next"):
                break
            page += 1
        if len(found) > 1:
            raise UserError(f"Label Studio at {self.url} has {len(found)} projects called {title!r}: rename all but "
                            "one, so answers are read from one place")
        if not found:
            if config is None:
                raise UserError(f"Label Studio at {self.url} has no project called {title!r}: export the night "
                                "to it first (`complaints review export --label-studio … --project …`)")
            return int(self.json("POST", "/api/projects", {"title": title, "label_config": config})["id"])
        project = found[0]
        if config is not None and project.get("label_config") != config:
            self.json("PATCH", f"/api/projects/{project['id']}", {"label_config": config})
        return int(project["id"])

    def export(self, project: int) -> list:
        """Every task of the project with all its annotations (Label Studio's JSON export)."""
        query = urllib.parse.urlencode({"exportType": "JSON", "download_all_tasks": "true"})
        try:
            return json.loads(self.call("GET", f"/api/projects/{project}/export?{query}"))
        except ValueError:
            raise UserError(f"Label Studio at {self.url} sent an export of project {project} that is no JSON: is "
                            "the URL Label Studio's own?") from None

    def push(self, project: int, tasks: list[dict]) -> tuple[int, int]:
        """Import the tasks the project does not hold yet (by `review_key`); (pushed, already there)."""
        held = {(t.get("data") or {}).get("review_key") for t in self.export(project)}
        new = [t for t in tasks if t["data"]["review_key"] not in held]
        if new:
            self.json("POST", f"/api/projects/{project}/import", new)
        return len(new), len(tasks) - len(new)


def push_night(url: str, title: str, records: list[dict], labels: list[str]) -> str:
    """Push a night's chosen rows as tasks; the line the command prints."""
    studio = Studio(url)
    project = studio.project(title, label_studio.labelling_config(labels))
    pushed, held = studio.push(project, [label_studio.task(r) for r in records])
    return (f"pushed {pushed:,} new task(s) to project {title!r} at {studio.url} ({held:,} of the chosen rows were "
            "there already)")


def pulled(url: str, title: str) -> tuple[list[dict], dict[str, int]]:
    """The project's answers, as `label_studio.answers` reads an export file."""
    studio = Studio(url)
    try:
        return label_studio.answers(studio.export(studio.project(title)))
    except ValueError as exc:
        raise UserError(f"Label Studio's export of {title!r} is not in the documented shape: {exc}") from None
