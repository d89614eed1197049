"""The live job's local-read settings, importable without Pub/Sub's client (the CLI reads them for --help)."""

from __future__ import annotations

from dataclasses import dataclass, field

STOP_TIMEOUT_SECS = 30  # after SIGINT/SIGTERM, the longest the late-ack job takes to stop
UNHEALTHY_AFTER_SECS = 60  # /healthz fails once no pull has succeeded for this long


@dataclass(frozen=True)
class LeaseSettings:
    """How much the local read holds at once, and how long Pub/Sub waits for it."""

    ack_deadline_secs: int = field(default=30, metadata={
        "low": 10, "high": 600, "help": "Local read: the lease kept on each message until its output is "
        "published; after a crash, Pub/Sub redelivers within this time."})
    max_outstanding_messages: int = field(default=5000, metadata={
        "low": 1, "help": "Local read: pulled but not yet acknowledged messages, at most."})
    max_outstanding_bytes: int = 256 * 2**20  # pulls are sized by the mean message size seen to stay under it
    pull_size: int = 1000  # messages asked for in one pull
    max_lease_secs: int = field(default=600, metadata={
        "low": 10, "help": "Local read: a message held longer than this is handed back to Pub/Sub "
        "(leases_expired)."})


FIRST_SIZE_GUESS = 64 * 1024  # bytes a message is assumed to have before any was seen


def pull_room(settings: LeaseSettings, leased: int, leased_bytes: int, mean_size: float) -> int:
    """How many messages the next pull may ask for: under the message budget and, by the mean size seen so
    far, under the byte budget (a single message may still be up to 10 MB over it)."""
    if leased_bytes >= settings.max_outstanding_bytes:
        return 0
    by_bytes = int((settings.max_outstanding_bytes - leased_bytes) // max(mean_size, 1.0))
    return max(0, min(settings.pull_size, settings.max_outstanding_messages - leased, max(by_bytes, 1)))
