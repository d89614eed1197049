"""The commit's journal: every move it will make, on disk before the first one, so a dead commit is finished or
undone by whoever comes next.

A commit (`pipelines.plumbing.commit.Commit`) writes `OUTPUT/.commit-<run id>.json`
before it moves anything: the files it will set aside (`_SUCCESS` first), the files
it will bring up (`_SUCCESS` last), and the stores outside the output that commit
with it (the BigQuery swap: its tables, the rows it replaces, its job ids). Locally
the journal is written to a temporary file, fsynced and renamed over the old one, so
it is always the old or the new one whole; on an object store it is one object.

Its states, and how each is settled (`settle`), whether by the run itself after a
failure or by the next start or `complaints unlock` after a kill:

| phase | what has moved | settled by |
|---|---|---|
| `aside` | some of the previous night's files, into `.replaced-<run id>/` | rolled back |
| `up` | all of them aside; some of tonight's up; the stores' swaps maybe applied | rolled back, unless
tonight's `_SUCCESS` is down: then rolled forward |
| `files undone` | the files are back; a store's undo could not be confirmed | the store's undo tried again |

Rolled back: each store's swap undone first, then every move in reverse, from what is
found at both ends (a move that never began, one half done as a copy without its
delete, one done); the previous `_SUCCESS` comes back last. Rolled forward: the
set-aside copies and the staging folder are removed. The journal is removed last of
all, so nothing deletes the set-aside copy of a night while a journal still needs it.
The moves are unambiguous because no target exists when its move begins: the set-aside
folder is new, and a file is brought up only after every file of its name was set aside;
a rollback records `aside` again once tonight's files are back in staging, so a second
settling never takes yesterday's file, back in its place, for tonight's half-moved one.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
from dataclasses import asdict, dataclass, field

from apache_beam.io.filesystems import FileSystems

from model import files
from model.errors import UserError

PREFIX, SUFFIX = ".commit-", ".json"
ASIDE, UP, FILES_UNDONE = "aside", "up", "files undone"
SUCCESS = "_SUCCESS"


class Unsettled(Exception):
    """A store's part of a commit could not be settled (its service did not answer): the journal stays, and the
    next start or `complaints unlock` tries again. The message says the state of both stores."""


def path_of(output: str, run_id: str) -> str:
    return FileSystems.join(output, f"{PREFIX}{run_id}{SUFFIX}")


def found_in(output: str) -> list[str]:
    """The journals of commits that did not finish, oldest run first (run ids begin with their start time)."""
    if not files.remote(output):
        if not os.path.isdir(output):
            return []
        names = [n for n in os.listdir(output) if n.startswith(PREFIX) and n.endswith(SUFFIX)]
        return sorted(os.path.join(output, n) for n in names)
    pattern = FileSystems.join(output, f"{PREFIX}*{SUFFIX}")
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


@dataclass
class Journal:
    """One commit's plan and how far it got (see the module docstring)."""

    run_id: str
    output: str
    staging: str
    aside: str
    phase: str = ASIDE
    set_aside: list[list[str]] = field(default_factory=list)  # [from, to], _SUCCESS first
    bring_up: list[list[str]] = field(default_factory=list)  # [from, to], _SUCCESS last
    externals: list[dict] = field(default_factory=list)  # {"kind": …, …}: each store's own record

    @property
    def path(self) -> str:
        return path_of(self.output, self.run_id)

    def save(self) -> None:
        """Durably, whole or not at all; read back, so a short write is an error here and not a surprise later."""
        text = json.dumps(asdict(self), ensure_ascii=False, indent=1) + "\n"
        write_durably(self.path, text.encode("utf-8"))

    @classmethod
    def load(cls, path: str) -> Journal:
        try:
            with FileSystems.open(path, compression_type="uncompressed") as f:
                return cls(**json.loads(f.read().decode("utf-8")))
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            raise UserError(f"the commit journal {path} cannot be read ({exc}): it was not written by this "
                            "job; move it out of the output and check the night by hand") from None

    def committed(self) -> bool:
        """Whether tonight's `_SUCCESS` is down: the last move, so every other move is done."""
        success = FileSystems.join(self.output, SUCCESS)
        if not FileSystems.exists(success):
            return False
        with FileSystems.open(success, compression_type="uncompressed") as f:
            return f.read().decode("utf-8", "replace").strip() == self.run_id


def write_durably(path: str, data: bytes) -> None:
    try:
        _write_durably(path, data)
    except OSError as exc:
        raise OSError(exc.errno, f"{exc.strerror or exc} writing {path}") from None


