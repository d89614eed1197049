"""Turning a failed Beam run into the one line a user should read."""

from __future__ import annotations

import re

from model.errors import UserError


class JobFailed(UserError):
    """The pipeline itself failed (bad data inside a file, a missing topic, a worker crash)."""


def cause(exc: BaseException) -> str:
    """The original error inside Beam's wrapped worker exception, as `Type: message`."""
    text = re.sub(r"\s*\[while running '[^']*'\]", "", str(exc)).strip()
    match = re.findall(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception|NotFound|Input)): (.+)$", text, flags=re.MULTILINE)
    if match:
        name, message = match[-1]
        return f"{name}: {message}"[:500]
    lines = [line for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:500]
