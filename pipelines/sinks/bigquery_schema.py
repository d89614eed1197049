"""BigQuery table schemas, derived from the one prediction record: never autodetected.

Autodetection guesses from the first file it reads, so a night whose kept column
happened to be all null, or whose `top_k` list was read as a plain group, would fix
a wrong schema for every later night. Here each column's BigQuery type follows from
its Arrow type in `worker.prediction.schema` (the Parquet files' own schema), so the
table, the Parquet files and the Pub/Sub messages agree by construction.

What BigQuery cannot hold is refused before any work, in one line: unsigned 64-bit
integers (BigQuery's INT64 is signed), lists of lists (BigQuery has no nested arrays)
and decimals beyond BIGNUMERIC. Maps become REPEATED RECORD<key, value>, as BigQuery's
load jobs write them (`map_target_type=ARRAY_OF_STRUCT`).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from model.errors import UserError
from worker import prediction
from worker.records import DEAD_LETTER_SCHEMA

# The columns the nightly tables add to each record: which run wrote the row, for which night (its date, and its
# --output normalised), and when it was committed.
RUN_ID, OUTPUT, NIGHT, LABELLED_AT = "run_id", "output", "night", "labelled_at"
# Added after the first release: a table without them gains them by a schema update (NULLABLE, as BigQuery adds a
# column), never by an error.
ADDED = ({"name": NIGHT, "type": "DATE", "mode": "NULLABLE",
          "description": "The night's date (--night): the table's partitioning column."},
         {"name": LABELLED_AT, "type": "TIMESTAMP", "mode": "NULLABLE",
          "description": "When the run that wrote the row committed it."})
LIVE_EXTRA = (("message_id", pa.string()), ("omitted_fields", pa.list_(pa.string())))


def field(f: pa.Field, where: str = "") -> dict:
    """One Arrow field as a BigQuery schema field (the REST API's JSON form, which `bq mk` and Pub/Sub take)."""
    kind = f.type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    name = f"{where}{f.name}"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        inner = field(pa.field(f.name, kind.value_type), where)
        if inner["mode"] == "REPEATED":
            raise UserError(f"column {name!r} is a list of lists, which BigQuery cannot hold: leave it out of "
                            "--keep-columns or flatten it in the archive")
        return {**inner, "mode": "REPEATED"}
    if pa.types.is_map(kind):
        pair = pa.struct([pa.field("key", kind.key_type, nullable=False), pa.field("value", kind.item_type)])
        return {**field(pa.field(f.name, pair), where), "mode": "REPEATED"}
    if pa.types.is_struct(kind):
        return {"name": f.name, "type": "RECORD", "mode": "NULLABLE",
                "fields": [field(kind.field(i), f"{name}.") for i in range(kind.num_fields)]}
    return {"name": f.name, "type": _scalar(kind, name), "mode": "NULLABLE"}


def _scalar(kind: pa.DataType, name: str) -> str:
    if pa.types.is_boolean(kind):
        return "BOOL"
    if pa.types.is_uint64(kind):
        raise UserError(f"column {name!r} is uint64, which BigQuery's signed INT64 cannot hold: cast it to int64 in "
                        "the archive, or leave it out of --keep-columns")
    if pa.types.is_integer(kind) or pa.types.is_duration(kind):  # a duration is an int64 count in Parquet
        return "INT64"
    if pa.types.is_floating(kind):
        return "FLOAT64"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind) \
            or getattr(pa.types, "is_string_view", lambda _: False)(kind):
        return "STRING"  # an all-null kept column: STRING, the type a later night's values most likely have
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        return "BYTES"
    if pa.types.is_date(kind):
        return "DATE"
    if pa.types.is_timestamp(kind):
        return "TIMESTAMP" if kind.tz is not None else "DATETIME"  # a naive timestamp is a civil date and time
    if pa.types.is_time(kind):
        return "TIME"
    if pa.types.is_decimal(kind):
        if kind.precision - kind.scale <= 29 and kind.scale <= 9:
            return "NUMERIC"
        if kind.precision - kind.scale <= 38 and kind.scale <= 38:
            return "BIGNUMERIC"
    raise UserError(f"column {name!r} is {kind}, which BigQuery cannot hold: leave it out of --keep-columns")


def of_schema(schema: pa.Schema) -> list[dict]:
    return [field(f) for f in schema]


def predictions(passthrough: Sequence[pa.Field] = ()) -> list[dict]:
    """The nightly predictions table: every record field (`explanation` included: empty unless --explain),
    the kept columns with their types, then the run id and the night's --output."""
    docs = {f.name: f.doc for f in prediction.FIELDS}
    return _with_run_columns(_described(of_schema(prediction.schema(passthrough, explain=True)), docs))


