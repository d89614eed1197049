"""The BigQuery swap of a night, and its undo, from the journal's record alone.

`pipelines.sinks.bigquery_tables` loads a night and plans its swap; the commit's
journal keeps the swap's record (tables, night, output, the runs it replaces, its job
ids). Everything here works from that record with no other state, so the run itself, the
next start and `complaints unlock` undo or finish a swap the same way. Every statement
that reads a night's table names its night (partition pruning; tables may require the
filter), and touches only the run ids it names.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import re

from pipelines.plumbing import bigquery
from pipelines.plumbing.bigquery import TableRef
from pipelines.sinks import bigquery_schema

LOG = logging.getLogger(__name__)
WORK_TABLES_EXPIRE = dt.timedelta(days=7)  # an undo table must outlive a journal an operator settles next week


def literal(text: str) -> str:
    """A string as a SQL expression that no character of it can break out of (outputs are paths: quotes,
    backslashes and newlines are all allowed there). Multi-statement scripts cannot take query parameters on
    the emulator, so the value is spelled in base64."""
    import base64

    encoded = base64.b64encode(text.encode("utf-8", errors="surrogateescape")).decode("ascii")
    return f"SAFE_CONVERT_BYTES_TO_STRING(FROM_BASE64('{encoded}'))"


def sql_list(values: list[str]) -> str:
    return ", ".join(literal(v) for v in values)


def swap_job_id(run_id: str, attempt: int) -> str:
    """The swap's job id: known before it is submitted, so the journal can name a job whose answer was lost."""
    return f"complaints_swap_{_safe(run_id)}_{attempt}"


def work_table(ref: TableRef, kind: str, run_id: str, dataset: str) -> TableRef:
    return TableRef(ref.project, dataset, f"{ref.table}__{kind}_{_safe(run_id)}")


