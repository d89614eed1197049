"""BigQuery as the jobs reach it: a table named on the command line, and clients that honour the emulator.

Both the nightly job's tables (`pipelines.sinks.bigquery_tables`) and anything else
that talks to BigQuery get their client here, so `BIGQUERY_EMULATOR_HOST` means the
same thing everywhere: requests go to that address, with anonymous credentials (the
client would otherwise look for Google credentials first and fail without them), and
every call has a deadline, so an emulator or a network that does not answer is one
error line rather than a hang.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from model.errors import UserError

EMULATOR_HOST = "BIGQUERY_EMULATOR_HOST"
# The Storage Read API speaks gRPC on another port; no client library has a variable for it, so this is ours.
EMULATOR_GRPC_HOST = "BIGQUERY_EMULATOR_GRPC_HOST"
DEADLINE_SECS = 120.0  # one API call, retries included (--bigquery-deadline-secs)
JOB_DEADLINE_FACTOR = 5  # a job (a load, the swap) may run this many call deadlines before it is cancelled
DEAD_LETTERS_SUFFIX = "_dead_letters"
NIGHTS_SUFFIX = "_nights"
SHADOW_SUFFIX = "_shadow"

_PROJECT = r"[a-z][a-z0-9\-.:]{2,62}[a-z0-9]"  # domain-scoped ids (example.com:p) included
_DATASET = r"[A-Za-z0-9_]{1,1024}"
_TABLE = r"[\w\-\$ ]{1,1024}"


@dataclass(frozen=True)
class TableRef:
    """`PROJECT.DATASET.TABLE`, checked on the launcher before any work."""

    project: str
    dataset: str
    table: str

    @classmethod
    def parse(cls, text: str, option: str = "--bigquery-table") -> TableRef:
        match = re.fullmatch(rf"(?:bq://)?({_PROJECT})[.:]({_DATASET})\.({_TABLE})", text.strip())
        if not match or "$" in match.group(3):
            raise UserError(f"{option} {text!r} is not PROJECT.DATASET.TABLE (a partition decorator such as "
                            "TABLE$20261127 is not one either): name the table, e.g. my-project.complaints.labels")
        return cls(*match.groups())

    def __str__(self) -> str:
        return f"{self.project}.{self.dataset}.{self.table}"

    def sibling(self, name: str) -> TableRef:
        return TableRef(self.project, self.dataset, name)

    @property
    def dead_letters(self) -> TableRef:
        return self.sibling(self.table + DEAD_LETTERS_SUFFIX)

    @property
    def shadow(self) -> TableRef:
        """A challenger's labels for the same nights (`label --shadow`)."""
        return self.sibling(self.table + SHADOW_SUFFIX)

    @property
    def nights(self) -> TableRef:
        """The view of the nights committed into this table."""
        return self.sibling(self.table + NIGHTS_SUFFIX)

    @property
    def sql(self) -> str:
        """The table in a query (backquoted: project ids may hold dashes)."""
        return f"`{self.project}.{self.dataset}.{self.table}`"


def client(project: str):
    """A BigQuery client for `project`; against `$BIGQUERY_EMULATOR_HOST` when it is set."""
    from google.cloud import bigquery

    host = os.environ.get(EMULATOR_HOST)
    if not host:
        return bigquery.Client(project=project)
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials

    endpoint = host if "://" in host else f"http://{host}"
    return bigquery.Client(project=project, credentials=AnonymousCredentials(),
                           client_options=ClientOptions(api_endpoint=endpoint))


def read_client():
    """A Storage Read API client (`--input bq://`); against `$BIGQUERY_EMULATOR_GRPC_HOST` (host:port, plain
    gRPC) when the emulator is set."""
    from google.cloud.bigquery_storage_v1 import BigQueryReadClient

    if not os.environ.get(EMULATOR_HOST):
        return BigQueryReadClient()
    host = os.environ.get(EMULATOR_GRPC_HOST)
    if not host:
        raise UserError(f"{EMULATOR_HOST} is set but {EMULATOR_GRPC_HOST} is not: set it to the emulator's gRPC "
                        "host:port, which the Storage Read API (--input bq://) speaks")
    import grpc
    from google.cloud.bigquery_storage_v1.services.big_query_read.transports import BigQueryReadGrpcTransport

    return BigQueryReadClient(transport=BigQueryReadGrpcTransport(channel=grpc.insecure_channel(host)))


