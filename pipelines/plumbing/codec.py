"""Pub/Sub messages ↔ worker records, within every limit Pub/Sub sets.

In: UTF-8 JSON `{"id": …, "text": …, …}`, or plain text whose id comes from the `id`
attribute or else the Pub/Sub message id.

What is JSON, strictly: a message whose text (after a leading byte-order mark, which
Windows tools write, and whitespace) starts with `{`. It must be one JSON object by
RFC 8259: `NaN`, `Infinity` and `-Infinity` are not JSON numbers, so such a message is
a `malformed_json` dead letter, as is one nested deeper than `MAX_JSON_DEPTH` levels.
Anything else (`[urgent] …`, `"quoted"`, `42`) is plain text. Outputs are strict
JSON too: never a bare `NaN`. Out: the prediction as JSON, with the
attributes `label`, `needs_review` and `model_version` for subscription filters, and
the input `message_id` inside, since Pub/Sub delivers at least once.

Pub/Sub accepts any message up to 10 MB, so an output must fit in one too, whatever
came in: a dead letter carries as much of the original payload as fits and says when
it was cut (`payload_truncated`); a prediction leaves out its largest passthrough
fields if it would not fit (`omitted_fields`). Attributes keep Pub/Sub's limits
(100 per message, keys of 256 and values of 1,024 bytes).
"""

from __future__ import annotations

import json
from typing import Any

import apache_beam as beam
from apache_beam.io.gcp.pubsub import PubsubMessage

from worker import prediction, record_columns, records
from worker.transform import DEAD_LETTERS, count_dead_letter

# A publish request may hold 10,000,000 bytes (topic name, attributes and framing
# included); attributes take at most 100 × (256 + 1,024) bytes.
MAX_DATA_BYTES = 9_800_000
MAX_ATTRIBUTES = 100
MAX_KEY_BYTES = 256
MAX_VALUE_BYTES = 1024
MAX_JSON_DEPTH = 64  # nesting levels of an input message: deeper is malformed_json (outputs re-encode it)
BOM = "\ufeff"


class _NotJson(ValueError):
    """What Python's parser accepts and JSON does not."""


def _refuse_constant(name: str):
    raise _NotJson(f"{name} is not a JSON number")


def _depth_over(value: Any, limit: int) -> bool:
    """Whether `value` nests deeper than `limit` containers (iteratively: no recursion to run out of)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def parse_object(text: str) -> dict | str:
    """The JSON object in `text`, or why it is not one (the detail of a malformed_json dead letter)."""
    try:
        record = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        return f"invalid JSON: {exc.msg} at {exc.pos}"
    except (ValueError, RecursionError) as exc:  # non-finite numbers, over-long integers, deep nesting
        return f"invalid JSON: {type(exc).__name__.lstrip('_')}: {str(exc)[:200]}"
    if not isinstance(record, dict):
        return f"the JSON is {type(record).__name__}, not an object"
    if _depth_over(record, MAX_JSON_DEPTH):
        return f"the JSON nests deeper than {MAX_JSON_DEPTH} levels"
    return record


def _source(message: PubsubMessage, ack_id: str | None) -> dict:
    return {
        "data": (message.data or b"").decode("utf-8", errors="backslashreplace"),
        "attributes": dict(message.attributes or {}),
        "message_id": message.message_id,
        "ack_id": ack_id,
    }


def decode(message: PubsubMessage, ack_id: str | None = None) -> tuple[dict | None, dict | None]:
    """(record for the worker, None), or (None, dead letter with `source`) if undecodable.

    `ack_id` (the local read's) rides along in the record's source, so the sink that
    publishes the record's output can acknowledge the message.
    """
    source = _source(message, ack_id)
    attributes = source["attributes"]
    fallback_id = attributes.get("id") or message.message_id
    try:
        text = (message.data or b"").decode("utf-8")
    except UnicodeDecodeError as exc:
        letter = records.dead_letter(fallback_id, records.INVALID_UTF8,
                                     f"message data is not UTF-8: {exc.reason} at byte {exc.start}", source["data"])
        return None, {**letter, "source": source}
    text = text.removeprefix(BOM)
    if text.lstrip().startswith("{"):
        record = parse_object(text)
        if isinstance(record, str):
            letter = records.dead_letter(fallback_id, records.MALFORMED_JSON, record, text)
            return None, {**letter, "source": source}
        if _unpaired_surrogate(text, record):
            letter = records.dead_letter(fallback_id, records.INVALID_UTF8, "the JSON escapes an unpaired surrogate "
                                         "(\\udXXX), which is not text", text)
            return None, {**letter, "source": source}
    else:
        record = {records.ID: fallback_id, records.TEXT: text}
    record["message_id"] = message.message_id
    record[records.SOURCE] = source
    return record, None


def undecodable(message: PubsubMessage, ack_id: str | None, exc: BaseException) -> dict:
    """The dead letter of a message that decoding failed on in a way nobody foresaw."""
    source = _source(message, ack_id)
    detail = f"the message could not be decoded: {type(exc).__name__}: {str(exc)[:200]}"
    letter = records.dead_letter(source["attributes"].get("id") or message.message_id, records.MALFORMED_RECORD,
                                 detail, source["data"])
    return {**letter, "source": source}


def _unpaired_surrogate(text: str, record: dict) -> bool:
    """JSON may escape half a surrogate pair; such a string is not Unicode, and Beam's coders refuse it."""
    if "\\ud" not in text and "\\uD" not in text:
        return False
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class DecodeMessages(beam.DoFn):
    """Messages (or the local read's (ack id, message) pairs) → records; undecodable ones → `dead_letters`."""

    def process(self, element):
        ack_id, message = element if isinstance(element, tuple) else (None, element)
        try:
            record, letter = decode(message, ack_id)
        except Exception as exc:  # noqa: BLE001 (no message may stop the job: it gets an answer instead)
            record, letter = None, undecodable(message, ack_id, exc)
        if letter is not None:
            count_dead_letter(letter)
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, letter)
        else:
            yield record


