"""A commit over multi-shard outputs with the Nth single-file operation failed, on any filesystem Beam supports.

`SingleFileFaults` stands in for `pipelines.plumbing.commit`'s `FileSystems` and fails one
single-file operation, counted below Beam's list calls: a rename is one operation
on a local disk and two (copy, then delete) on an object store, where a rename that
fails at its delete leaves both copies. Like Beam, a list call goes on with its other
files after one fails and raises at the end, so a caller that records a list's moves
only when the call returns is caught out, as a real object store would catch it.
"""

from __future__ import annotations

import json

from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems

from pipelines.plumbing import commit as out
from pipelines.plumbing import journal
from pipelines.sinks import parquet_files

YESTERDAY = {"predictions-00000-of-00003.parquet": b"y-p0", "predictions-00001-of-00003.parquet": b"y-p1",
             "predictions-00002-of-00003.parquet": b"y-p2", "dead_letters-00000-of-00002.parquet": b"y-d0",
             "dead_letters-00001-of-00002.parquet": b"y-d1", "report.png": b"y-report",
             "summary.json": b'{"night": "yesterday"}\n', "_SUCCESS": b"yesterday"}
TONIGHT = {"predictions-00000-of-00004.parquet": b"t-p0", "predictions-00001-of-00004.parquet": b"t-p1",
           "predictions-00002-of-00004.parquet": b"t-p2", "predictions-00003-of-00004.parquet": b"t-p3",
           "dead_letters-00000-of-00001.parquet": b"t-d0", "report.png": b"t-report"}
TONIGHT_SUMMARY = {"night": "tonight"}


class SingleFileFaults:
    """`FileSystems`, with its `at`-th single-file change raising `error` (see the module docstring)."""

    def __init__(self, at: int, error: Exception, object_store: bool):
        self.at, self.error, self.object_store, self.count = at, error, object_store, 0

    def __getattr__(self, name):
        return getattr(FileSystems, name)

    def _step(self) -> None:
        self.count += 1
        if self.count == self.at:
            raise self.error

    def rename(self, sources: list[str], targets: list[str]) -> None:
        failures = {}
        for source, target in zip(sources, targets, strict=True):
            try:
                if self.object_store:
                    self._step()
                    FileSystems.copy([source], [target])
                    self._step()
                    FileSystems.delete([source])
                else:
                    self._step()
                    FileSystems.rename([source], [target])
            except Exception as exc:  # noqa: BLE001 (as Beam: go on with the others, raise at the end)
                failures[(source, target)] = exc
        if failures:
            raise BeamIOError("Rename operation failed", failures)

    def delete(self, paths: list[str]) -> None:
        for path in paths:
            self._step()
            FileSystems.delete([path])

    def create(self, path: str, *args, **kwargs):
        self._step()
        return FileSystems.create(path, *args, **kwargs)

    def mkdirs(self, path: str) -> None:
        self._step()
        FileSystems.mkdirs(path)

    def write_durably(self, path: str, data: bytes) -> None:
        """The journal's own write (a temporary file, fsynced and renamed, on a local disk): one operation."""
        self._step()
        WRITE_DURABLY(path, data)


WRITE_DURABLY = journal.write_durably


def faulty(filesystems, monkeypatch) -> None:
    """Every file operation of the commit and of its journal through `filesystems`."""
    for module in (out, journal):
        monkeypatch.setattr(module, "FileSystems", filesystems)
    monkeypatch.setattr(journal, "write_durably", getattr(filesystems, "write_durably", WRITE_DURABLY))


def healthy(monkeypatch) -> None:
    for module in (out, journal):
        monkeypatch.setattr(module, "FileSystems", FileSystems)
    monkeypatch.setattr(journal, "write_durably", WRITE_DURABLY)


def lay_out(output: str) -> None:
    """Yesterday's complete output in `output`, tonight's files staged beside it (`.staging-tonight`)."""
    for name, data in YESTERDAY.items():
        out.write_bytes(out.join(output, name), data)
    staging = out.staging_dir(output, "tonight")
    for name, data in TONIGHT.items():
        out.write_bytes(out.join(staging, name), data)


def commit(output: str, filesystems, monkeypatch, fence=out.unfenced) -> dict:
    """Tonight's commit, as the nightly job makes it, through `filesystems`."""
    faulty(filesystems, monkeypatch)
    transaction = out.Commit(output, out.staging_dir(output, "tonight"), "tonight", fence)

    def steps(c: out.Commit) -> dict:
        c.publish((parquet_files.PREDICTION_FILES, parquet_files.DEAD_LETTER_FILES))
        return c.finish(TONIGHT_SUMMARY)
    try:
        return transaction.run(steps)
    finally:
        healthy(monkeypatch)


def restart(output: str, filesystems, monkeypatch) -> list[str]:
    """What the next start (or `complaints unlock`) does first: settle the dead commits from their journals."""
    faulty(filesystems, monkeypatch)
    try:
        return out.recover(output, "", lambda staging: False, {})[0]
    finally:
        healthy(monkeypatch)


