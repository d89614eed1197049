"""Never a half-written archive: stage, then commit, then mark `_SUCCESS` last.

A run writes everything under `OUTPUT/.staging-<run id>/` while it holds the output
(`pipelines.lock`). The output itself is not touched until the pipeline has finished,
the books balance and the drift report is written: a run that fails before that leaves
the previous night's output exactly as it was, `_SUCCESS` included.

The commit (`Commit`) then withdraws `_SUCCESS`, moves the previous run's files aside
(`OUTPUT/.replaced-<run id>/`), moves the staged files up, writes `summary.json` and,
last of all, `_SUCCESS`, whose content is the run id. If any step fails, the steps
done so far are undone in reverse and the old `_SUCCESS` is written back; if even the
undoing fails, the output has no `_SUCCESS` and so does not claim to be complete. A
crash in the middle of a commit likewise leaves no `_SUCCESS`. Object stores have no
atomic rename, so on `gs://` a reader can see a mixture of files during the commit, but
never with a `_SUCCESS` beside it. Consumers read an output only when `_SUCCESS`
exists, and may compare its run id before and after reading to be sure no commit
happened in between.
"""

from __future__ import annotations

import json
import os
import posixpath

from apache_beam.io.filesystems import FileSystems

from model.errors import UserError

SUCCESS = "_SUCCESS"
SUMMARY = "summary.json"
REPORT = "report.png"


def join(directory: str, name: str) -> str:
    return FileSystems.join(directory, name)


def staging_dir(output: str, run_id: str) -> str:
    return join(output, f".staging-{run_id}")


def _delete(paths: list[str]) -> None:
    existing = [p for p in paths if FileSystems.exists(p)]
    if existing:
        FileSystems.delete(existing)


def _matching(directory: str, pattern: str) -> list[str]:
    return [m.path for m in FileSystems.match([join(directory, pattern)])[0].metadata_list]


def write_text(path: str, text: str) -> None:
    with FileSystems.create(path) as f:
        f.write(text.encode("utf-8"))


def write_bytes(path: str, data: bytes) -> None:
    with FileSystems.create(path) as f:
        f.write(data)


def read_summary(output: str) -> dict:
    """A completed run's summary.json (for --compare-to), or one line saying why it cannot be read."""
    path = join(output, SUMMARY)
    if not FileSystems.exists(join(output, SUCCESS)) or not FileSystems.exists(path):
        raise UserError(f"--compare-to {output} is not a completed output (no _SUCCESS or summary.json): "
                        "point it at a previous night's --output")
    try:
        return json.loads(read_text(path))
    except ValueError:
        raise UserError(f"{path} is not valid JSON: point --compare-to at a previous night's --output") from None


def read_text(path: str) -> str:
    with FileSystems.open(path, compression_type="uncompressed") as f:
        return f.read().decode("utf-8")


def prepare(output: str, staging: str) -> None:
    """Check the output is writable and create the staging dir; the output's files are not touched."""
    probe = join(staging, ".write-test")
    try:
        if not FileSystems.exists(output):
            FileSystems.mkdirs(output)
        if not FileSystems.exists(staging):
            FileSystems.mkdirs(staging)
        write_text(probe, "ok")
        FileSystems.delete([probe])
    except Exception as exc:  # noqa: BLE001 (filesystems raise their own types)
        raise UserError(
            f"cannot write to the output location {output} ({str(exc).splitlines()[0]}): "
            "choose a writable --output"
        ) from None


def clear_leftovers(output: str, keep: str) -> list[str]:
    """Remove the staging and set-aside folders of earlier runs that died; the caller holds the output."""
    prefixes = (".staging-", ".replaced-")
    if "://" not in output:  # local folders, empty ones too
        found = [join(output, name) for name in os.listdir(output) if name.startswith(prefixes)]
    else:  # object stores list objects, not folders
        matches = FileSystems.match([join(output, prefix + "*/**") for prefix in prefixes])
        found = [m.path for match in matches for m in match.metadata_list]
    folders = sorted({_top_folder(output, path) for path in found} - {keep.rstrip("/")})
    for folder in folders:
        abort(folder)
    return folders


def _top_folder(output: str, path: str) -> str:
    """`OUTPUT/.staging-x` for any path under it (object stores list files, not folders)."""
    relative = path[len(output.rstrip("/")) + 1:]
    return join(output, relative.split("/")[0])


