"""`complaints unlock`'s second half: settle what runs that died left in an output, holding it as a run would.

A run settles its predecessors' commits itself when it starts (`pipelines.nightly.job`);
an operator who will not start a run (a night to be checked by hand, a night whose
BigQuery part was left unsettled) settles them with `complaints unlock --output OUT`.
Both go through `pipelines.plumbing.commit.recover`, so there is one way to settle.
"""

from __future__ import annotations

import functools

from apache_beam.io.filesystems import FileSystems

from pipelines.plumbing import commit
from pipelines.plumbing.hold import DEFAULT_STALE_SECS, OutputLock, new_run_id, staging_alive
from pipelines.sinks import settlers


def recover_output(output: str, stale_secs: float = DEFAULT_STALE_SECS) -> tuple[list[str], list[str]]:
    """(a sentence per dead commit settled, the leftover folders cleared); nothing when the output does not exist.
    A run still alive keeps its commit and folders; a hold another run has is refused in one line."""
    if not FileSystems.exists(output):
        return [], []
    with OutputLock(output, new_run_id("unlock"), stale_secs):
        return commit.recover(output, "", functools.partial(staging_alive, stale_secs=stale_secs), settlers())
