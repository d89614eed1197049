"""The nightly job against the operator's world: empty nights, two runs at once, stale holds, files that
change under the job, failures after the pipeline, its own output under the input glob, and archives as
data engineers write them. Real Parquet files, a real model, the in-process runner and the real command."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from model.errors import UserError
from pipelines.app.cli import cli
from pipelines.errors import JobFailed
from pipelines.nightly import job as batch
from pipelines.nightly.job import run
from pipelines.options import BatchConfig
from pipelines.sinks import parquet_files
from tests.archives import output_problem, snapshot, write_archive
from tests.test_batch import _assert_one_line_error, config, read_output
from worker.transform import WorkerConfig

pytestmark = pytest.mark.slow  # whole jobs, services or trainings: left out of `pytest -m "not slow"`

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def committed(model_dir, tmp_path_factory):
    """A complete output of a 900-row archive: last night, which every failure must leave as it was."""
    base = tmp_path_factory.mktemp("committed")
    write_archive(base / "in", rows=900, files=3, seed=21)
    run(config(model_dir, base / "in", base / "out"))
    return base / "out"


def job(model_dir, pattern: str, output) -> BatchConfig:
    return BatchConfig(input_pattern=pattern, output=str(output), worker=WorkerConfig(model_dir), progress=False)


def last_night(committed, tmp_path):
    output = tmp_path / "out"
    shutil.copytree(committed, output)
    return output, snapshot(output)


def _label(*args):
    return CliRunner().invoke(cli, ["label", "--no-progress", *args], catch_exceptions=False)


# 1. Nothing read, nothing committed -------------------------------------------------------------------------


@pytest.mark.parametrize("skip_validation", [False, True])
def test_an_empty_night_leaves_the_output_untouched(model_dir, committed, tmp_path, skip_validation):
    output, before = last_night(committed, tmp_path)
    (tmp_path / "nothing").mkdir()
    args = ["--model", model_dir, "--input", str(tmp_path / "nothing/*.parquet"), "--output", str(output)]
    result = _label(*args, *(["--skip-validation"] if skip_validation else []))
    _assert_one_line_error(result, "no input file")
    assert snapshot(output) == before


def test_files_without_rows_are_refused(model_dir, committed, tmp_path):
    output, before = last_night(committed, tmp_path)
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())}),
                   tmp_path / "in" / "empty.parquet")
    for extra in ([], ["--skip-validation"]):
        result = _label("--model", model_dir, "--input", str(tmp_path / "in/*.parquet"), "--output", str(output),
                        *extra)
        _assert_one_line_error(result, "hold no rows")
        assert snapshot(output) == before


def test_a_first_run_that_fails_leaves_no_output_folder(model_dir, tmp_path):
    (tmp_path / "nothing").mkdir()
    result = _label("--model", model_dir, "--input", str(tmp_path / "nothing/*.parquet"), "--output",
                    str(tmp_path / "new"), "--skip-validation")
    _assert_one_line_error(result, "no input file was read")
    assert not (tmp_path / "new").exists()


# 2. Files that change under the job --------------------------------------------------------------------------


def _remove(folder):
    os.remove(folder / "part-1.parquet")


def _grow(folder):
    path = folder / "part-2.parquet"
    table = pq.read_table(path)
    pq.write_table(pa.concat_tables([table, table.slice(0, 7)]), path)


@pytest.mark.parametrize(("change", "message"), [
    (_remove, "was removed after the pre-flight"),
    (_grow, "changed after the pre-flight"),
])
def test_a_file_that_changes_after_the_preflight_fails_the_run(model_dir, committed, tmp_path, monkeypatch,
                                                               change, message):
    write_archive(tmp_path / "in", rows=600, files=3, seed=22)
    output, before = last_night(committed, tmp_path)
    from pipelines.nightly import facts

    real = facts.preflight

    def preflight_then_change(cfg, output):
        found = real(cfg, output)
        change(tmp_path / "in")  # deterministic: after the pre-flight, before the pipeline reads
        return found

    monkeypatch.setattr(facts, "preflight", preflight_then_change)
    with pytest.raises(JobFailed, match=message):
        run(config(model_dir, tmp_path / "in", output))
    assert snapshot(output) == before


# 3. One writer per output -------------------------------------------------------------------------------------


def _complete_view(output) -> str | None:
    """Read the output as a consumer would. A problem, or None (incomplete, or consistent, or a commit happened
    while reading, which a consumer detects by the run id in `_SUCCESS` and retries)."""
    first = None  # _SUCCESS may appear between a failed first read and the second
    try:
        first = (output / "_SUCCESS").read_text()
        names = os.listdir(output)
        summary = json.loads((output / "summary.json").read_text())
        counts = {n: pq.ParquetFile(output / n).metadata.num_rows for n in names if n.endswith(".parquet")}
        second = (output / "_SUCCESS").read_text()
    except (FileNotFoundError, ValueError, OSError, pa.ArrowException):
        try:
            second = (output / "_SUCCESS").read_text()
        except FileNotFoundError:
            return None
        if first is None or second != first:
            return None
        return f"_SUCCESS {first!r} stayed while the files could not be read"
    if first != second:
        return None
    return output_problem(names, summary, counts)


def test_a_second_run_is_refused_while_the_first_holds_the_output(model_dir, committed, tmp_path):
    """Run A (the real command, slowed by small batches) replaces last night's output while run B tries to
    write the same output and a reader polls it: B is refused naming A, and the reader never sees `_SUCCESS`
    beside a mixture or a partial set of files."""
    write_archive(tmp_path / "a", rows=4000, files=2, seed=31)
    write_archive(tmp_path / "b", rows=500, files=1, seed=32)
    output, _ = last_night(committed, tmp_path)
    problems, seen_success, done = [], set(), threading.Event()

    def look():
        problem = _complete_view(output)
        if problem:
            problems.append(problem)
        if (output / "_SUCCESS").exists():
            seen_success.add((output / "_SUCCESS").read_text())

    def poll():
        while not done.is_set():
            look()

    reader = threading.Thread(target=poll, daemon=True)
    reader.start()
    a = subprocess.Popen(
        [sys.executable, "-m", "pipelines", "label", "--model", model_dir, "--input", str(tmp_path / "a/*.parquet"),
         "--output", str(output), "--max-batch-size", "16", "--min-batch-size", "16", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    deadline = time.monotonic() + 120
    while not _held_by(output, a.pid):
        assert a.poll() is None, a.stdout.read()
        assert time.monotonic() < deadline, "run A never took the output"
        time.sleep(0.02)
    result = _label("--model", model_dir, "--input", str(tmp_path / "b/*.parquet"), "--output", str(output))
    _assert_one_line_error(result, f"pid {a.pid}")
    assert socket.gethostname() in result.output and "complaints unlock" in result.output
    assert a.wait(timeout=300) == 0, a.stdout.read()
    done.set()
    reader.join()
    look()  # once more after A has finished: the loop may have ended just before A's _SUCCESS appeared
    assert problems == []
    assert len(seen_success) == 2  # last night's, then A's
    assert read_output(output)[2]["rows_in"] == 4000
    assert _label("--model", model_dir, "--input", str(tmp_path / "b/*.parquet"), "--output",
                  str(output)).exit_code == 0  # free again once A has committed
    assert read_output(output)[2]["rows_in"] == 500


def _held_by(output, pid: int) -> bool:
    try:
        return json.loads((output / "_LOCK").read_text())["pid"] == pid
    except (FileNotFoundError, ValueError):
        return False


def _start_label(model_dir, archive, output) -> subprocess.Popen:
    """The real command in its own process, slowed by small batches."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines", "label", "--model", model_dir, "--input", str(archive / "*.parquet"),
         "--output", str(output), "--max-batch-size", "16", "--min-batch-size", "16", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)


