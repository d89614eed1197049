"""Never a half-written archive: stage, then commit, then mark `_SUCCESS` last.

A run writes everything under `OUTPUT/.staging-<run id>/` while it holds the output
(`pipelines.nightly.hold`). The output itself is not touched until the pipeline has finished,
the books balance and the drift report is written: a run that fails before that leaves
the previous night's output exactly as it was, `_SUCCESS` included.

The commit (`Commit`) then moves `_SUCCESS` aside, moves the previous run's files aside
(`OUTPUT/.replaced-<run id>/`), moves the staged files up, then `summary.json` and,
last of all, `_SUCCESS`, whose content is the run id. It moves one file at a time and
records each move before it starts, checking before each that the run still holds
the output (`pipelines.nightly.hold`). If any step fails, every move begun is undone in
reverse from what is found at both ends (a rename that failed part-way, as a copy
without its delete on gs://, included), and yesterday's `_SUCCESS` comes back last;
if even the undoing fails, the output has no `_SUCCESS` and so does not claim to be
complete. A crash in the middle of a commit likewise leaves no `_SUCCESS`. Object stores have no
atomic rename, so on `gs://` a reader can see a mixture of files during the commit, but
never with a `_SUCCESS` beside it. Consumers read an output only when `_SUCCESS`
exists, and may compare its run id before and after reading to be sure no commit
happened in between.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Callable

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
        summary = json.loads(read_text(path))
    except ValueError:
        raise UserError(f"{path} is not valid JSON: point --compare-to at a previous night's --output") from None
    problem = _summary_problem(summary)
    if problem:
        raise UserError(f"{path} is not a nightly summary this job can compare with ({problem}): point "
                        "--compare-to at a previous night's --output")
    return summary


def _summary_problem(summary) -> str | None:
    """What the drift check and the report would trip over after the night was labelled (they read the label
    shares, the count predicted and the output's name)."""
    if not isinstance(summary, dict):
        return "not a JSON object"
    labels = summary.get("labels")
    if not isinstance(labels, dict):
        return "no 'labels' object"
    for name, figures in labels.items():
        share = figures.get("share") if isinstance(figures, dict) else None
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            return f"label {name[:80]!r} has no share between 0 and 1"
    predicted = summary.get("predicted")
    if predicted is not None and (isinstance(predicted, bool) or not isinstance(predicted, int) or predicted < 0):
        return "'predicted' is not a count"
    if not isinstance(summary.get("output", ""), str):
        return "'output' is not a path"
    return None


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


def clear_leftovers(output: str, keep: str, alive: Callable[[str], bool] = lambda staging: False) -> list[str]:
    """Remove the staging and set-aside folders of earlier runs that died; the caller holds the output.

    A run that lost its hold (a forced unlock) may still be working: `alive(staging)`
    says so, and its folders are left to it (it fails at its commit and removes them)."""
    prefixes = (".staging-", ".replaced-")
    if "://" not in output:  # local folders, empty ones too
        found = [join(output, name) for name in os.listdir(output) if name.startswith(prefixes)]
    else:  # object stores list objects, not folders
        matches = FileSystems.match([join(output, prefix + "*/**") for prefix in prefixes])
        found = [m.path for match in matches for m in match.metadata_list]
    folders = sorted({_top_folder(output, path) for path in found} - {keep.rstrip("/")})
    cleared = []
    for folder in folders:
        run_id = posixpath.basename(folder).split("-", 1)[1]
        if not alive(staging_dir(output, run_id)):
            abort(folder)
            cleared.append(folder)
    return cleared


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


def unfenced() -> None:
    """A commit outside any hold (tests of the commit alone)."""


class Commit:
    """Replace an output's files with a run's staged ones, all or nothing (see the module docstring).

    `begin()`, then `publish(patterns)` for each sink's files, then `finish(summary)`;
    any exception on the way is a `CommitFailed` after `rollback()`. `fence` raises when
    the run no longer holds the output (`pipelines.nightly.hold.OutputLock.check`); it is called
    before every move, so a run that lost its hold moves nothing more.
    """

    def __init__(self, output: str, staging: str, run_id: str, fence: Callable[[], None] = unfenced):
        self.output, self.staging, self.run_id, self.fence = output, staging, run_id, fence
        self.aside = join(output, f".replaced-{run_id}")
        self.moves: list[tuple[str, str]] = []  # every single-file move begun, in order, each as (from, to)
        self.published: list[str] = []
        self.externals: list = []  # stores outside the output that commit with it (`external`)
        self.applied: list = []
        self.notes: dict = {}  # what the sinks add to the summary (the BigQuery tables' rows)

    def _move(self, source: str, target: str) -> None:
        """One file, recorded before it starts: a move that fails part-way (on gs:// a rename is a copy and a
        delete) is undone from what `rollback` then finds at both ends."""
        self.fence()
        self.moves.append((source, target))
        FileSystems.rename([source], [target])

    def _set_aside(self, path: str) -> None:
        if not FileSystems.exists(self.aside):
            FileSystems.mkdirs(self.aside)
        self._move(path, join(self.aside, posixpath.basename(path)))

    def begin(self) -> None:
        """Withdraw `_SUCCESS` first (moved aside, so a rollback puts back the very same file)."""
        self.fence()
        success = join(self.output, SUCCESS)
        if FileSystems.exists(success):
            self._set_aside(success)

    def publish(self, patterns: tuple[str, ...]) -> list[str]:
        """Move the output's files matching `patterns` aside and the staged ones up; returns the published names."""
        for path in sorted({p for pattern in patterns for p in _matching(self.output, pattern)}):
            self._set_aside(path)
        staged = sorted({p for pattern in patterns for p in _matching(self.staging, pattern)})
        names = [posixpath.basename(p) for p in staged]
        for path, name in zip(staged, names, strict=True):
            self._move(path, join(self.output, name))
        self.published += names
        return names

    def external(self, store) -> None:
        """A store outside the output that commits with it (`pipelines.sinks.bigquery_tables`): its `apply()`
        runs last before `_SUCCESS`, its `undo()` if a later step fails, its `close()` at the end either way."""
        self.externals.append(store)

    def finish(self, summary: dict) -> dict:
        """The report and summary, the external stores, `_SUCCESS` last; returns the summary as written
        (`output_files` and the sinks' notes added).

        Each file is written whole in the staging folder and then moved up, like the sinks' files."""
        self.publish((REPORT,))
        summary = {**summary, **self.notes, "output_files": sorted(self.published)}
        write_text(join(self.staging, SUMMARY), json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
        self.publish((SUMMARY,))
        marker = join(self.staging, SUCCESS)
        write_text(marker, self.run_id)
        for store in self.externals:
            self.fence()
            self.applied.append(store)  # before: an answer lost after the store committed is undone too
            store.apply()
        self._move(marker, join(self.output, SUCCESS))
        for leftover in (self.aside, self.staging):
            abort(leftover)  # the output is complete; a leftover is cleared by the next run
        self._close()
        return summary

    def _close(self) -> None:
        for store in self.externals:
            store.close()

    def rollback(self) -> bool:
        """Undo the external stores and every move begun, in reverse; True if the previous output is back as it
        was."""
        restored = True
        try:
            for store in reversed(self.applied):
                store.undo()
        except Exception:  # noqa: BLE001 (reported as not restored; the files are still put back)
            restored = False
        restored = self._undo_files() and restored
        self._close()
        return restored

    def _undo_files(self) -> bool:
        try:
            for source, target in reversed(self.moves):
                _undo_move(source, target)
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


def _undo_move(source: str, target: str) -> None:
    """Put one file back where it was, whatever state its move reached."""
    there, here = FileSystems.exists(target), FileSystems.exists(source)
    if there and not here:  # moved: move it back
        FileSystems.rename([target], [source])
    elif there:  # copied but not deleted (an object store's rename failed part-way): the source is whole
        FileSystems.delete([target])
    elif not here:
        raise FileNotFoundError(f"{source} is neither where it was nor where it was moved to")