DEAD_LETTER_DOCS = {
    "id": "The input row's id, when it had one.", "reason": "Why the row was not labelled (docs/output-records.md).",
    "detail": "The reason in words.", "payload": "The original row (only with --bigquery-dead-letter-text).",
    "payload_sha256": "SHA-256 of the original row, in hex: which row, without its text.",
}


def dead_letters(with_text: bool = False) -> list[dict]:
    """The dead letters' table: the payload's hash, and the payload itself only when asked for (it carries the
    complaint's text, which the warehouse should not hold by default)."""
    fields = of_schema(DEAD_LETTER_SCHEMA)
    if not with_text:
        fields = [f if f["name"] != "payload" else {"name": "payload_sha256", "type": "STRING", "mode": "REQUIRED"}
                  for f in fields]
    return _with_run_columns(_described(fields, DEAD_LETTER_DOCS))


def _described(fields: list[dict], docs: dict[str, str]) -> list[dict]:
    return [{**f, "description": docs[f["name"]]} if docs.get(f["name"]) else f for f in fields]


def _with_run_columns(fields: list[dict]) -> list[dict]:
    taken = {f["name"].lower() for f in fields}
    for name in (RUN_ID, OUTPUT, NIGHT, LABELLED_AT):
        if name in taken:
            raise UserError(f"kept column {name!r} has the name of a column the BigQuery table adds to each row "
                            "(run_id, output, night, labelled_at): rename it, or leave it out of --keep-columns")
    return [*fields, {"name": RUN_ID, "type": "STRING", "mode": "REQUIRED", "description": "The run that wrote it."},
            {"name": OUTPUT, "type": "STRING", "mode": "REQUIRED",
             "description": "The night's --output, normalised (scheme, absolute, no trailing slash)."},
            *(dict(f) for f in ADDED)]


def missing_added(found: list[dict]) -> list[dict]:
    """The columns of `ADDED` a table made before them lacks (what its schema update adds)."""
    names = {f["name"].lower() for f in found}
    return [dict(f) for f in ADDED if f["name"] not in names]


def live_messages() -> list[dict]:
    """The live job's output messages as a table (a Pub/Sub BigQuery subscription with `use_table_schema`): the
    record's fields, the input `message_id` and `omitted_fields`; the input's other JSON fields are dropped
    (`drop_unknown_fields`), since they differ from message to message."""
    own = of_schema(prediction.schema((), explain=True))
    return [*own, *(field(pa.field(name, kind)) for name, kind in LIVE_EXTRA)]


def to_api(fields: list[dict]):
    """As the client library's SchemaFields."""
    from google.cloud.bigquery import SchemaField

    return [SchemaField.from_api_repr(f) for f in fields]


def of_table(schema) -> list[dict]:
    """A table's schema (the client's SchemaFields) in the same JSON form, for comparison."""
    return [_normal(f.to_api_repr()) for f in schema]


def _normal(f: dict) -> dict:
    kind = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL", "STRUCT": "RECORD"}.get(f["type"], f["type"])
    out = {"name": f["name"], "type": kind, "mode": f.get("mode") or "NULLABLE"}
    if f.get("description"):
        out["description"] = f["description"]
    if f.get("fields"):
        out["fields"] = [_normal(x) for x in f["fields"]]
    return out


def difference(found: list[dict], wanted: list[dict], where: str = "") -> str | None:
    """The first field in which a table's schema differs from the one this night writes, said in words."""
    found_by, wanted_by = {f["name"].lower(): f for f in found}, {f["name"].lower(): f for f in wanted}
    for key, want in wanted_by.items():
        name = where + want["name"]
        have = found_by.get(key)
        if have is None:
            return f"it has no column {name!r} ({_kind(want)})"
        if (have["type"], have["mode"]) != (want["type"], want["mode"]):
            return f"column {name!r} is {_kind(have)} there but this night writes {_kind(want)}"
        if want["type"] == "RECORD":
            inner = difference(have.get("fields", []), want.get("fields", []), name + ".")
            if inner:
                return inner
    extra = [found_by[k]["name"] for k in found_by if k not in wanted_by]
    if extra:
        return f"it has column {where + extra[0]!r}, which this night does not write"
    return None


def _kind(f: dict) -> str:
    return f"{f['mode']} {f['type']}" if f["mode"] != "NULLABLE" else f["type"]
