"""What a hold on an output is made of, on each store: the holder's record in `_LOCK`, the gs:// object written
with generation preconditions, and the hand-removal of a hold left behind (`complaints unlock`).

`pipelines.plumbing.hold.OutputLock` takes, proves and releases holds with these; the
rules are in that module's docstring.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from dataclasses import dataclass

from model import files
from model.errors import UserError

LOCK = "_LOCK"
ALIVE = ".alive"  # in a run's staging folder while the run lives
DEFAULT_STALE_SECS = 900


def filesystems():
    """Beam's filesystems, imported when a lock is taken: the CLI reads this module's default for --help."""
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def is_gcs(path: str) -> bool:
    return path.startswith("gs://")


@dataclass(frozen=True)
class Holder:
    """Who holds an output: what the refusal names."""

    run_id: str
    host: str
    pid: int
    started: str
    heartbeat: str = ""

    @classmethod
    def me(cls, run_id: str) -> Holder:
        return cls(run_id, socket.gethostname(), os.getpid(), now(), now())

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        try:
            data = json.loads(text)
            return cls(str(data["run_id"]), str(data["host"]), int(data["pid"]), str(data["started"]),
                       str(data.get("heartbeat", "")))
        except (ValueError, KeyError, TypeError):
            return None

    def text(self) -> str:
        return json.dumps(self.__dict__) + "\n"

    def describe(self) -> str:
        return f"run {self.run_id} (host {self.host}, pid {self.pid}, started {self.started})"

    def age_secs(self) -> float:
        try:
            beat = dt.datetime.fromisoformat(self.heartbeat or self.started)
        except ValueError:
            return float("inf")
        return (dt.datetime.now(dt.UTC) - beat).total_seconds()


def who(holder: Holder | None) -> str:
    return holder.describe() if holder else "another run (its _LOCK cannot be read)"


def holder_in(fd: int) -> Holder | None:
    """Who a local `_LOCK` (open as `fd`) names."""
    return Holder.parse(os.pread(fd, 65536, 0).decode("utf-8", "replace"))


def holder_at(path: str) -> Holder | None:
    """Who a `_LOCK` on any filesystem names."""
    with filesystems().open(path, compression_type="uncompressed") as f:
        return Holder.parse(f.read(65536).decode("utf-8", "replace"))


def held_message(output: str, holder: Holder | None) -> str:
    return (f"{output} is being written by {who(holder)}: wait for it to finish, or, if that run is gone, "
            f"run `complaints unlock --output {output}`")


REMOVED = "its _LOCK was removed while it worked (`complaints unlock --force`?)"


def lost_message(output: str, run_id: str, what: str) -> str:
    return f"run {run_id} no longer holds {output} ({what}), so it did not commit"


class GcsObject:
    """One gs:// object read and written with generation preconditions (Beam's own GCS client and credentials)."""

    def __init__(self, path: str, options=None):
        from apache_beam.io.gcp import gcsio
        from apache_beam.options.pipeline_options import PipelineOptions

        from model.files import emulator_without_credentials

        emulator_without_credentials()
        bucket, name = gcsio.parse_gcs_path(path)
        self.path = path
        self.blob = gcsio.create_storage_client(options or PipelineOptions()).bucket(bucket).blob(name)

    def read(self) -> tuple[Holder | None, int] | None:
        """(who it names, its generation), or None when there is no such object."""
        from google.api_core import exceptions

        for _ in range(20):
            blob = self.blob.bucket.get_blob(self.blob.name)
            if blob is None:
                return None
            generation = int(blob.generation)  # before the download, which may reset it from its headers
            try:
                data = blob.download_as_bytes(if_generation_match=generation)
            except (exceptions.NotFound, exceptions.PreconditionFailed):  # changed since: read again
                continue
            return Holder.parse(data[:65536].decode("utf-8", "replace")), generation
        raise OSError(f"{self.path} keeps changing")

    def write(self, text: str, if_generation_match: int) -> int:
        """Write `text` only if the object is at that generation (0: absent); returns the new generation.
        Raises google's PreconditionFailed otherwise."""
        blob = self.blob.bucket.blob(self.blob.name)
        blob.upload_from_string(text.encode(), content_type="application/json", if_generation_match=if_generation_match)
        return int(blob.generation)

    def delete(self, generation: int) -> None:
        from google.api_core import exceptions

        try:
            self.blob.bucket.blob(self.blob.name).delete(if_generation_match=generation)
        except (exceptions.NotFound, exceptions.PreconditionFailed):
            pass  # already gone, or someone else's now: not ours to remove


def precondition_failed(exc: BaseException) -> bool:
    from google.api_core import exceptions

    return isinstance(exc, exceptions.PreconditionFailed)


def unlock(output: str, force: bool = False, stale_secs: float = DEFAULT_STALE_SECS) -> str | None:
    """Remove a hold left behind; refuse while its holder is alive unless `force`. Returns whose it was, or
    None when there was none."""
    path = filesystems().join(output, LOCK)
    if is_gcs(output):
        return _remove_gcs(output, path, force, stale_secs)
    if not filesystems().exists(path):
        return None
    holder = _remove(output, path, force, stale_secs)
    return holder.describe() if holder else "an unreadable _LOCK"


def _remove_gcs(output: str, path: str, force: bool, stale_secs: float) -> str | None:
    hold = GcsObject(path)
    found = hold.read()
    if found is None:
        return None
    holder, generation = found
    refuse_fresh(holder, force, stale_secs)
    hold.delete(generation)  # only the hold that was judged: a newer one stays
    return holder.describe() if holder else "an unreadable _LOCK"


def refuse_fresh(holder: Holder | None, force: bool, stale_secs: float) -> None:
    if holder is not None and holder.age_secs() < stale_secs and not force:
        raise UserError(f"{holder.describe()} beat {holder.age_secs():.0f} s ago: it may still be writing; "
                        "pass --force if you are sure it is gone (it will then fail at its commit)")


def _remove(output: str, path: str, force: bool, stale_secs: float) -> Holder | None:
    if not files.remote(output):
        import fcntl

        fd = os.open(path, os.O_RDWR)
        try:
            holder = holder_in(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                alive = False
            except BlockingIOError:
                alive = True
            if alive and not force:
                who = holder.describe() if holder else "a run"
                raise UserError(f"{who} is alive and holds {output}: stop it first, or pass --force if you are "
                                "sure it is not writing (it will then fail at its commit)")
            os.unlink(path)
        finally:
            os.close(fd)
        return holder
    holder = holder_at(path)
    refuse_fresh(holder, force, stale_secs)
    filesystems().delete([path])
    return holder
