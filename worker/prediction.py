"""The prediction record: every field defined once, here.

Everything that shapes a prediction reads `FIELDS` when it runs: the worker builds
its records from it (`records_of`), every Parquet sink takes its Arrow schema from it
(`schema`), the Pub/Sub sink its JSON keys and attributes (`attributes`), and
`complaints predict` and the web page what they show (`shown`). A field added to
`FIELDS` therefore reaches all of them, or none (tests/test_house.py adds one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from model.predict import top_k
from worker.defaults import MAX_TEXT_CHARS


@dataclass(frozen=True)
class BatchOutputs:
    """What the model said about one batch, as arrays: the input of every field's column."""

    labels: np.ndarray  # class names, indexed by label_id
    top_ids: np.ndarray  # [rows, k] class indices, best first
    top_probabilities: np.ndarray  # [rows, k]
    tokens: np.ndarray  # [rows] words after standardisation
    oov_tokens: np.ndarray  # [rows] of which outside the model's word vocabulary
    model_version: str
    review_threshold: float
    truncated: np.ndarray  # [rows] the text was longer than the model reads (records.MAX_TEXT_CHARS)
    explanations: list | None = None  # [rows] of [{word, contribution}] or None (model.explain): --explain

    @classmethod
    def of(cls, probabilities: np.ndarray, labels: np.ndarray, k: int, review_threshold: float,
           tokens: np.ndarray, oov_tokens: np.ndarray, model_version: str, texts: Sequence[str]) -> BatchOutputs:
        ids, values = top_k(probabilities, k)
        truncated = np.fromiter((len(t) > MAX_TEXT_CHARS for t in texts), bool, len(texts))
        return cls(labels, ids, values, tokens, oov_tokens, model_version, review_threshold, truncated)

    def __len__(self) -> int:
        return len(self.top_ids)

    @property
    def needs_review(self) -> np.ndarray:
        """[rows] the top probability is below the review threshold (the field, and which rows `--explain`
        explains by default)."""
        return self.top_probabilities[:, 0] < self.review_threshold


@dataclass(frozen=True)
class Field:
    """One field of the prediction record.

    `column` computes the field for a whole batch (one call per batch, not per row);
    None means the field comes from the input record (the id). `attribute` also sends
    it as a Pub/Sub attribute (for subscription filters), formatted as a string.
    `shown` says whether `predict` and the page display it. `arrow`, where given,
    builds the column as an Arrow array directly (the nightly job's tables), for a
    field whose Python values would cost a conversion per row. An `optional` field is
    in the record only when asked for (`schema(..., explain=True)`), and may be null.
    """

    name: str
    type: pa.DataType
    doc: str
    column: Callable[[BatchOutputs], Sequence] | None = None
    attribute: Callable[[Any], str] | None = None
    shown: bool = True
    arrow: Callable[[BatchOutputs], pa.Array] | None = None
    optional: bool = False


TOP_K_TYPE = pa.list_(pa.struct([("label", pa.string()), ("confidence", pa.float32())]))
EXPLANATION_TYPE = pa.list_(pa.struct([("word", pa.string()), ("contribution", pa.float32())]))


def _top_k_array(o: BatchOutputs) -> pa.Array:
    rows, k = o.top_ids.shape
    pairs = pa.StructArray.from_arrays(
        [pa.array(o.labels[o.top_ids.ravel()], pa.string()), pa.array(o.top_probabilities.ravel(), pa.float32())],
        fields=list(TOP_K_TYPE.value_type))
    return pa.ListArray.from_arrays(pa.array(np.arange(0, rows * k + 1, k, dtype=np.int32)), pairs, type=TOP_K_TYPE)


def _top_k(o: BatchOutputs) -> list:
    """The same lists as Python values, for records (one definition of the field's contents)."""
    return _top_k_array(o).to_pylist()