def _wait_until_held(output, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not _held_by(output, process.pid):
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "the run never took the output"
        time.sleep(0.02)


def _wait_until_at_work(output, process: subprocess.Popen) -> None:
    """Until `process` holds the output and has claimed its staging folder (`.alive`): a run stopped between
    taking `_LOCK` and making its staging has no staging for the next run to leave alone."""
    from pipelines.plumbing.hold import ALIVE

    _wait_until_held(output, process)
    deadline = time.monotonic() + 120
    while not any(os.path.exists(os.path.join(output, name, ALIVE)) for name in os.listdir(output)
                  if name.startswith(".staging-")):
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "the run never claimed its staging folder"
        time.sleep(0.02)


def test_a_forced_unlock_under_a_running_night_never_makes_two_writers(model_dir, committed, tmp_path):
    """The operator's sequence from issue #39: night A running, `unlock --force`, night B started. A fails at
    its commit in one line naming B, B commits its own whole output, a third run is refused while B holds it,
    and A's exit leaves B's hold and staging folder alone."""
    from pipelines.plumbing.hold import OutputLock

    write_archive(tmp_path / "a", rows=4000, files=2, seed=33)
    write_archive(tmp_path / "b", rows=3000, files=2, seed=34)
    output, _ = last_night(committed, tmp_path)
    a = _start_label(model_dir, tmp_path / "a", output)
    _wait_until_at_work(output, a)
    a.send_signal(signal.SIGSTOP)  # A is still at work (frozen, so B surely starts while A holds its staging)
    try:
        forced = CliRunner().invoke(cli, ["unlock", "--output", str(output), "--force"])
        assert forced.exit_code == 0 and f"pid {a.pid}" in forced.output, forced.output
        b = _start_label(model_dir, tmp_path / "b", output)
        _wait_until_held(output, b)
        deadline = time.monotonic() + 60
        while len([n for n in os.listdir(output) if n.startswith(".staging-")]) < 2:  # B's beside A's
            assert b.poll() is None and time.monotonic() < deadline, "B removed A's staging, or made none"
            time.sleep(0.02)
        with pytest.raises(UserError, match=f"pid {b.pid}"):
            OutputLock(str(output), "run-c").acquire()
    finally:
        a.send_signal(signal.SIGCONT)
    a_output = a.communicate(timeout=300)[0]
    assert a.returncode == 2, a_output
    errors = [line for line in a_output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no longer holds" in errors[0] and "Traceback" not in a_output, a_output
    b_output = b.communicate(timeout=300)[0]
    assert b.returncode == 0, b_output
    assert read_output(output)[2]["rows_in"] == 3000 and _complete_view(output) is None
    assert not (output / "_LOCK").exists()
    assert [n for n in os.listdir(output) if n.startswith(".")] == []  # A's staging went with A's abort


HOLD = ("import sys, time\nfrom pipelines.plumbing.hold import OutputLock\n"
        "OutputLock(sys.argv[1], 'stuck-run').acquire()\nprint('held', flush=True)\ntime.sleep(300)\n")


def test_a_stale_hold_does_not_block_the_next_night(model_dir, tmp_path):
    write_archive(tmp_path / "in", rows=300, files=1)
    output = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(output)], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        args = ["--model", model_dir, "--input", str(tmp_path / "in/*.parquet"), "--output", str(output)]
        refused = _label(*args)
        _assert_one_line_error(refused, "stuck-run")
        assert f"pid {holder.pid}" in refused.output
        unlock = CliRunner().invoke(cli, ["unlock", "--output", str(output)])
        _assert_one_line_error(unlock, "is alive")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    summary = run(config(model_dir, tmp_path / "in", output))  # the killed holder's lock went with it
    assert summary["rows_in"] == 300 and "stuck-run" in summary["took_over_hold_of"]
    assert not (output / "_LOCK").exists()


def test_unlock_removes_a_hold_left_behind(tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    (output / "_LOCK").write_text(json.dumps({"run_id": "gone-run", "host": "elsewhere", "pid": 1,
                                              "started": "2026-11-28T01:00:00+00:00"}))
    result = CliRunner().invoke(cli, ["unlock", "--output", str(output)])
    assert result.exit_code == 0 and "gone-run" in result.output
    assert not (output / "_LOCK").exists()
    assert CliRunner().invoke(cli, ["unlock", "--output", str(output)]).output.startswith("no hold")


# 4. Monitors after the pipeline never discard a labelled night (commit faults: test_commit_faults.py) -----------


@pytest.mark.parametrize("broken", ["section", "report_png"])
def test_a_monitor_that_fails_after_the_books_balance_never_discards_the_night(model_dir, committed, tmp_path,
                                                                             monkeypatch, broken):
    write_archive(tmp_path / "in", rows=300, files=1)
    output, _ = last_night(committed, tmp_path)

    def explode(*args, **kwargs):
        raise RuntimeError("monitor exploded")

    monkeypatch.setattr(batch.drift, broken, explode)
    args = ["--model", model_dir, "--input", str(tmp_path / "in/*.parquet"), "--output", str(output)]
    result = _label(*args)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "monitor exploded" in warnings[0], result.output
    summary = read_output(output)[2]
    assert summary["rows_in"] == 300 and (output / "_SUCCESS").exists()
    if broken == "section":
        assert summary["drift"]["checked"] is False and "monitor exploded" in summary["drift"]["note"]
        failing = _label(*args, "--fail-on-drift")
        assert failing.exit_code == 4 and read_output(output)[2]["rows_in"] == 300
    else:
        assert "report.png" not in summary["output_files"] and "monitor exploded" in summary["report"]


# 5. Dead letters written like predictions ---------------------------------------------------------------------


def test_dead_letters_are_written_in_bounded_tables(model_dir, tmp_path, monkeypatch):
    rows = 2500
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"id": [f"n{i}" for i in range(rows)], "text": pa.nulls(rows, pa.string())}),
                   tmp_path / "in" / "nulls.parquet", row_group_size=700)
    monkeypatch.setattr(parquet_files, "LETTER_TABLE_ROWS", 400)
    summary = run(job(model_dir, str(tmp_path / "in/*.parquet"), tmp_path / "out"))
    assert summary["rows_in"] == rows and summary["dead_lettered_by_reason"] == {"missing_text": rows}
    files = glob.glob(str(tmp_path / "out/dead_letters-*.parquet"))
    groups = [pq.ParquetFile(f).metadata.row_group(i).num_rows for f in files
              for i in range(pq.ParquetFile(f).metadata.num_row_groups)]
    assert sum(groups) == rows and max(groups) <= 400 and len(groups) >= rows // 400
    letters = pd.concat([pd.read_parquet(f) for f in files])
    assert sorted(letters["id"]) == sorted(f"n{i}" for i in range(rows))


