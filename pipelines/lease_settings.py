"""The live job's local-read settings, importable without Pub/Sub's client (the CLI reads them for --help)."""

from __future__ import annotations

from dataclasses import dataclass

STOP_TIMEOUT_SECS = 30  # after SIGINT/SIGTERM, the longest the late-ack job takes to stop
UNHEALTHY_AFTER_SECS = 60  # /healthz fails once no pull has succeeded for this long


@dataclass(frozen=True)
class LeaseSettings:
    """How much the local read holds at once, and how long Pub/Sub waits for it."""

    ack_deadline_secs: int = 30  # after a crash, messages come back after at most this long
    max_outstanding_messages: int = 5000  # pulled and not yet acknowledged
    max_outstanding_bytes: int = 256 * 2**20  # pulls are sized by the mean message size seen to stay under it
    pull_size: int = 1000  # messages asked for in one pull
    max_lease_secs: int = 600  # a message held longer is handed back to Pub/Sub (leases_expired)