def visible(output: str) -> dict[str, bytes]:
    """The output's own files (not the hidden staging and set-aside folders) and their bytes."""
    found = {}
    for m in FileSystems.match([out.join(output, "**")])[0].metadata_list:
        name = m.path[len(output.rstrip("/")) + 1:]
        if "/" not in name and not name.startswith("."):
            with FileSystems.open(m.path, compression_type="uncompressed") as f:
                found[name] = f.read()
    return found


def state(output: str) -> str:
    """'yesterday' or 'tonight' when the output is exactly one night's whole, with its `_SUCCESS`; 'incomplete'
    when it has no `_SUCCESS`; otherwise a description of the mixture."""
    files = visible(output)
    if "_SUCCESS" not in files:
        return "incomplete"
    if files == YESTERDAY:
        return "yesterday"
    summary = json.loads(files.get("summary.json", b"{}"))
    expected = {**TONIGHT, "_SUCCESS": b"tonight"}
    if {k: v for k, v in files.items() if k != "summary.json"} == expected and \
            summary.get("night") == "tonight" and sorted(summary.get("output_files", [])) == sorted(TONIGHT):
        return "tonight"
    return f"a mixture beside _SUCCESS {files['_SUCCESS']!r}: {sorted(files)}"


def fail_each_operation(new_output, monkeypatch, error, object_store: bool):
    """(output, what was raised, whether the fault was reached) for tonight's commit with its 1st, 2nd, …
    single-file operation failed, until one whose operations all ran (a fault in the clean-up after `_SUCCESS`
    leaves a commit that succeeded). `new_output()` gives a fresh output location each time."""
    at = 0
    while True:
        at += 1
        assert at <= 200, "the commit never ran out of operations to fail in 200"
        output = new_output()
        lay_out(output)
        faults = SingleFileFaults(at, error(at), object_store)
        try:
            commit(output, faults, monkeypatch)
        except BaseException as raised:  # noqa: BLE001 (a stand-in for a crash is what some callers inject)
            yield output, raised, True
            continue
        reached = faults.count >= at
        yield output, None, reached
        if not reached:
            assert at > len(YESTERDAY) + len(TONIGHT), "fewer operations than files: is each one still failed?"
            return


def leftovers(output: str) -> list[str]:
    """Set-aside folders a finished commit or rollback left behind (the staging folder is the job's to remove)."""
    return sorted({m.path for m in FileSystems.match([out.join(output, ".replaced-*/**")])[0].metadata_list})


class Crash(BaseException):
    """Stands for the process dying: nothing catches it, so nothing is rolled back."""


def killed_commit(output: str, at: int, monkeypatch, object_store: bool) -> bool:
    """Tonight's commit on a fresh copy of the layout, killed at its `at`-th operation; False if it ran through."""
    lay_out(output)
    faults = SingleFileFaults(at, Crash(), object_store)
    try:
        commit(output, faults, monkeypatch)
    except Crash:
        return True
    return faults.count >= at  # the kill landed in the clean-up after _SUCCESS, which the commit forgives


def _runs_through(new_output, at: int, monkeypatch, object_store: bool) -> bool:
    """Whether a commit killed at `at` runs through (so `at - 1` is its last operation): counted on a local disk."""
    import tempfile

    del new_output
    with tempfile.TemporaryDirectory() as folder:
        return not killed_commit(folder + "/out", at, monkeypatch, object_store)


def kill_then_restart_killed(new_output, monkeypatch, object_store: bool, restart_kills: int = 200,
                             stride: int = 1):
    """Tonight's commit killed at its 1st, 2nd, … operation (journal writes and the marker included); for each,
    the next start killed at its 1st, 2nd, … operation (up to `restart_kills`), then a start that runs through.
    Yields (output, commit's kill point, restart's kill point or None, the state a reader then finds); `stride`
    kills every so many operations of the commit (the first and last always), for slow stores."""
    for commit_at in range(1, 201):
        if stride > 1 and commit_at % stride != 1 and not _runs_through(new_output, commit_at + 1, monkeypatch,
                                                                         object_store):
            continue
        output = new_output()
        if not killed_commit(output, commit_at, monkeypatch, object_store):
            restart(output, FileSystems, monkeypatch)
            yield output, None, None, state(output)
            return
        for restart_at in range(1, restart_kills + 1):
            if restart_at > 1:
                output = new_output()
                killed_commit(output, commit_at, monkeypatch, object_store)
            faults = SingleFileFaults(restart_at, Crash(), object_store)
            try:
                restart(output, faults, monkeypatch)
            except Crash:
                restart(output, FileSystems, monkeypatch)
                yield output, commit_at, restart_at, state(output)
                continue
            yield output, commit_at, None, state(output)
            break
    raise AssertionError("the commit never ran out of operations to kill in 200")
