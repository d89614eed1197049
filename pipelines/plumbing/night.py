"""A night's identity: its output spelt one way, and its date, the same in both stores and in the journal.

`labelled/x`, `./labelled/x` and `labelled/x/` are one output, and so are
`gs://b/l/2026-12-01` and `gs://b/l/2026-12-01/`: the output is normalised before
anything uses it (absolute, no `.` or `..`, no trailing or doubled slash, the scheme
in lower case). The night's date is `--night`, or else the last date its output's
path spells (`…/2026-12-01`, `…/20261201`, `…/dt=2026-12-01`); with neither, the
date the run starts (UTC), except that BigQuery, which keys and partitions its rows
by that date, then asks for `--night` rather than guess.
"""

from __future__ import annotations

import datetime as dt
import os
import posixpath
import re

from model import files
from model.errors import UserError

_DATE = re.compile(r"(?<!\d)(\d{4})-?(\d{2})-?(\d{2})(?!\d)")


def normalised(output: str) -> str:
    if not files.remote(output):
        return os.path.abspath(os.path.expanduser(output))
    scheme, rest = output.split("://", 1)
    bucket, _, path = rest.partition("/")
    path = posixpath.normpath(re.sub(r"/+", "/", "/" + path)) if path.strip("/") else ""
    return f"{scheme.lower()}://{bucket}{path if path != '/' else ''}"


def parsed(text: str, option: str = "--night") -> str:
    try:
        return dt.date.fromisoformat(text.strip()).isoformat()
    except ValueError:
        raise UserError(f"{option} {text!r} is not a date: give it as YYYY-MM-DD") from None


def in_path(output: str) -> str | None:
    """The last valid date the output's path spells, as YYYY-MM-DD."""
    for part in reversed(output.rstrip("/").split("/")):
        for match in reversed(list(_DATE.finditer(part))):
            try:
                return dt.date(*(int(g) for g in match.groups())).isoformat()
            except ValueError:
                continue
    return None


def of_run(output: str, given: str | None, needed_by: str | None = None) -> tuple[str, str]:
    """(the night's date, where it came from: 'given', 'output' or 'started')."""
    if given:
        return parsed(given), "given"
    found = in_path(output)
    if found:
        return found, "output"
    if needed_by:
        raise UserError(f"{needed_by} keys each night by its date, and {output} spells none: pass --night "
                        "YYYY-MM-DD, or name the output after its night (…/2026-12-01)")
    return dt.datetime.now(dt.UTC).date().isoformat(), "started"