# 6. Never its own output; archives as data engineers have them ------------------------------------------------


def test_the_job_never_reads_its_own_output_or_temporary_files(model_dir, tmp_path):
    archive = tmp_path / "archive"
    write_archive(archive / "day1", rows=300, files=1, seed=41)
    for junk in (".staging-old", "beam-temp-predictions-123", "_tmp", ".hidden"):
        write_archive(archive / "day1" / junk, rows=30, files=1, seed=42)
    pattern = str(archive / "**" / "*.parquet")
    output = archive / "labelled"  # inside the input glob
    first = run(job(model_dir, pattern, output))
    assert first["rows_in"] == 300
    assert first["inputs_skipped"] == {"hidden": 3, "temporary": 1}
    second = run(job(model_dir, pattern, output))
    assert second["rows_in"] == 300 and second["inputs_skipped"]["own_output"] == len(first["output_files"]) - 1
    elsewhere = run(job(model_dir, pattern, tmp_path / "elsewhere"))
    assert elsewhere["rows_in"] == 300  # another run's predictions under the glob: recognised by their footers
    assert elsewhere["inputs_skipped"]["labelled_output"] == len(first["output_files"]) - 1
    skipped = _label("--model", model_dir, "--input", pattern, "--output", str(output), "--skip-validation")
    assert skipped.exit_code == 0, skipped.output
    assert "files skipped" in skipped.output
    assert [line.split()[-1] for line in skipped.output.splitlines() if line.startswith("rows in")] == ["300"]


