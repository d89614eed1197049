"""A live record's passthrough as columns, so the live job's predictions are Arrow tables like the nightly job's.

A Pub/Sub message is any JSON object, so what travels beside its text has no fixed
schema. It becomes three string columns: `message_id`, `fields` (the record's other
fields as one strict JSON object, or null when it has none) and `_source` (the
message it came from, as JSON; the Pub/Sub edge needs it to answer and acknowledge,
and no sink writes it). Every sink then receives prediction tables in both jobs,
and records exist only at the Pub/Sub edge: `records` turns a table back into them
there, and for `predict` and the page.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pyarrow as pa

from worker import prediction, records

MESSAGE_ID = "message_id"
FIELDS = "fields"
SOURCE = records.SOURCE  # never written by a sink
COLUMNS = (pa.field(MESSAGE_ID, pa.string()), pa.field(FIELDS, pa.string()), pa.field(SOURCE, pa.string()))
WRITTEN = tuple(f for f in COLUMNS if f.name != SOURCE)  # what a Parquet archive of the live job keeps
OMITTED = "omitted_fields"
_OWN = (records.ID, records.TEXT, MESSAGE_ID, SOURCE)


def schema(explain: bool = False) -> pa.Schema:
    """The live job's prediction tables (and `predict`'s): the prediction's fields, then these columns."""
    return prediction.schema(COLUMNS, explain)


def strict_json(value: Any) -> str:
    """RFC 8259 JSON: a non-finite float is null (JSON has no NaN); a lone surrogate stays as its escape."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str, allow_nan=False)
    except ValueError:
        text = json.dumps(finite(value), ensure_ascii=False, default=str, allow_nan=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # half a surrogate pair: not UTF-8, so Arrow and Pub/Sub refuse it unescaped
        text = json.dumps(json.loads(text), ensure_ascii=True)
    return text


def finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def _fields_json(key: dict) -> str | None:
    """The record's own fields as JSON; if they cannot be written at all, the names of those left out."""
    fields = {k: v for k, v in key.items() if k not in _OWN}
    if not fields:
        return None
    try:
        return strict_json(fields)
    except (ValueError, TypeError, RecursionError):  # circular, keys JSON cannot hold, nesting past the limit
        return strict_json({OMITTED: sorted(str(k) for k in fields)})


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def kept_table(keys: list[dict]) -> pa.Table:
    """The key fields of validated records (`records.validate`) as the three passthrough columns."""
    return pa.table({
        MESSAGE_ID: pa.array([_text_or_none(k.get(MESSAGE_ID)) for k in keys], pa.string()),
        FIELDS: pa.array([_fields_json(k) for k in keys], pa.string()),
        SOURCE: pa.array([strict_json(k[SOURCE]) if k.get(SOURCE) is not None else None for k in keys],
                         pa.string()),
    })


def record_of(row: dict) -> dict:
    """A kept row back as the record's fields (`_source` a dict again): a dead letter's payload."""
    record = json.loads(row[FIELDS]) if row.get(FIELDS) else {}
    if row.get(MESSAGE_ID) is not None:
        record[MESSAGE_ID] = row[MESSAGE_ID]
    if row.get(SOURCE):
        record[SOURCE] = json.loads(row[SOURCE])
    return record


def records(table: pa.Table) -> list[dict]:
    """Prediction records from a prediction table: the input's fields, then the prediction's, as Pub/Sub sends
    them (and `_source`, for the edge that answers the message; never encoded)."""
    rows = table.to_pylist()
    if FIELDS not in table.column_names:
        return rows
    out = []
    for row in rows:
        kept = {name: row.pop(name) for name in (MESSAGE_ID, FIELDS, SOURCE) if name in row}
        out.append({**record_of(kept), **row})
    return out


def ack_id(record: dict) -> str | None:
    """The local read's ack id of the message a prediction or dead letter came from."""
    source = record.get(SOURCE) or record.get("source") or {}
    return source.get("ack_id")