def _safe(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", run_id)


def partitioned_by(table) -> str | None:
    partitioning = table.time_partitioning
    return partitioning.field if partitioning is not None else None


def night_filter(night: str, legacy: bool) -> str:
    """The partition filter every statement carries (tables may `require_partition_filter`)."""
    own = f"`{bigquery_schema.NIGHT}` = DATE '{night}'"
    return f"({own} OR `{bigquery_schema.NIGHT}` IS NULL)" if legacy else own


def _of_night(record: dict) -> str:
    """The rows of the record's night and output (the partition filter first: tables may require it)."""
    output = literal(record["output"])
    return f"{night_filter(record['night'], record['legacy'])} AND `{bigquery_schema.OUTPUT}` = {output}"


def _refs(record: dict) -> list[TableRef]:
    return [TableRef.parse(name) for name in record["tables"]]


def _columns(client, ref: TableRef, deadline: float) -> list[str]:
    """A table's columns, named: never `SELECT *` (explicit lists survive a column added elsewhere, and the
    emulator drops columns from `SELECT *` under some filters)."""
    return [f.name for f in client.get_table(str(ref), timeout=deadline, retry=bigquery.retry(deadline)).schema]


def swap_script(record: dict) -> str:
    """One transaction over both tables: the rows of the runs it replaces kept in the undo tables and deleted,
    the load tables' rows inserted with this run's columns. Touches no other run's rows."""
    client, deadline = bigquery.client(record["project"]), record["deadline_secs"]
    where = _of_night(record)
    statements = []
    for ref in _refs(record):
        load, undo = (work_table(ref, kind, record["run_id"], record["scratch"]) for kind in ("load", "undo"))
        every = ", ".join(f"`{c}`" for c in _columns(client, ref, deadline))
        if record["replaces"]:
            replaced = f"{where} AND `{bigquery_schema.RUN_ID}` IN ({sql_list(record['replaces'])})"
            statements += [f"INSERT INTO {undo.sql} ({every}) SELECT {every} FROM {ref.sql} WHERE {replaced};",
                           f"DELETE FROM {ref.sql} WHERE {replaced};"]
        targets, sources = [], []
        for name in _columns(client, load, deadline):
            if name == "payload" and record["hash_letters"]:
                targets.append("`payload_sha256`")
                sources.append("TO_HEX(SHA256(`payload`))")
            else:
                targets.append(f"`{name}`")
                sources.append(f"`{name}`")
        added = {bigquery_schema.RUN_ID: literal(record["run_id"]), bigquery_schema.OUTPUT: literal(record["output"]),
                 bigquery_schema.NIGHT: f"DATE '{record['night']}'",
                 bigquery_schema.LABELLED_AT: f"TIMESTAMP '{record['labelled_at']}'"}
        statements.append(f"INSERT INTO {ref.sql} ({', '.join(targets + [f'`{k}`' for k in added])}) "
                          f"SELECT {', '.join(sources + list(added.values()))} FROM {load.sql};")
    return "BEGIN TRANSACTION;\n" + "\n".join(statements) + "\nCOMMIT TRANSACTION;"


class Settler:
    """Undoes or finishes a swap from its journal record alone (`pipelines.plumbing.journal.settle`)."""

    def back(self, record: dict) -> None:
        """The night's rows as they were before the swap, if it committed; its work tables dropped after. Raises
        with the state of the tables when that cannot be confirmed (the undo tables are then kept)."""
        client, deadline = bigquery.client(record["project"]), record["deadline_secs"]
        try:
            for job_id in record["jobs"]:
                try:
                    bigquery.wait_job(client, job_id, deadline)
                except bigquery.JobError:
                    pass  # it failed: it changed nothing
            if self._applied(client, record):
                undo_id = f"complaints_undo_{_safe(record['run_id'])}_{len(record['jobs'])}_{random.randrange(10**6)}"
                bigquery.run_job(client, undo_script(client, record), undo_id, deadline, labels=record["labels"])
                if self._applied(client, record):
                    raise RuntimeError("rows of this run are still in the table after its undo")
        except Exception as exc:  # noqa: BLE001 (every failure: said with what is kept)
            undo = ", ".join(str(work_table(r, "undo", record["run_id"], record["scratch"])) for r in _refs(record))
            raise bigquery.OutcomeUnknown(
                f"BigQuery's part could not be confirmed undone ({_said(exc)}): {record['tables'][0]} may still "
                f"hold run {record['run_id']}'s rows for night {record['night']}; the rows it replaced are kept in "
                f"{undo}") from None
        self.forward(record)

    def _applied(self, client, record: dict) -> bool:
        """Whether this run's rows are in either table: the swap inserts them in one transaction, so any is all."""
        night = night_filter(record["night"], record["legacy"])
        where = f"{night} AND `{bigquery_schema.RUN_ID}` = {literal(record['run_id'])}"
        return any(bigquery.count(client, f"SELECT COUNT(*) AS n FROM {ref.sql} WHERE {where}",
                                  record["deadline_secs"]) > 0 for ref in _refs(record))

    def forward(self, record: dict) -> None:
        """Drop the run's work tables (best effort: they expire by themselves)."""
        try:
            client, deadline = bigquery.client(record["project"]), record["deadline_secs"]
        except Exception:  # noqa: BLE001
            return
        for ref in _refs(record):
            for kind in ("load", "undo"):
                work = work_table(ref, kind, record["run_id"], record["scratch"])
                try:
                    client.delete_table(str(work), not_found_ok=True, timeout=deadline,
                                        retry=bigquery.retry(deadline))
                except Exception as exc:  # noqa: BLE001
                    LOG.warning("could not drop %s (%s); it expires within %s", work, bigquery.where(exc),
                                WORK_TABLES_EXPIRE)


def undo_script(client, record: dict) -> str:
    """Delete the rows of this run and of the runs it replaced, put the undo tables' rows back: the same
    outcome however often it runs, since the undo tables hold exactly the replaced rows.

    Fenced: it does anything only while this run's own rows are still in the predictions table, read inside
    the transaction (`mine`). A run that lost its hold and whose rows a newer run has since replaced finds
    none, and leaves the newer run's rows, and the rows that run replaced, alone."""
    where = _of_night(record)
    runs = sql_list([record["run_id"], *record["replaces"]])
    own = f"{where} AND `{bigquery_schema.RUN_ID}` = {literal(record['run_id'])}"
    statements = [f"SET mine = (SELECT COUNT(*) FROM {_refs(record)[0].sql} WHERE {own});"]
    for ref in _refs(record):
        undo = work_table(ref, "undo", record["run_id"], record["scratch"])
        every = ", ".join(f"`{c}`" for c in _columns(client, ref, record["deadline_secs"]))
        statements += [f"DELETE FROM {ref.sql} WHERE mine > 0 AND {where} AND `{bigquery_schema.RUN_ID}` IN ({runs});",
                       f"INSERT INTO {ref.sql} ({every}) SELECT {every} FROM {undo.sql} WHERE mine > 0;"]
    return "DECLARE mine INT64 DEFAULT 0;\nBEGIN TRANSACTION;\n" + "\n".join(statements) + "\nCOMMIT TRANSACTION;"


def _said(exc: BaseException) -> str:
    return bigquery.where(exc) if not isinstance(exc, bigquery.OutcomeUnknown | bigquery.JobError) else str(exc)