def test_a_hive_partitioned_folder_with_colliding_file_names(model_dir, tmp_path):
    root = tmp_path / "table"
    for month in ("10", "11"):
        write_archive(root / "year=2026" / f"month={month}", rows=120, files=1, with_id=False, seed=int(month))
    (root / "_SUCCESS").write_text("")
    (root / "_common_metadata").write_bytes(b"not data")
    (root / "year=2026" / "month=10" / ".part-0.parquet.crc").write_bytes(b"checksum")
    (root / "year=2026" / "README.txt").write_text("not data either")
    summary = run(job(model_dir, str(root), tmp_path / "out"))
    assert summary["rows_in"] == 240
    assert summary["inputs_skipped"] == {"hidden": 3, "not_parquet_name": 1}
    predictions, dead, _ = read_output(tmp_path / "out")
    ids = set(predictions["id"]) | set(dead["id"])
    assert len(ids) == 240  # part-0.parquet in both months: the ids name the partition folder
    assert f"{root}/year=2026/month=10/part-0.parquet:0" in ids and f"{root}/year=2026/month=11/part-0.parquet:0" in ids


@pytest.mark.parametrize("layout", ["string_view", "large_string"])
def test_text_columns_of_any_arrow_string_layout(model_dir, tmp_path, layout):
    write_archive(tmp_path / "plain", rows=200, files=1)
    table = pq.read_table(tmp_path / "plain" / "part-0.parquet")
    kind = {"string_view": pa.string_view(), "large_string": pa.large_string()}[layout]
    converted = table
    for name in ("id", "text", "store"):
        converted = converted.set_column(converted.schema.get_field_index(name), name, table.column(name).cast(kind))
    (tmp_path / "typed").mkdir()
    pq.write_table(converted, tmp_path / "typed" / "part-0.parquet")
    assert pq.read_schema(tmp_path / "typed" / "part-0.parquet").field("text").type == converted.schema.field(
        "text").type
    run(config(model_dir, tmp_path / "plain", tmp_path / "out-plain"))
    run(config(model_dir, tmp_path / "typed", tmp_path / "out-typed"))
    plain, plain_dead, _ = read_output(tmp_path / "out-plain")
    typed, typed_dead, _ = read_output(tmp_path / "out-typed")
    columns = ["id", "label", "confidence", "store"]
    pd.testing.assert_frame_equal(plain[columns], typed[columns])
    assert sorted(plain_dead["id"]) == sorted(typed_dead["id"])


