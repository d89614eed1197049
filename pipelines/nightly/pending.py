"""A labelled night kept staged because its warehouse was busy, and `complaints commit`, which commits it later.

When BigQuery keeps aborting a night's swap for concurrent transactions on its table
(backfills) for longer than `--bigquery-busy-wait-secs`, the night is not thrown away:
the commit is settled back (both stores are yesterday's), and the staging folder stays
with `_PENDING.json`, which holds what the commit needs that the staged files do not
(the table, the night, the kept columns' types, the warehouse settings). Starts leave
such a folder alone; `complaints commit --output OUT` takes the output, commits the
newest pending night exactly as the run would have (files, swap, `_SUCCESS`), and a
later run that commits the night itself makes every older pending night moot (it
removes them). Nothing is labelled again.
"""

from __future__ import annotations

import base64
import json
import posixpath

import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from model.errors import UserError
from pipelines.plumbing import commit, journal

PENDING = commit.PENDING


def keep(staging: str, table: str, night: str, passthrough: tuple, warehouse: dict) -> None:
    """Mark a settled-back night's staging folder as pending (`warehouse`: the BigQuery sink's settings)."""
    fields = base64.b64encode(pa.schema(list(passthrough)).serialize().to_pybytes()).decode("ascii")
    record = {"table": table, "night": night, "passthrough": fields, "warehouse": warehouse}
    commit.write_text(commit.join(staging, PENDING), json.dumps(record, indent=1) + "\n")


def found(output: str) -> list[str]:
    """The output's pending staging folders, oldest run first (run ids begin with their start time)."""
    pattern = commit.join(output, f".staging-*/{PENDING}")
    matches = FileSystems.match([pattern])[0].metadata_list
    return sorted(posixpath.dirname(m.path) for m in matches)


def supersede(output: str, run_id: str) -> list[str]:
    """A run that committed the night itself: the pending nights of older runs are moot; removed."""
    removed = []
    for staging in found(output):
        if journal.run_id_of(staging) < run_id:
            commit.abort(staging)
            removed.append(staging)
    return removed


def load(staging: str) -> dict:
    try:
        record = json.loads(commit.read_text(commit.join(staging, PENDING)))
        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(record["passthrough"])))
    except (ValueError, KeyError, TypeError, pa.ArrowException) as exc:
        raise UserError(f"{commit.join(staging, PENDING)} cannot be read ({exc}): this night cannot be committed "
                        "later; label it again") from None
    return {**record, "passthrough": tuple(schema)}


def commit_later(output: str, stale_secs: float) -> dict:
    """Commit the output's newest pending night (see the module docstring); returns its summary."""
    import functools

    from pipelines.plumbing.bigquery import TableRef
    from pipelines.plumbing.hold import OutputLock, new_run_id, staging_alive
    from pipelines.sinks import settlers
    from pipelines.sinks.bigquery_tables import BigQueryTables, Warehouse
    from pipelines.sinks.parquet_files import NIGHTLY_FILES

    waiting = found(output)
    if not waiting:
        raise UserError(f"{output} has no night waiting to be committed (nothing was kept staged)")
    staging = waiting[-1]
    run_id, record = journal.run_id_of(staging), load(staging)
    summary = json.loads(commit.read_text(commit.join(staging, commit.SUMMARY)))
    for key in ("output_files", "bigquery"):
        summary.pop(key, None)
    sink = BigQueryTables(TableRef.parse(record["table"]), output, run_id, record["night"], record["passthrough"],
                          Warehouse(**record["warehouse"]))
    sink.check()
    with OutputLock(output, new_run_id("commit"), stale_secs) as lock:
        commit.recover(output, staging, functools.partial(staging_alive, stale_secs=stale_secs), settlers())
        current = commit.join(output, commit.SUCCESS)
        if FileSystems.exists(current) and commit.read_text(current).strip() > run_id:
            commit.abort(staging)
            raise UserError(f"run {commit.read_text(current).strip()} committed {output} after run {run_id} "
                            "labelled the night kept staged: it is moot and was removed")

        def steps(transaction: commit.Commit) -> dict:
            transaction.publish(NIGHTLY_FILES)
            sink.commit(transaction)
            return transaction.finish(summary, settlers())

        transaction = commit.Commit(output, staging, run_id, lock.check)
        try:
            committed = transaction.run(steps, settlers())
        except commit.CommitFailed as exc:
            raise UserError(f"committing the night run {run_id} labelled failed ({exc.cause}); "
                            f"{'both stores are as they were' if exc.restored and not exc.unsettled else exc.unsettled}"
                            f"; it stays staged: try `complaints commit --output {output}` again") from None
        supersede(output, run_id)
        return committed
