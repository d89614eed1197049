"""One writer per output: a run holds `OUTPUT/_LOCK` from before it changes anything until after its commit,
and commits only while it still holds it (fencing).

Two runs into one output (a retried scheduler task, two operators) would otherwise
delete and rename each other's files while a `_SUCCESS` is present. The second run
is refused in one line naming the run that holds the output.

A hold can still be lost while its run works: `complaints unlock --force`, a heartbeat
that could not be renewed so the hold went stale and another run took it over. So a
hold is never assumed; `check()` proves it, and the commit calls it before every file
it moves (`pipelines.plumbing.commit.Commit`). A run that lost its hold fails in one line
naming who holds the output now, rolls back what it had moved, and leaves the other
run's `_LOCK` and staging folder alone.

How a hold is taken, proven and ended, by filesystem:
- **Local paths**: an exclusive `flock` on `_LOCK`, which the operating system
  releases when the holding process ends, however it ends (`kill -9`, a crash, a
  reboot); the next run takes the output at once and says whose hold it took over.
  The hold is proven by `_LOCK` still being the very file this run locked (same
  inode, same run id); it is released by removing `_LOCK` only while that is so.
- **gs://**: an object store has no locks, so the hold is the `_LOCK` object, written
  with generation preconditions: created only if absent (`ifGenerationMatch=0`), a
  stale one taken over only at the generation that was read, renewed and removed
  only at this run's own generation. Whoever changed it in between wins, and the
  other side sees a precondition failure, never a silent overwrite. The holding run
  renews its heartbeat every `stale_secs / 10` seconds; a hold whose heartbeat is
  older than `stale_secs` (`--lock-stale-secs`) is stale and may be taken over. A run
  whose renewals failed for `stale_secs` no longer counts its hold as proven.
- **Other object stores** (Beam's other filesystems): check-then-create through Beam's
  `FileSystems`, fenced by the run id it holds; two runs starting within the same
  moment can both get in there, since Beam offers no conditional write.
- A run's staging folder is marked alive (`.alive`: locked locally, touched with each
  heartbeat elsewhere), so a later run clears only the leftovers of runs that died.
- `complaints unlock --output OUT` removes a hold by hand: it refuses while the holder
  is alive unless `--force`; a forced unlock makes the run that held it fail at its
  commit instead of committing beside the next one.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
import uuid
from dataclasses import replace

from model import files
from model.errors import UserError
from pipelines.plumbing.holder import (
    ALIVE,
    DEFAULT_STALE_SECS,
    LOCK,
    REMOVED,
    GcsObject,
    Holder,
    filesystems,
    held_message,
    holder_at,
    holder_in,
    is_gcs,
    lost_message,
    now,
    precondition_failed,
    unlock,
    who,
)

log = logging.getLogger(__name__)

__all__ = ["ALIVE", "DEFAULT_STALE_SECS", "LOCK", "HoldLost", "Holder", "OutputLock", "staging_alive", "unlock"]


def new_run_id(kind: str = "") -> str:
    """A run's id: its start time first (so ids sort by start, as journals and pending nights rely on), then what
    kind of holder it is (`unlock`, `commit`; a labelling run has none) and a random suffix."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{kind + '-' if kind else ''}{uuid.uuid4().hex[:6]}"


class HoldLost(Exception):
    """This run no longer holds its output: it must not commit. The message names who holds it now."""