def test_view_layouts_in_memory_become_plain_ones():
    """What Parquet cannot store but an in-memory Arrow reader may hand over (dictionaries of views, list views)."""
    from pipelines.nightly.reading import _is_text, plain_column

    words = pa.array(["a", None, "b", "a"]).cast(pa.string_view()).dictionary_encode()
    assert _is_text(words.type)
    assert plain_column(words).type == pa.dictionary(pa.int32(), pa.string())
    assert plain_column(words).to_pylist() == ["a", None, "b", "a"]
    lists = pa.array([["x"], [], None], pa.list_view(pa.string_view()))
    assert plain_column(lists).type == pa.list_(pa.string()) and plain_column(lists).to_pylist() == [["x"], [], None]
    assert plain_column(pa.array([1, 2])).type == pa.int64()


KILLED_AT_A_MOVE = """
import os, signal, sys
from pipelines.plumbing import commit, journal
module, at = {"commit": commit, "settle": journal}[sys.argv[1]], sys.argv[2]
real = module.FileSystems


class KilledAtAMove:
    moves = 0

    def __getattr__(self, name):
        return getattr(real, name)

    def rename(self, sources, targets):
        KilledAtAMove.moves += 1
        last = targets[0].endswith("/_SUCCESS") and "/.replaced-" not in targets[0]
        if (at == "success" and last) or (at.isdigit() and KilledAtAMove.moves == int(at)):
            os.kill(os.getpid(), signal.SIGKILL)
        real.rename(sources, targets)
        if at == "after-success" and last:
            os.kill(os.getpid(), signal.SIGKILL)


module.FileSystems = KilledAtAMove()
from pipelines.app.cli import cli
cli(sys.argv[3:])
"""


def _killed_label(model_dir, archive, output, where: str, at: str) -> None:
    """The real command in its own process, SIGKILLed just before its `at`-th move (or its `_SUCCESS` move) of
    the commit (`where="commit"`) or of the settling at its start (`where="settle"`)."""
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_AT_A_MOVE, where, at, "label", "--model", model_dir, "--input",
         str(archive / "*.parquet"), "--output", str(output), "--no-progress"],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:] + killed.stderr[-3000:]


