"""Never a half-written archive: stage, then commit, then mark `_SUCCESS` last.

A run writes everything under `OUTPUT/.staging-<run id>/` while it holds the output
(`pipelines.plumbing.hold`). The output itself is not touched until the pipeline has finished,
the books balance and the drift report is written: a run that fails before that leaves
the previous night's output exactly as it was, `_SUCCESS` included.

The commit (`Commit`) first writes every staged file it will publish, `summary.json`
and the `_SUCCESS` marker (whose content is the run id) in the staging folder, then
its journal (`pipelines.plumbing.journal`): every move it will make. Only then does it
move `_SUCCESS` aside, the previous run's files aside (`OUTPUT/.replaced-<run id>/`),
the staged files up, apply the stores outside the output (BigQuery), and move
`_SUCCESS` up last. It checks before each move that the run still holds the output
(`pipelines.plumbing.hold`). A commit that fails is settled backwards from its journal
by the run itself; a commit whose process was killed at any instant is settled by the
next start or `complaints unlock`: undone, or finished if its `_SUCCESS` was down.
Object stores have no atomic rename, so on `gs://` a reader can see a mixture of files
during the commit, but never with a `_SUCCESS` beside it. Consumers read an output
only when `_SUCCESS` exists, and may compare its run id before and after reading to be
sure no commit happened in between.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
from collections.abc import Callable

from apache_beam.io.filesystems import FileSystems

from model import files
from model.errors import UserError
from pipelines.plumbing import journal

LOG = logging.getLogger(__name__)

SUCCESS = "_SUCCESS"
PENDING = "_PENDING.json"  # a night kept staged for a later `complaints commit` (`pipelines.nightly.pending`)
SUMMARY = "summary.json"
REPORT = "report.png"


def join(directory: str, name: str) -> str:
    return FileSystems.join(directory, name)


def staging_dir(output: str, run_id: str) -> str:
    return join(output, f".staging-{run_id}")


def _matching(directory: str, pattern: str) -> list[str]:
    return [m.path for m in FileSystems.match([join(directory, pattern)])[0].metadata_list]


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str, data: bytes) -> None:
    """Whole, or an error naming the path (a full disk's own message names none)."""
    try:
        with FileSystems.create(path) as f:
            f.write(data)
    except OSError as exc:
        raise OSError(exc.errno, f"{exc.strerror or exc} writing {path}") from None


def read_summary(output: str, option: str = "--compare-to") -> dict:
    """A completed run's summary.json (for `option`), or one line saying why it cannot be read."""
    path = join(output, SUMMARY)
    if not FileSystems.exists(join(output, SUCCESS)) or not FileSystems.exists(path):
        raise UserError(f"{option} {output} is not a completed output (no _SUCCESS or summary.json): "
                        "point it at a night's --output")
    try:
        summary = json.loads(read_text(path))
    except ValueError:
        raise UserError(f"{path} is not valid JSON: point {option} at a night's --output") from None
    problem = _summary_problem(summary)
    if problem:
        raise UserError(f"{path} is not a nightly summary this job can compare with ({problem}): point "
                        f"{option} at a night's --output")
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


def recover(output: str, keep: str, alive: Callable[[str], bool], settlers) -> tuple[list[str], list[str]]:
    """What every start and `complaints unlock` does first, holding the output: settle the commits of runs that
    died (`pipelines.plumbing.journal.settle_dead`), then clear their other leftovers. Returns (a sentence per
    commit settled, the folders cleared)."""
    settled = journal.settle_dead(output, settlers, alive)
    return settled, clear_leftovers(output, keep, alive)


def clear_leftovers(output: str, keep: str, alive: Callable[[str], bool] = lambda staging: False) -> list[str]:
    """Remove the staging and set-aside folders of earlier runs that died; the caller holds the output and has
    settled their journals (`pipelines.plumbing.journal.settle_dead`).

    A run that lost its hold (a forced unlock) may still be working: `alive(staging)`
    says so, and its folders are left to it (it fails at its commit and removes them).
    A folder a journal still names is never removed here, nor a set-aside folder while
    the output has no `_SUCCESS` (it may hold the only copy of a night), nor a night kept
    staged for `complaints commit` (`PENDING`)."""
    prefixes = (".staging-", ".replaced-")
    if not files.remote(output):  # local folders, empty ones too
        found = [join(output, name) for name in os.listdir(output) if name.startswith(prefixes)]
    else:  # object stores list objects, not folders
        matches = FileSystems.match([join(output, prefix + "*/**") for prefix in prefixes])
        found = [m.path for match in matches for m in match.metadata_list]
    folders = sorted({_top_folder(output, path) for path in found} - {keep.rstrip("/")})
    journaled = {journal.run_of(path) for path in journal.found_in(output)}
    complete = FileSystems.exists(join(output, SUCCESS))
    cleared = []
    for folder in folders:
        run_id = journal.run_id_of(folder)
        if run_id in journaled or alive(staging_dir(output, run_id)) or FileSystems.exists(join(folder, PENDING)):
            continue
        if posixpath.basename(folder).startswith(".replaced-") and not complete:
            continue
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
        journal.remove_tree(staging)
    except Exception:  # noqa: BLE001 (best effort: the error being reported matters more)
        pass


class CommitFailed(Exception):
    """A commit step failed; `restored` says whether the previous output is back as it was, `unsettled` what a
    store outside the output left open (then its journal stays for the next start or `complaints unlock`)."""

    def __init__(self, cause: BaseException, restored: bool, unsettled: str = ""):
        super().__init__(str(cause))
        self.cause, self.restored, self.unsettled = cause, restored, unsettled


def unfenced() -> None:
    """A commit outside any hold (tests of the commit alone)."""


class Commit:
    """Replace an output's files with a run's staged ones, all or nothing (see the module docstring).

    `publish(patterns)` for each sink's files and `external(store)` for each store
    outside the output plan the commit; `finish(summary)` writes the journal
    (`pipelines.plumbing.journal`) and makes every move; any exception on the way is a
    `CommitFailed` after the journal is settled backwards. `fence` raises when the run
    no longer holds the output (`pipelines.plumbing.hold.OutputLock.check`); it is called
    before every move, so a run that lost its hold moves nothing more.
    """

    def __init__(self, output: str, staging: str, run_id: str, fence: Callable[[], None] = unfenced):
        self.output, self.staging, self.run_id, self.fence = output, staging, run_id, fence
        self.journal = journal.Journal(run_id, output, staging, join(output, f".replaced-{run_id}"))
        self.patterns: list[str] = []
        self.published: list[str] = []
        self.stores: list = []  # stores outside the output that commit with it (`external`)
        self.notes: dict = {}  # what the sinks add to the summary (the BigQuery tables' rows)
        self.summary: dict | None = None  # as `finish` writes it

    def publish(self, patterns: tuple[str, ...]) -> list[str]:
        """Plan: the output's files matching `patterns` go aside and the staged ones up. Returns their names."""
        staged = sorted({p for pattern in patterns for p in _matching(self.staging, pattern)})
        names = [posixpath.basename(p) for p in staged]
        self.journal.bring_up += [[path, join(self.output, name)] for path, name in zip(staged, names, strict=True)]
        self.patterns += patterns
        self.published += names
        return names

    def staged(self, names: list[str]) -> list[str]:
        """Where planned files are until they move (what a store loads before any move)."""
        return [join(self.staging, name) for name in names]

    def external(self, store) -> None:
        """A store outside the output that commits with it (`pipelines.sinks.bigquery_tables`): its `record()`
        goes into the journal, its `apply(save)` runs last before `_SUCCESS` (calling `save()` whenever its
        record changed), and the same kind's settler (`pipelines.sinks.settlers`) undoes or finishes it."""
        self.stores.append(store)

    def finish(self, summary: dict, settlers: dict | None = None) -> dict:
        """The report and summary, the journal, every move, the stores, `_SUCCESS` last; returns the summary as
        written (`output_files` and the sinks' notes added)."""
        self.publish((REPORT,))
        summary = {**summary, **self.notes, "output_files": sorted(self.published)}
        write_text(join(self.staging, SUMMARY), json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
        self.publish((SUMMARY,))
        self.summary = summary
        marker = join(self.staging, SUCCESS)
        write_text(marker, self.run_id)
        self._plan(marker)
        self.fence()
        self.journal.save()  # before the first move: from here on a kill is settled from it
        if self.journal.set_aside and not FileSystems.exists(self.journal.aside):
            FileSystems.mkdirs(self.journal.aside)
        for source, target in self.journal.set_aside:
            self._move(source, target)
        journal.fsync_folder(self.output)
        self.journal.phase = journal.UP
        self.journal.save()
        for source, target in self.journal.bring_up[:-1]:
            self._move(source, target)
        for store in self.stores:
            self.fence()
            store.apply(self.journal.save)
        self._move(*self.journal.bring_up[-1])  # _SUCCESS: the night is committed
        self._settle_forward({} if settlers is None else settlers)
        return summary

    def _plan(self, marker: str) -> None:
        success = join(self.output, SUCCESS)
        previous = [success] if FileSystems.exists(success) else []
        previous += sorted({p for pattern in self.patterns for p in _matching(self.output, pattern)})
        self.journal.set_aside = [[path, join(self.journal.aside, posixpath.basename(path))] for path in previous]
        self.journal.bring_up.append([marker, success])
        self.journal.externals = [store.record() for store in self.stores]

    def _move(self, source: str, target: str) -> None:
        self.fence()
        FileSystems.rename([source], [target])

    def _settle_forward(self, settlers: dict) -> None:
        """Best effort: the night is committed; whatever is left is cleared by the next start from the journal."""
        try:
            journal.fsync_folder(self.output)
            journal.settle(self.journal, settlers)
        except Exception as exc:  # noqa: BLE001 (the commit has succeeded; the journal finishes it next time)
            LOG.warning("run %s is committed; clearing up after it failed (%s): the next start finishes that",
                        self.run_id, exc)

    def _committed(self) -> bool:
        try:
            return self.summary is not None and self.journal.phase == journal.UP and self.journal.committed()
        except Exception:  # noqa: BLE001 (cannot tell: roll back, which undoes from what it finds)
            return False

    def rollback(self, settlers: dict) -> tuple[bool, str]:
        """Undo the stores and every move begun; (whether the previous output is back as it was, what a store left
        open). Before the journal was written nothing had moved."""
        if not _exists(self.journal.path):
            return True, ""
        try:
            journal.settle(self.journal, settlers, keep_staging=True)
            return True, ""
        except journal.Unsettled as exc:
            return True, str(exc)
        except Exception:  # noqa: BLE001 (the output stays without _SUCCESS and the journal settles it later)
            return False, ""

    def run(self, steps, settlers: dict | None = None) -> dict:
        """`steps(self)` (the sinks' plans, then `finish`), or settle backwards and raise CommitFailed."""
        try:
            return steps(self)
        except Exception as exc:
            if self._committed():  # `_SUCCESS` is down whole (its move failed only at its clean-up): finish it
                self._settle_forward({} if settlers is None else settlers)
                return self.summary
            restored, unsettled = self.rollback({} if settlers is None else settlers)
            raise CommitFailed(exc, restored, unsettled) from exc


def _exists(path: str) -> bool:
    try:
        return FileSystems.exists(path)
    except Exception:  # noqa: BLE001 (cannot tell: settle it, which undoes from what it finds)
        return True