def retry(deadline: float = DEADLINE_SECS):
    """The client's default retry with a deadline: a call that keeps failing ends (the emulator answers some bad
    requests with HTTP 500, which the client retries for ten minutes by default). Pass the same number as the
    call's `timeout`, which bounds each HTTP request: a frozen endpoint otherwise holds one for ever."""
    from google.cloud.bigquery.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_deadline(deadline)


def query(client, sql: str, deadline: float):
    """One query's rows, each request bounded by `deadline` and the job by `JOB_DEADLINE_FACTOR` of them."""
    job = client.query(sql, timeout=deadline, job_retry=None, retry=retry(deadline))
    return job.result(timeout=deadline * JOB_DEADLINE_FACTOR, retry=retry(deadline))


def count(client, sql: str, deadline: float) -> int:
    """The `n` of a `SELECT COUNT(*) AS n …`."""
    return next(iter(query(client, sql, deadline)))["n"]


class OutcomeUnknown(Exception):
    """A job whose end could not be established within its deadlines: it may still commit."""


class JobError(Exception):
    """A job that ended with an error (its `error_result`); `conflict` when concurrent transactions aborted it."""

    def __init__(self, job_id: str, message: str):
        super().__init__(f"BigQuery job {job_id} failed: {message}")
        self.conflict = "concurrent update" in message.lower()


def run_job(client, sql: str, job_id: str, deadline: float, clock=None, labels: dict | None = None) -> None:
    """Submit one query job under `job_id`, poll it to DONE (cancelling it past its deadline and waiting for the
    cancel), and decide from its `error_result`: returns if it succeeded, raises JobError if it did not, and
    OutcomeUnknown when BigQuery would not say."""
    from google.api_core import exceptions
    from google.cloud.bigquery import QueryJobConfig

    try:
        client.query(sql, job_id=job_id, job_config=QueryJobConfig(labels=dict(labels or {})), timeout=deadline,
                     retry=retry(deadline), job_retry=None)
    except exceptions.Conflict:
        pass  # already submitted (the answer to an earlier try was lost): follow it
    except Exception as exc:  # noqa: BLE001 (a transport error: the job may exist all the same)
        if not _submitted(client, job_id, deadline, exc):
            raise JobError(job_id, f"not submitted ({where(exc)})") from None
    wait_job(client, job_id, deadline, clock)


def _submitted(client, job_id: str, deadline: float, cause: BaseException) -> bool:
    from google.api_core import exceptions

    try:
        client.get_job(job_id, timeout=deadline, retry=retry(deadline))
        return True
    except exceptions.NotFound:
        return False
    except Exception:  # noqa: BLE001
        raise OutcomeUnknown(f"BigQuery did not answer within {deadline:.0f} s ({where(cause)}), so whether job "
                             f"{job_id} ran is not known") from None


def wait_job(client, job_id: str, deadline: float, clock=None) -> bool:
    """Poll a job to DONE; False when there is no such job. Cancels it past `JOB_DEADLINE_FACTOR` deadlines."""
    import time

    from google.api_core import exceptions

    clock = clock or time.monotonic
    give_up, cancelled = clock() + deadline * JOB_DEADLINE_FACTOR, False
    pause = 0.2
    while True:
        try:
            job = client.get_job(job_id, timeout=deadline, retry=retry(deadline))
        except exceptions.NotFound:
            return False
        except Exception as exc:  # noqa: BLE001
            raise OutcomeUnknown(f"BigQuery did not answer within {deadline:.0f} s ({where(exc)}), so the outcome "
                                 f"of job {job_id} is not known") from None
        if job.state == "DONE":
            if job.error_result:
                raise JobError(job_id, str(job.error_result.get("message", job.error_result)))
            return True
        if clock() > give_up:
            if cancelled:
                waited = deadline * 2 * JOB_DEADLINE_FACTOR
                raise OutcomeUnknown(f"job {job_id} did not end, even cancelled, within {waited:.0f} s")
            client.cancel_job(job_id, timeout=deadline, retry=retry(deadline))
            give_up, cancelled = clock() + deadline * JOB_DEADLINE_FACTOR, True
        time.sleep(pause)
        pause = min(pause * 2, 2.0)


def where(exc: BaseException) -> str:
    """A Google API error as one short line (its message, without the job id and location lines)."""
    message = getattr(exc, "message", None) or str(exc)
    first = " ".join(str(message).split("\n\n")[0].split())
    return first[:400]