@pytest.mark.parametrize("commit_killed_at", ["3", "success"], ids=["setting-aside", "before-its-success"])
def test_a_night_killed_in_its_commit_then_a_restart_killed_leaves_yesterday_for_unlock(model_dir, committed,
                                                                                         tmp_path, commit_killed_at):
    """Issue #51's measurement, with real SIGKILLs: a night killed while its commit moves files, then the next
    start killed while it settles that commit (its second move back), then `complaints unlock`: yesterday's
    output byte for byte, with nothing of the two dead runs left. Before the journal, no night was left at all."""
    write_archive(tmp_path / "in", rows=500, files=2, seed=35)
    output, before = last_night(committed, tmp_path)
    _killed_label(model_dir, tmp_path / "in", output, "commit", commit_killed_at)
    assert not (output / "_SUCCESS").exists() and glob.glob(str(output / ".commit-*.json"))
    _killed_label(model_dir, tmp_path / "in", output, "settle", "2")
    result = CliRunner().invoke(cli, ["unlock", "--output", str(output)])
    assert result.exit_code == 0 and "was undone" in result.output, result.output
    assert snapshot(output) == before


def test_a_night_killed_just_after_its_success_is_finished_by_the_next_start(model_dir, committed, tmp_path):
    """Killed in the clean-up after `_SUCCESS`: the night is committed whole; the next start finishes it (clears
    the set-aside copy of yesterday and the staging from the journal) before it labels, and says so."""
    write_archive(tmp_path / "in", rows=500, files=2, seed=36)
    output, _ = last_night(committed, tmp_path)
    _killed_label(model_dir, tmp_path / "in", output, "commit", "after-success")
    assert _complete_view(output) is None and read_output(output)[2]["rows_in"] == 500  # tonight, whole
    run_id = (output / "_SUCCESS").read_text()
    assert glob.glob(str(output / f".commit-{run_id}.json")) and glob.glob(str(output / f".replaced-{run_id}"))
    summary = run(config(model_dir, tmp_path / "in", output))
    assert any(f"run {run_id}'s commit was finished" in line for line in summary["settled_commits"])
    assert [n for n in os.listdir(output) if n.startswith(".")] == []


@contextlib.contextmanager
def _small_disk(folder, size: str):
    """A tmpfs of `size` mounted on `folder` (needs root and mount rights; skipped without them)."""
    os.makedirs(folder, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(disk, leave_bytes: int) -> None:
    """Fill `disk` up to `leave_bytes` free: a filler file written until the disk refuses, then trimmed."""
    filler = os.path.join(disk, "filler")
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    os.truncate(filler, max(0, os.path.getsize(filler) - leave_bytes))


@pytest.mark.parametrize("free_kb", [0, 16, 96, 192])
def test_a_full_disk_at_any_point_fails_the_night_in_one_line_and_keeps_yesterday(model_dir, committed, tmp_path,
                                                                                   free_kb):
    """Item 2: the output's disk full with so little room left that the staging, the report, the summary, the
    journal or the commit runs out of it: one `error:` line that says what ran out, and yesterday whole (or,
    with room enough, tonight whole)."""
    write_archive(tmp_path / "in", rows=900, files=3, seed=37)
    size_kb = sum(len(data) for data in snapshot(committed).values()) // 1024 + 1024
    with _small_disk(tmp_path / "disk", f"{size_kb}k") as disk:
        output = os.path.join(disk, "out")
        shutil.copytree(committed, output)
        before = snapshot(output)
        _fill(disk, free_kb * 1024)
        result = _label_quietly("--model", model_dir, "--input", str(tmp_path / "in" / "*.parquet"),
                                "--output", output)
        if result.exit_code == 0:
            assert _complete_view(pathlib.Path(output)) is None and read_output(output)[2]["rows_in"] == 900
            return
        _assert_one_line_error(result, "No space left on device")
        if "committing" in result.output or "hold" in result.output:  # the job's own writes name their file
            assert f"{output}/" in result.output, result.output
        assert snapshot(output) == before


def _label_quietly(*args):
    return CliRunner().invoke(cli, ["label", "--no-progress", *args])