FIELDS: list[Field] = [
    Field("id", pa.string(), "the input record's id", shown=False),
    Field("label", pa.string(), "the most likely category",
          lambda o: o.labels[o.top_ids[:, 0]].tolist(), attribute=str),
    Field("label_id", pa.int32(), "its index in the model's label list",
          lambda o: o.top_ids[:, 0].tolist(), shown=False),
    Field("confidence", pa.float32(), "its probability (calibrated when the model is)",
          lambda o: o.top_probabilities[:, 0].tolist()),
    Field("top_k", TOP_K_TYPE, "the k most likely categories with their probabilities, best first", _top_k,
          arrow=_top_k_array),
    Field("needs_review", pa.bool_(), "confidence below the review threshold",
          lambda o: o.needs_review.tolist(),
          attribute=lambda v: "true" if v else "false"),
    Field("model_version", pa.string(), "the model that labelled it",
          lambda o: [o.model_version] * len(o), attribute=str),
    Field("tokens", pa.int32(), "words after standardisation (the drift check's length)",
          lambda o: o.tokens.tolist(), shown=False),
    Field("oov_tokens", pa.int32(), "of which outside the model's word vocabulary",
          lambda o: o.oov_tokens.tolist(), shown=False),
    Field("text_truncated", pa.bool_(), f"the text was longer than {MAX_TEXT_CHARS:,} characters and was "
          "labelled on its start", lambda o: o.truncated.tolist(), shown=False),
    Field("explanation", EXPLANATION_TYPE, "with --explain K: the K words that pushed most towards the label, "
          "with the probability of the label each one adds (null for a row not explained)",
          lambda o: o.explanations if o.explanations is not None else [None] * len(o), optional=True),
]


def _own() -> dict[str, Field]:
    """Read at each call: a field added to `FIELDS` (tests/test_house.py) reaches every table."""
    return {f.name: f for f in FIELDS}


def names(explain: bool = False) -> tuple[str, ...]:
    return tuple(f.name for f in FIELDS if explain or not f.optional)


def _has(outputs: BatchOutputs, field: Field) -> bool:
    return field.name == "explanation" and outputs.explanations is not None


def records_of(outputs: BatchOutputs) -> list[dict]:
    """One record per row (without the id, which the input record supplies); an optional field only where the
    batch computed it."""
    computed = [f for f in FIELDS if f.column is not None and (not f.optional or _has(outputs, f))]
    columns = [f.column(outputs) for f in computed]
    keys = [f.name for f in computed]
    return [dict(zip(keys, row, strict=True)) for row in zip(*columns, strict=True)]


def table_of(outputs: BatchOutputs, ids: Sequence[str], passthrough: pa.Table, schema: pa.Schema) -> pa.Table:
    """The prediction records of a batch as one Arrow table of `schema`, column by column.

    `passthrough` holds the batch's input columns, row for row (`kept_of`).
    """
    kept, own = kept_of(passthrough, schema, len(outputs)), _own()
    columns = []
    for target in schema:
        field = own.get(target.name)
        if field is None:
            columns.append(kept.column(target.name))
        elif field.column is None:
            columns.append(pa.array(ids, target.type))
        elif field.arrow is not None:
            columns.append(field.arrow(outputs).cast(target.type))
        else:
            columns.append(pa.array(field.column(outputs), target.type))
    return pa.Table.from_arrays(columns, schema=schema)


def kept_of(table: pa.Table, schema: pa.Schema, rows: int | None = None) -> pa.Table:
    """The passthrough columns `schema` names, taken from `table` and cast to the schema's types.

    A column the table lacks is null, and a dictionary-encoded or all-null one takes
    the schema's type, so tables from files that typed a kept column differently can
    share a batch and a file.
    """
    rows, own = table.num_rows if rows is None else rows, _own()
    return pa.table({f.name: table.column(f.name).cast(f.type) if f.name in table.column_names
                     else pa.nulls(rows, f.type) for f in schema if f.name not in own})


def schema(passthrough: Sequence[pa.Field] = (), explain: bool = False) -> pa.Schema:
    """The Arrow schema of a prediction file, with the passthrough columns (typed as in the input) appended;
    `explain`: with the explanation field (which the core then fills)."""
    own = [pa.field(f.name, f.type, nullable=f.optional) for f in FIELDS if explain or not f.optional]
    taken = {f.name for f in own}
    return pa.schema(own + [f.with_nullable(True) for f in passthrough if f.name not in taken])


def attributes(record: dict) -> dict[str, str]:
    """The Pub/Sub attributes of a prediction."""
    return {f.name: f.attribute(record[f.name]) for f in FIELDS if f.attribute is not None}


def shown(record: dict) -> dict[str, Any]:
    """The fields `predict` and the page display, in the definition's order."""
    return {f.name: record[f.name] for f in FIELDS if f.shown and f.name in record and record[f.name] is not None}
