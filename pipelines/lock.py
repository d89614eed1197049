"""One writer per output: a run holds `OUTPUT/_LOCK` from before it changes anything until after its commit.

Two runs into one output (a retried scheduler task, two operators) would otherwise
delete and rename each other's files while a `_SUCCESS` is present. The second run
is refused in one line naming the run that holds the output.

How a hold ends, and how a stale one is recognised:
- **Local paths**: the hold is an exclusive `flock` on `_LOCK`, which the operating
  system releases when the holding process ends, however it ends (`kill -9`, a
  crash, a reboot). So a killed run never blocks the next night: the next run takes
  the output at once and says whose hold it took over. The file's content (run id,
  host, pid, start time) only names the holder for the refusal message.
- **Other filesystems** (`gs://`): an object store has no locks, so the hold is the
  `_LOCK` object itself, whose `heartbeat` the holding run rewrites every
  `stale_secs / 10` seconds. A hold whose heartbeat is older than `stale_secs`
  (`--lock-stale-secs`) is stale and is taken over. Creating it is check-then-create,
  not atomic: two runs starting within the same second can both get in. The generation
  precondition that makes it atomic on `gs://` comes with the gs:// tests.
- `complaints unlock --output OUT` removes a hold by hand: it refuses while the holder
  is alive unless `--force`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import threading
from dataclasses import dataclass

from model.errors import UserError

LOCK = "_LOCK"
DEFAULT_STALE_SECS = 900


def _filesystems():
    """Beam's filesystems, imported when a lock is taken: the CLI reads this module's default for --help."""
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _is_local(path: str) -> bool:
    return "://" not in path


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
        return cls(run_id, socket.gethostname(), os.getpid(), _now(), _now())

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


def _holder_in(fd: int) -> Holder | None:
    """Who a local `_LOCK` (open as `fd`) names."""
    return Holder.parse(os.pread(fd, 65536, 0).decode("utf-8", "replace"))


def _holder_at(path: str) -> Holder | None:
    """Who a `_LOCK` on any filesystem names."""
    with _filesystems().open(path, compression_type="uncompressed") as f:
        return Holder.parse(f.read(65536).decode("utf-8", "replace"))


def _held_message(output: str, holder: Holder | None) -> str:
    who = holder.describe() if holder else "another run (its _LOCK cannot be read)"
    return (f"{output} is being written by {who}: wait for it to finish, or, if that run is gone, "
            f"run `complaints unlock --output {output}`")


class OutputLock:
    """The hold on one output directory; `acquire()` before anything changes, `release()` after the commit."""

    def __init__(self, output: str, run_id: str, stale_secs: float = DEFAULT_STALE_SECS):
        self.output, self.path = output, _filesystems().join(output, LOCK)
        self.holder = Holder.me(run_id)
        self.stale_secs = stale_secs
        self.taken_over: Holder | None = None  # a stale hold this run replaced
        self._fd: int | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def acquire(self) -> OutputLock:
        try:
            if _is_local(self.output):
                self._acquire_local()
            else:
                self._acquire_remote()
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 (filesystems raise their own types)
            raise UserError(f"cannot write to the output location {self.output} ({str(exc).splitlines()[0]}): "
                            "choose a writable --output") from None
        return self

    def _acquire_local(self) -> None:
        import fcntl

        os.makedirs(self.output, exist_ok=True)
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                previous = _holder_in(fd)
                os.close(fd)
                raise UserError(_held_message(self.output, previous)) from None
            # The previous holder may have removed the file between our open and our lock:
            # then we hold a lock on a file nobody else can see, and must start again.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            previous = _holder_in(fd)
            self.taken_over = previous
            os.ftruncate(fd, 0)
            os.pwrite(fd, self.holder.text().encode(), 0)
            os.fsync(fd)
            self._fd = fd
            return
        raise UserError(f"cannot take the hold on {self.output}: its _LOCK keeps changing")

    def _write_remote(self) -> None:
        with _filesystems().create(self.path) as f:
            f.write(self.holder.text().encode())

    def _acquire_remote(self) -> None:
        if _filesystems().exists(self.path):
            previous = _holder_at(self.path)
            if previous is not None and previous.age_secs() < self.stale_secs:
                raise UserError(_held_message(self.output, previous))
            self.taken_over = previous
        self._write_remote()
        self._beat = threading.Thread(target=self._heartbeat, name="output-lock-heartbeat", daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(max(1.0, self.stale_secs / 10)):
            try:
                current = _holder_at(self.path)
                if current is None or current.run_id != self.holder.run_id:
                    return  # someone took it over (or unlocked it by hand): never overwrite theirs
                self.holder = Holder(**{**self.holder.__dict__, "heartbeat": _now()})
                self._write_remote()
            except Exception:  # noqa: BLE001 (a missed beat only makes the hold look older)
                pass

    def release(self) -> None:
        """Give the output up. Best effort after a failure: a hold left behind is stale by the rules above."""
        self._stop.set()
        if self._fd is not None:
            try:
                os.unlink(self.path)  # while still holding it, so no one locks a file about to vanish
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None
        elif self._beat is not None:
            self._beat.join(timeout=5)
            try:
                current = _holder_at(self.path)
                if current is not None and current.run_id == self.holder.run_id:
                    _filesystems().delete([self.path])
            except Exception:  # noqa: BLE001
                pass
            self._beat = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def unlock(output: str, force: bool = False, stale_secs: float = DEFAULT_STALE_SECS) -> str | None:
    """Remove a hold left behind; refuse while its holder is alive unless `force`. Returns whose it was, or
    None when there was none."""
    path = _filesystems().join(output, LOCK)
    if not _filesystems().exists(path):
        return None
    holder = _remove(output, path, force, stale_secs)
    return holder.describe() if holder else "an unreadable _LOCK"


def _remove(output: str, path: str, force: bool, stale_secs: float) -> Holder | None:
    if _is_local(output):
        import fcntl

        fd = os.open(path, os.O_RDWR)
        try:
            holder = _holder_in(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                alive = False
            except BlockingIOError:
                alive = True
            if alive and not force:
                who = holder.describe() if holder else "a run"
                raise UserError(f"{who} is alive and holds {output}: stop it first, or pass --force if you are "
                                "sure it is not writing")
            os.unlink(path)
        finally:
            os.close(fd)
        return holder
    holder = _holder_at(path)
    if holder is not None and holder.age_secs() < stale_secs and not force:
        raise UserError(f"{holder.describe()} beat {holder.age_secs():.0f} s ago: it may still be writing; "
                        "pass --force if you are sure it is gone")
    _filesystems().delete([path])
    return holder

