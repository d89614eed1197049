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
DEADLINE_SECS = 120.0  # one API call, retries included
DEAD_LETTERS_SUFFIX = "_dead_letters"

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


def retry():
    """The client's default retry with a deadline: a call that keeps failing ends (the emulator answers some bad
    requests with HTTP 500, which the client retries for ten minutes by default)."""
    from google.cloud.bigquery.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_deadline(DEADLINE_SECS)


def where(exc: BaseException) -> str:
    """A Google API error as one short line (its message, without the job id and location lines)."""
    message = getattr(exc, "message", None) or str(exc)
    first = " ".join(str(message).split("\n\n")[0].split())
    return first[:400]