class OutputLock:
    """The hold on one output directory; `acquire()` before anything changes, `check()` before each commit step,
    `release()` after the commit."""

    def __init__(self, output: str, run_id: str, stale_secs: float = DEFAULT_STALE_SECS, options=None):
        self.output, self.path = output, filesystems().join(output, LOCK)
        self.holder = Holder.me(run_id)
        self.stale_secs = stale_secs
        self.options = options
        self.taken_over: Holder | None = None  # a stale hold this run replaced
        self._fd: int | None = None  # local: the locked _LOCK
        self._alive_fd: int | None = None  # local: the locked staging/.alive
        self._alive_path: str | None = None  # object stores: staging/.alive, touched with each beat
        self._gcs: GcsObject | None = None
        self._generation: int | None = None  # gs://: the generation this run wrote last
        self._lost: str | None = None  # why the hold is known lost (a renewal found it changed)
        self._last_beat = time.monotonic()
        self._beat_error = ""
        self._guard = threading.Lock()  # a renewal and a check never interleave
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    # taking the hold ------------------------------------------------------------------------------------------

    def acquire(self) -> OutputLock:
        try:
            if not files.remote(self.output):
                self._acquire_local()
            elif is_gcs(self.output):
                self._acquire_gcs()
            else:
                self._acquire_plain()
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 (filesystems raise their own types)
            raise UserError(f"cannot write to the output location {self.output} ({str(exc).splitlines()[0]}): "
                            "choose a writable --output") from None
        if files.remote(self.output):
            self._last_beat = time.monotonic()
            self._beat = threading.Thread(target=self._heartbeat, name="output-lock-heartbeat", daemon=True)
            self._beat.start()
        return self

    def _acquire_local(self) -> None:
        import fcntl

        os.makedirs(self.output, exist_ok=True)
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                previous = holder_in(fd)
                os.close(fd)
                raise UserError(held_message(self.output, previous)) from None
            # The previous holder may have removed the file between our open and our lock:
            # then we hold a lock on a file nobody else can see, and must start again.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            previous = holder_in(fd)
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, self.holder.text().encode(), 0)
                os.fsync(fd)
            except OSError as exc:  # a full disk: no hold, and no empty _LOCK left behind
                os.unlink(self.path)
                os.close(fd)
                raise UserError(f"cannot write the hold {self.path} ({exc.strerror}): free space on the output's "
                                "disk, or choose another --output") from None
            self.taken_over = previous
            self._fd = fd
            return
        raise UserError(f"cannot take the hold on {self.output}: its _LOCK keeps changing")

    def _acquire_gcs(self) -> None:
        self._gcs = GcsObject(self.path, self.options)
        for _ in range(20):
            try:
                self._generation = self._gcs.write(self.holder.text(), if_generation_match=0)
                return
            except Exception as exc:
                if not precondition_failed(exc):
                    raise
            found = self._gcs.read()
            if found is None:
                continue  # released between our write and our read: try again
            previous, generation = found
            if previous is not None and previous.age_secs() < self.stale_secs:
                raise UserError(held_message(self.output, previous))
            try:  # stale: take it over, but only from the generation we judged; a quicker run wins
                self._generation = self._gcs.write(self.holder.text(), if_generation_match=generation)
                self.taken_over = previous
                return
            except Exception as exc:
                if not precondition_failed(exc):
                    raise
        raise UserError(f"cannot take the hold on {self.output}: its _LOCK keeps changing")

    def _acquire_plain(self) -> None:
        if filesystems().exists(self.path):
            previous = holder_at(self.path)
            if previous is not None and previous.age_secs() < self.stale_secs:
                raise UserError(held_message(self.output, previous))
            self.taken_over = previous
        self._write_plain_as(self.holder)

    # keeping it -------------------------------------------------------------------------------------------------

    def claim(self, staging: str) -> None:
        """Mark `staging` as this live run's, so another run's `clear_leftovers` passes it by."""
        path = filesystems().join(staging, ALIVE)
        if not files.remote(staging):
            import fcntl

            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a fresh folder: nobody else has it
            self._alive_fd = fd
        else:
            self._alive_path = path
            _touch(path)

    def _heartbeat(self) -> None:
        while not self._stop.wait(max(1.0, self.stale_secs / 10)):
            if not self._renew():
                return

    def _renew(self) -> bool:
        """One heartbeat; False once the hold is known lost (then no further beat may overwrite the new holder)."""
        with self._guard:
            if self._stop.is_set():
                return False
            beat = replace(self.holder, heartbeat=now())
            try:
                if self._gcs is not None:
                    self._generation = self._gcs.write(beat.text(), if_generation_match=self._generation)
                else:
                    current = holder_at(self.path)
                    if current is None or current.run_id != self.holder.run_id:
                        self._lost = f"it was taken over by {who(current)}"
                        return False
                    self._write_plain_as(beat)
                if self._alive_path:
                    _touch(self._alive_path)
                self.holder, self._last_beat, self._beat_error = beat, time.monotonic(), ""
            except Exception as exc:  # noqa: BLE001 (filesystems raise their own types)
                if precondition_failed(exc):
                    self._lost = self._changed_hands()
                    return False
                self._beat_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                log.warning("could not renew the hold on %s (%s); retrying", self.output, self._beat_error)
            return True

    def _write_plain_as(self, holder: Holder) -> None:
        with filesystems().create(self.path) as f:
            f.write(holder.text().encode())

    def _changed_hands(self) -> str:
        found = self._gcs.read() if self._gcs is not None else None
        if found is None:
            return REMOVED
        return f"it was taken over by {who(found[0])}"

    def check(self) -> None:
        """Prove the hold, or raise HoldLost naming who holds the output now; the commit's fence."""
        with self._guard:
            why = self._why_lost()
        if why:
            raise HoldLost(lost_message(self.output, self.holder.run_id, why))

    def _why_lost(self) -> str | None:
        if self._lost:
            return self._lost
        if self._fd is not None:
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                return REMOVED
            if not os.path.samestat(os.fstat(self._fd), current):
                try:
                    return f"it was taken over by {who(holder_at(self.path))}"
                except OSError:
                    return "its _LOCK was replaced while it worked"
            return None
        silent = time.monotonic() - self._last_beat
        if silent >= self.stale_secs:
            return (f"its heartbeat could not be renewed for {silent:.0f} s ({self._beat_error or 'no answer'}), "
                    "so another run may have taken it over")
        if self._gcs is not None:
            found = self._gcs.read()
            if found is None:
                return REMOVED
            if found[1] != self._generation:
                return f"it was taken over by {who(found[0])}"
            return None
        current = holder_at(self.path) if filesystems().exists(self.path) else None
        if current is None or current.run_id != self.holder.run_id:
            return f"it was taken over by {who(current)}" if current else REMOVED
        return None

    # giving it up -------------------------------------------------------------------------------------------------

    def release(self) -> None:
        """Give the output up, only if it is still this run's. Best effort after a failure: a hold left behind is
        stale by the rules above."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=30)
            self._beat = None
        with self._guard:
            self._release_held()
        if self._alive_fd is not None:
            os.close(self._alive_fd)  # the folder itself goes with the commit or the abort
            self._alive_fd = None

    def _release_held(self) -> None:
        if self._fd is not None:
            try:
                if os.path.samestat(os.fstat(self._fd), os.stat(self.path)):
                    os.unlink(self.path)  # while still holding it, so no one locks a file about to vanish
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None
            return
        try:
            if self._gcs is not None and self._generation is not None and not self._lost:
                found = self._gcs.read()
                if found is not None and found[1] == self._generation:
                    self._gcs.delete(self._generation)
            elif self._gcs is None and not self._lost and filesystems().exists(self.path):
                current = holder_at(self.path)
                if current is not None and current.run_id == self.holder.run_id:
                    filesystems().delete([self.path])
        except Exception:  # noqa: BLE001 (a hold left behind goes stale)
            pass

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _touch(path: str) -> None:
    with filesystems().create(path) as f:
        f.write(now().encode())


def staging_alive(staging: str, stale_secs: float = DEFAULT_STALE_SECS) -> bool:
    """Whether a staging folder belongs to a run that is still alive (see `OutputLock.claim`)."""
    path = filesystems().join(staging, ALIVE)
    if not files.remote(staging):
        import fcntl

        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            return False  # never claimed (a run of an older version) or already gone
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
    try:
        found = filesystems().match([path])[0].metadata_list
    except Exception:  # noqa: BLE001 (no such object)
        return False
    return bool(found) and time.time() - found[0].last_updated_in_seconds < stale_secs


