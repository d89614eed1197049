"""Pub/Sub messages ↔ worker records.

In: UTF-8 JSON `{"id": …, "text": …, …}`, or plain text whose id comes from the `id`
attribute or else the Pub/Sub message id. Out: the prediction as JSON, with the
attributes `label`, `needs_review` and `model_version` for subscription filters, and
the input `message_id` inside, since Pub/Sub delivers at least once.
"""

from __future__ import annotations

import json

import apache_beam as beam
from apache_beam.io.gcp.pubsub import PubsubMessage

from worker import records
from worker.transform import count_dead_letter

MALFORMED_JSON = "malformed_json"
DEAD_LETTERS = "dead_letters"


def _source(message: PubsubMessage) -> dict:
    return {
        "data": (message.data or b"").decode("utf-8", errors="backslashreplace"),
        "attributes": dict(message.attributes or {}),
        "message_id": message.message_id,
    }


def decode(message: PubsubMessage) -> tuple[dict | None, dict | None]:
    """(record for the worker, None), or (None, dead letter with `source`) if undecodable."""
    source = _source(message)
    attributes = source["attributes"]
    try:
        text = (message.data or b"").decode("utf-8")
    except UnicodeDecodeError as exc:
        letter = records.dead_letter(attributes.get("id") or message.message_id, records.INVALID_UTF8,
                                     f"message data is not UTF-8: {exc.reason} at byte {exc.start}", source["data"])
        return None, {**letter, "source": source}
    if text.lstrip().startswith("{"):
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            letter = records.dead_letter(attributes.get("id") or message.message_id, MALFORMED_JSON,
                                         f"invalid JSON: {exc.msg} at {exc.pos}", text)
            return None, {**letter, "source": source}
        if not isinstance(record, dict):  # defensive: "{" can only start an object
            return None, {**records.dead_letter(None, MALFORMED_JSON, "JSON is not an object", text), "source": source}
    else:
        record = {records.ID: attributes.get("id") or message.message_id, records.TEXT: text}
    record["message_id"] = message.message_id
    record[records.SOURCE] = source
    return record, None


class DecodeMessages(beam.DoFn):
    """Messages → records; undecodable messages → the `dead_letters` output."""

    def process(self, message: PubsubMessage):
        record, letter = decode(message)
        if letter is not None:
            count_dead_letter(letter)
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, letter)
        else:
            yield record


def encode_prediction(prediction: dict) -> PubsubMessage:
    data = json.dumps(prediction, ensure_ascii=False, default=str).encode("utf-8")
    return PubsubMessage(data, {
        "label": prediction["label"],
        "needs_review": "true" if prediction["needs_review"] else "false",
        "model_version": prediction["model_version"],
    })


def encode_dead_letter(letter: dict) -> PubsubMessage:
    """The reason, detail and original payload as JSON; the original attributes kept."""
    source = letter.get("source") or {}
    body = {
        "id": letter.get("id"),
        "reason": letter["reason"],
        "detail": letter["detail"],
        "payload": source.get("data", letter.get("payload")),
        "attributes": source.get("attributes", {}),
        "message_id": source.get("message_id"),
    }
    attributes = {**source.get("attributes", {}), "dead_letter_reason": letter["reason"]}
    return PubsubMessage(json.dumps(body, ensure_ascii=False).encode("utf-8"), attributes)