def abort(staging: str) -> None:
    """Remove what a failed run staged; nothing in the output directory changed."""
    try:
        if "://" in staging:  # object stores have no folders: remove the objects under the prefix
            _delete([m.path for m in FileSystems.match([join(staging, "**")])[0].metadata_list])
        else:
            _delete([staging])
    except Exception:  # noqa: BLE001 (best effort: the error being reported matters more)
        pass


class CommitFailed(Exception):
    """A commit step failed; `restored` says whether the previous output is back as it was."""

    def __init__(self, cause: BaseException, restored: bool):
        super().__init__(str(cause))
        self.cause, self.restored = cause, restored


class Commit:
    """Replace an output's files with a run's staged ones, all or nothing (see the module docstring).

    `begin()`, then `publish(patterns)` for each sink's files, then `finish(summary)`;
    any exception on the way is a `CommitFailed` after `rollback()`.
    """

    def __init__(self, output: str, staging: str, run_id: str):
        self.output, self.staging, self.run_id = output, staging, run_id
        self.aside = join(output, f".replaced-{run_id}")
        self.previous_success: bytes | None = None
        self.moved_aside: list[tuple[str, str]] = []  # (original, aside) pairs
        self.moved_up: list[tuple[str, str]] = []  # (staged, final) pairs
        self.published: list[str] = []

    def begin(self) -> None:
        success = join(self.output, SUCCESS)
        if FileSystems.exists(success):
            with FileSystems.open(success, compression_type="uncompressed") as f:
                self.previous_success = f.read()
            FileSystems.delete([success])

    def publish(self, patterns: tuple[str, ...]) -> list[str]:
        """Move the output's files matching `patterns` aside and the staged ones up; returns the published names."""
        old = sorted({p for pattern in patterns for p in _matching(self.output, pattern)})
        if old:
            if not FileSystems.exists(self.aside):
                FileSystems.mkdirs(self.aside)
            aside = [join(self.aside, posixpath.basename(p)) for p in old]
            FileSystems.rename(old, aside)
            self.moved_aside += list(zip(old, aside, strict=True))
        staged = sorted({p for pattern in patterns for p in _matching(self.staging, pattern)})
        final = [join(self.output, posixpath.basename(p)) for p in staged]
        if staged:
            FileSystems.rename(staged, final)
            self.moved_up += list(zip(staged, final, strict=True))
        names = [posixpath.basename(p) for p in final]
        self.published += names
        return names

    def finish(self, summary: dict) -> dict:
        """The report and summary, `_SUCCESS` last; returns the summary as written (`output_files` added)."""
        self.publish((REPORT,))
        summary = {**summary, "output_files": sorted(self.published)}
        summary_path = join(self.output, SUMMARY)
        if FileSystems.exists(summary_path):
            self.publish((SUMMARY,))  # moves the old one aside; nothing of that name is staged
        write_text(summary_path, json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
        self.moved_up.append(("", summary_path))
        marker = join(self.staging, SUCCESS)  # written whole, then renamed: a reader never sees it half-written
        write_text(marker, self.run_id)
        FileSystems.rename([marker], [join(self.output, SUCCESS)])
        for leftover in (self.aside, self.staging):
            abort(leftover)  # the output is complete; a leftover is cleared by the next run
        return summary

    def rollback(self) -> bool:
        """Undo the steps done so far, in reverse; True if the previous output is back as it was."""
        try:
            for staged, final in reversed(self.moved_up):
                if staged:
                    FileSystems.rename([final], [staged])
                else:
                    _delete([final])
            for original, aside in reversed(self.moved_aside):
                FileSystems.rename([aside], [original])
            if self.previous_success is not None:
                write_bytes(join(self.output, SUCCESS), self.previous_success)
            else:
                _delete([join(self.output, SUCCESS)])
        except Exception:  # noqa: BLE001 (the output stays without _SUCCESS: never looks complete)
            return False
        abort(self.aside)
        return True

    def run(self, steps) -> dict:
        """`begin()`, `steps(self)` (the sinks' publishing, then `finish`), or roll back and raise CommitFailed."""
        try:
            self.begin()
            return steps(self)
        except Exception as exc:
            raise CommitFailed(exc, self.rollback()) from exc