def _write_durably(path: str, data: bytes) -> None:
    if files.remote(path):
        with FileSystems.create(path) as f:
            f.write(data)
    else:
        folder = os.path.dirname(path) or "."
        temporary = path + ".tmp"
        try:
            with open(temporary, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        fsync_folder(folder)
    with FileSystems.open(path, compression_type="uncompressed") as f:
        if f.read() != data:
            raise OSError(f"{path} did not keep what was written to it (a short write?)")


def fsync_folder(folder: str) -> None:
    """A rename is durable once its folder is: without this a power cut may undo moves the journal says ran."""
    if files.remote(folder):
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def undo_move(source: str, target: str) -> None:
    """Put one file back where it was, whatever state its move reached (no target existed when it began)."""
    there, here = FileSystems.exists(target), FileSystems.exists(source)
    if there and not here:  # moved: move it back
        FileSystems.rename([target], [source])
    elif there:  # copied but not deleted (an object store's rename stopped half-way): the source is whole
        FileSystems.delete([target])
    elif not here:
        raise FileNotFoundError(f"{source} is neither where it was nor where it was moved to")


def finish_move(source: str, target: str) -> None:
    """Roll forward: a move whose copy is down but whose source was not yet deleted."""
    if FileSystems.exists(target) and FileSystems.exists(source):
        FileSystems.delete([source])


def remove_tree(folder: str) -> None:
    """A set-aside or staging folder and everything in it (object stores: every object under the prefix)."""
    if files.remote(folder):
        found = [m.path for m in FileSystems.match([FileSystems.join(folder, "**")])[0].metadata_list]
        if found:
            FileSystems.delete(found)
    elif os.path.exists(folder):
        FileSystems.delete([folder])


def remove(journal: Journal) -> None:
    FileSystems.delete([journal.path])
    if not files.remote(journal.output):
        fsync_folder(journal.output)


def settle(journal: Journal, stores: dict, keep_staging: bool = False) -> str:
    """Finish or undo one commit from its journal; returns what was done, as a sentence. Raises Unsettled when a
    store's undo cannot be confirmed (the files are back, the journal stays)."""
    if journal.phase == UP and journal.committed():
        for source, target in journal.bring_up:
            finish_move(source, target)
        for record in journal.externals:
            stores[record["kind"]].forward(record)
        _clear(journal, keep_staging=False)
        return f"run {journal.run_id}'s commit was finished (its _SUCCESS was down)"
    problems = []
    for record in reversed(journal.externals):
        try:
            stores[record["kind"]].back(record)
        except Exception as exc:  # noqa: BLE001 (any store's failure: reported with the state of both stores)
            problems.append(str(exc))
    if journal.phase != FILES_UNDONE:
        if journal.phase == UP:
            for source, target in reversed(journal.bring_up):
                undo_move(source, target)
            # Tonight's files are back in staging: from here only the set-aside moves are undone, so a second
            # settling (this one killed) never reads yesterday's file, back in place, as tonight's half-moved one.
            journal.phase = ASIDE
            journal.save()
        for source, target in reversed(journal.set_aside):
            undo_move(source, target)
        fsync_folder(journal.output)
    if problems:
        journal.phase = FILES_UNDONE
        journal.save()
        raise Unsettled("; ".join(problems))
    _clear(journal, keep_staging)
    return f"run {journal.run_id}'s commit was undone (the previous night is back as it was)"


def _clear(journal: Journal, keep_staging: bool) -> None:
    remove_tree(journal.aside)
    if not keep_staging:
        remove_tree(journal.staging)
    remove(journal)


def settle_dead(output: str, stores: dict, alive) -> list[str]:
    """Settle every commit in `output` whose run is not alive (`alive(staging)`); the caller holds the output.
    Returns a sentence per commit settled; raises UserError naming what is left when a store did not answer."""
    done = []
    for path in found_in(output):
        journal = Journal.load(path)
        if alive(journal.staging):
            continue
        try:
            done.append(settle(journal, stores))
        except Unsettled as exc:
            raise UserError(
                f"run {journal.run_id} died while committing {output}; its files are back as they were, but "
                f"{exc}. Nothing else was changed: run `complaints unlock --output {output}` once that service "
                "answers") from None
    return done


def run_of(path: str) -> str:
    """The run id a journal's name carries."""
    return posixpath.basename(path)[len(PREFIX):-len(SUFFIX)]


def run_id_of(folder: str) -> str:
    """`abc` of `OUTPUT/.staging-abc` or `.replaced-abc`."""
    return posixpath.basename(folder.rstrip("/")).split("-", 1)[1]
