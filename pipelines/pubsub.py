"""Pub/Sub messages ↔ worker records, within every limit Pub/Sub sets.

In: UTF-8 JSON `{"id": …, "text": …, …}`, or plain text whose id comes from the `id`
attribute or else the Pub/Sub message id. Out: the prediction as JSON, with the
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

from worker import prediction, records
from worker.transform import DEAD_LETTERS, count_dead_letter

# A publish request may hold 10,000,000 bytes (topic name, attributes and framing
# included); attributes take at most 100 × (256 + 1,024) bytes.
MAX_DATA_BYTES = 9_800_000
MAX_ATTRIBUTES = 100
MAX_KEY_BYTES = 256
MAX_VALUE_BYTES = 1024


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
    if text.lstrip().startswith("{"):
        try:
            record = json.loads(text)
        except (ValueError, RecursionError) as exc:  # also: over-long integers, nesting deeper than Python allows
            detail = f"invalid JSON: {exc.msg} at {exc.pos}" if isinstance(exc, json.JSONDecodeError) \
                else f"invalid JSON: {type(exc).__name__}: {str(exc)[:200]}"
            letter = records.dead_letter(fallback_id, records.MALFORMED_JSON, detail, text)
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
        record, letter = decode(message, ack_id)
        if letter is not None:
            count_dead_letter(letter)
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, letter)
        else:
            yield record


def ack_id_of(output: dict) -> str | None:
    """The local read's ack id of the message a prediction or dead letter came from."""
    source = output.get(records.SOURCE) or output.get("source") or {}
    return source.get("ack_id")


def encode_prediction(record: dict) -> PubsubMessage:
    """The prediction as JSON (every field but `_source`), with the attributes its definition names."""
    body = {k: v for k, v in record.items() if k != records.SOURCE}
    data = _json(body)
    if len(data) > MAX_DATA_BYTES:
        data = _shrink_prediction(body)
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
    data = _json(body)
    if len(data) > MAX_DATA_BYTES:
        data = _shrink_dead_letter(body)
    return PubsubMessage(data, _fit_attributes({"dead_letter_reason": letter["reason"]}, original))


def _json(body: dict) -> bytes:
    # A lone surrogate (legal in a JSON escape, not in UTF-8) comes out as its \uXXXX escape.
    return json.dumps(body, ensure_ascii=False, default=str).encode("utf-8", errors="backslashreplace")


def _shrink_prediction(body: dict) -> bytes:
    """Leave out the largest passthrough fields until the prediction fits; then cut an enormous id."""
    kept = {*prediction.names(), "message_id"}  # never left out to fit
    extra = sorted((k for k in body if k not in kept), key=lambda k: -len(_json({k: body[k]})))
    omitted = []
    for key in extra:
        omitted.append(key)
        body.pop(key)
        body["omitted_fields"] = omitted
        data = _json(body)
        if len(data) <= MAX_DATA_BYTES:
            return data
    body["id"], body["id_truncated"] = _cut(str(body["id"]), 4096), True
    return _json(body)


def _shrink_dead_letter(body: dict) -> bytes:
    """Keep as much of the payload (and of an enormous id) as fits, and say so."""
    payload, record_id = str(body["payload"] or ""), body["id"]
    body["payload_truncated"], body["payload_chars"] = True, len(payload)
    if record_id is not None and len(_json({"id": record_id})) > MAX_DATA_BYTES // 4:
        body["id"], body["id_truncated"] = _cut(str(record_id), 4096), True
    keep = len(payload)
    while True:  # JSON escaping may grow a character up to six bytes: shrink in proportion until it fits
        body["payload"] = payload[:keep]
        data = _json(body)
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