def encode_prediction(record: dict) -> PubsubMessage:
    """The prediction as JSON (every field but `_source`), with the attributes its definition names.

    If the passthrough fields cannot be encoded at all, the prediction goes without them
    (`omitted_fields` names them): the answer matters more than the extras.
    """
    body = {k: v for k, v in record.items() if k != records.SOURCE}
    try:
        data = strict_json(body)
        if len(data) > MAX_DATA_BYTES:
            data = _shrink_prediction(body)
    except (ValueError, TypeError, RecursionError):
        kept = {*prediction.names(explain=True), "message_id"}
        data = strict_json({**{k: v for k, v in body.items() if k in kept},
                      "omitted_fields": sorted(k for k in body if k not in kept)})
    return PubsubMessage(data, _fit_attributes(prediction.attributes(record)))


def encode_dead_letter(letter: dict) -> PubsubMessage:
    """The reason, detail and original payload as JSON; the original attributes kept."""
    source = letter.get("source") or {}
    original = source.get("attributes", {})
    body = {
        "id": letter.get("id"),
        "reason": letter["reason"],
        "detail": letter["detail"],
        "payload": source.get("data", letter.get("payload")),
        "attributes": original,
        "message_id": source.get("message_id"),
    }
    try:
        data = strict_json(body)
        if len(data) > MAX_DATA_BYTES:
            data = _shrink_dead_letter(body)
    except (ValueError, TypeError, RecursionError):
        data = minimal_dead_letter(letter)
    return PubsubMessage(data, _fit_attributes({"dead_letter_reason": letter["reason"]}, original))


def minimal_dead_letter(letter: dict) -> bytes:
    """Id, reason, detail and the input's message id alone: what is published when the full letter cannot be
    (encoded, or accepted by the topic)."""
    message_id = letter.get("message_id") or (letter.get("source") or {}).get("message_id")
    def short(value) -> str:
        text = str(value)
        return text if len(text) <= 4096 else _cut(text, 4096)

    return strict_json({"id": short(letter["id"]) if letter.get("id") is not None else None, "reason": letter["reason"],
                  "detail": short(letter.get("detail", "")), "message_id": message_id})


def strict_json(body: dict) -> bytes:
    """Strict JSON (`record_columns.strict_json`): never a bare `NaN`; a lone surrogate as its \\uXXXX escape."""
    return record_columns.strict_json(body).encode("utf-8")


def _shrink_prediction(body: dict) -> bytes:
    """Leave out the largest passthrough fields until the prediction fits; then cut an enormous id.

    Each field is serialised once to learn its size, and the whole body once per
    check, not once per field left out: a 10 MB message of 100,000 small fields costs
    two or three serialisations, not 100,000.
    """
    kept = {*prediction.names(explain=True), "message_id"}  # never left out to fit
    sizes = {k: len(strict_json({k: body[k]})) for k in body if k not in kept}
    order = sorted(sizes, key=lambda k: -sizes[k])  # largest first
    total, omitted, limit = len(strict_json(body)), [], int(MAX_DATA_BYTES * 0.98)
    for key in order:
        omitted.append(key if len(key) <= 256 else _cut(key, 256))
        body.pop(key)
        total += len(omitted[-1]) + 4 - sizes[key]  # its entry goes; its name joins omitted_fields
        if total <= limit:
            body["omitted_fields"] = omitted
            data = strict_json(body)
            if len(data) <= MAX_DATA_BYTES:
                return data
            total = len(data)
    body["omitted_fields"] = omitted
    body["id"], body["id_truncated"] = _cut(str(body["id"]), 4096), True
    return strict_json(body)


def _shrink_dead_letter(body: dict) -> bytes:
    """Keep as much of the payload (and of an enormous id) as fits, and say so."""
    payload, record_id = str(body["payload"] or ""), body["id"]
    body["payload_truncated"], body["payload_chars"] = True, len(payload)
    if record_id is not None and len(strict_json({"id": record_id})) > MAX_DATA_BYTES // 4:
        body["id"], body["id_truncated"] = _cut(str(record_id), 4096), True
    keep = len(payload)
    while True:  # JSON escaping may grow a character up to six bytes: shrink in proportion until it fits
        body["payload"] = payload[:keep]
        data = strict_json(body)
        if len(data) <= MAX_DATA_BYTES:
            return data
        keep = int(keep * MAX_DATA_BYTES / len(data) * 0.98)


def _cut(text: str, limit: int) -> str:
    return text[:limit] + "…[truncated]"


def _cut_bytes(text: str, limit: int) -> str:
    encoded = text.encode("utf-8", errors="backslashreplace")
    return text if len(encoded) <= limit else encoded[:limit].decode("utf-8", errors="ignore")


def _fit_attributes(required: dict[str, str], optional: dict[str, Any] | None = None) -> dict[str, str]:
    """Required attributes first, then as many of `optional` as Pub/Sub's limits allow."""
    fitted = {_cut_bytes(k, MAX_KEY_BYTES): _cut_bytes(str(v), MAX_VALUE_BYTES) for k, v in required.items()}
    for key, value in sorted((optional or {}).items()):
        if len(fitted) >= MAX_ATTRIBUTES:
            break
        fitted.setdefault(_cut_bytes(key, MAX_KEY_BYTES), _cut_bytes(str(value), MAX_VALUE_BYTES))
    return fitted
