"""Input validation and dead letters; the prediction record is defined in `worker.prediction`.

An input record is a dict with an `id`, a `text` and any passthrough fields. Every
record comes out exactly once: as a prediction or as a dead letter with a stable
reason code, so `records in = predictions + dead letters` always holds.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from worker.defaults import MAX_TEXT_CHARS  # noqa: F401 (part of the validity rules: records.MAX_TEXT_CHARS)

# Dead-letter reason codes: stable strings that dashboards and alerts can rely on.
MALFORMED_RECORD = "malformed_record"  # not a mapping at all
MISSING_ID = "missing_id"
MISSING_TEXT = "missing_text"
TEXT_NOT_STRING = "text_not_string"
INVALID_UTF8 = "invalid_utf8"
MALFORMED_JSON = "malformed_json"  # a Pub/Sub message that starts like JSON and is not
EMPTY_TEXT = "empty_text"  # nothing left after standardisation
INFERENCE_FAILED = "inference_failed"
PUBLISH_REJECTED = "publish_rejected"  # the live job: Pub/Sub refused to store the record's output
REASONS = (MALFORMED_RECORD, MALFORMED_JSON, MISSING_ID, MISSING_TEXT, TEXT_NOT_STRING, INVALID_UTF8, EMPTY_TEXT,
           INFERENCE_FAILED, PUBLISH_REJECTED)

PAYLOAD_LIMIT = 4096  # characters of the original record kept in a dead letter
ID = "id"
TEXT = "text"
# A record may carry the message it came from under this key. The worker never reads
# it; it comes back on the record's prediction (same key) or dead letter (as `source`),
# so a streaming sink can acknowledge the message or republish it. Sinks never write it.
SOURCE = "_source"

DEAD_LETTER_SCHEMA = pa.schema([
    pa.field("id", pa.string()),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("detail", pa.string(), nullable=False),
    pa.field("payload", pa.string(), nullable=False),
])


def payload_text(payload: Any) -> str:
    """The original input as text for a dead letter, truncated to PAYLOAD_LIMIT characters."""
    if isinstance(payload, bytes):
        text = payload.decode("utf-8", errors="backslashreplace")
    elif isinstance(payload, str):
        text = payload
    else:
        try:
            text = json.dumps(payload, ensure_ascii=False, default=_repr_default, sort_keys=True)
        except (ValueError, TypeError, RecursionError):  # a lone surrogate, mixed key types, deep nesting
            try:
                text = repr(payload)
            except (ValueError, RecursionError):
                text = f"<a {type(payload).__name__} that cannot be shown>"
    text = text.encode("utf-8", errors="backslashreplace").decode("utf-8")
    return text if len(text) <= PAYLOAD_LIMIT else text[:PAYLOAD_LIMIT] + "…[truncated]"


def _repr_default(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return repr(value)


def dead_letter(record_id: str | None, reason: str, detail: str, payload: Any) -> dict:
    letter = {"id": record_id, "reason": reason, "detail": detail}
    if isinstance(payload, dict) and SOURCE in payload:
        letter["source"] = payload[SOURCE]
        payload = {k: v for k, v in payload.items() if k != SOURCE}
    letter["payload"] = payload_text(payload)
    return letter


def record_id(value: Any) -> str | None:
    """An id as the outputs carry it (a string), or None when the record has none."""
    if value is None or (isinstance(value, float) and value != value):  # None or NaN
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="backslashreplace")
    value = str(value)
    return value if value.strip() else None


def checked_text(text: Any) -> str | tuple[str, str]:
    """The text to classify, or (reason, detail) when the record cannot be classified.

    The one definition of a classifiable text: `validate` (a record at a time) and
    the nightly job's columnar path (`worker.tables`) both decide with it.
    """
    if text is None or (isinstance(text, float) and text != text):
        return MISSING_TEXT, "the record has no text"
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            return INVALID_UTF8, f"text is not valid UTF-8: {exc.reason} at byte {exc.start}"
    if not isinstance(text, str):
        return TEXT_NOT_STRING, f"text is {type(text).__name__}, not a string"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return INVALID_UTF8, f"text has an unpaired surrogate at {exc.start}"
    if not text.strip():
        return EMPTY_TEXT, "the text is empty"
    return text


def check(raw_id: Any, raw_text: Any) -> tuple[str, str] | tuple[str | None, str, str]:
    """THE validity rule of a row, whoever read it: (id, text) to classify, or (id or None, reason, detail).

    Both jobs decide with it (the nightly job over a table's columns, the live job and
    `predict` over records, through `validate`), so a row is refused for the same
    reason everywhere.
    """
    rid = record_id(raw_id)
    if rid is None:
        return None, MISSING_ID, "the record has no id"
    text = checked_text(raw_text)
    return (rid, *text) if isinstance(text, tuple) else (rid, text)


def refused(record: dict, checked: tuple[str | None, str, str]) -> dict:
    """The dead letter of a record `check` refused; its payload carries the id as the letter does (a string)."""
    rid, reason, detail = checked
    return dead_letter(rid, reason, detail, record if rid is None else {**record, ID: rid})


def validate(record: Any) -> tuple[dict, str] | dict:
    """Split a record into (key fields, text), or return its dead letter.

    The key fields are the record without its text (id stringified): they travel
    alongside the text through inference and become the passthrough columns.
    """
    if not isinstance(record, dict):
        return dead_letter(None, MALFORMED_RECORD, f"expected a mapping, got {type(record).__name__}", record)
    checked = check(record.get(ID), record.get(TEXT))
    if len(checked) == 3:
        return refused(record, checked)
    key = {k: v for k, v in record.items() if k != TEXT}
    key[ID] = checked[0]
    return key, checked[1]


def unvalidatable(record: Any, exc: BaseException) -> dict:
    """The dead letter of a record that validating failed on in a way nobody foresaw."""
    try:
        rid = record_id(record.get(ID)) if isinstance(record, dict) else None
    except Exception:  # noqa: BLE001 (an id whose str() raises is no id)
        rid = None
    return dead_letter(rid, MALFORMED_RECORD, f"the record could not be checked: {type(exc).__name__}: "
                       f"{str(exc)[:200]}", record)
