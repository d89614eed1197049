"""Pub/Sub messages in and out: every message Pub/Sub accepts decodes, and every output fits in a message."""

from __future__ import annotations

import json

import pytest
from apache_beam.io.gcp.pubsub import PubsubMessage

from pipelines import pubsub
from pipelines.pubsub_lease import MAX_REQUEST_BYTES, publish_requests
from worker import records

TEN_MB = 10_000_000


def _fits(message: PubsubMessage) -> None:
    assert len(message.data) <= pubsub.MAX_DATA_BYTES
    assert len(message.attributes) <= pubsub.MAX_ATTRIBUTES
    for key, value in message.attributes.items():
        assert len(key.encode()) <= pubsub.MAX_KEY_BYTES and len(value.encode()) <= pubsub.MAX_VALUE_BYTES
    size = len(message.data) + sum(len(k.encode()) + len(v.encode()) for k, v in message.attributes.items())
    assert size < TEN_MB


def _letter_for(data: bytes, attributes: dict | None = None) -> dict:
    record, letter = pubsub.decode(PubsubMessage(data, attributes or {}, message_id="m1"), ack_id="a1")
    assert record is None
    return letter


def _prediction(**extra) -> dict:
    return {"id": "p1", "label": "Kargo", "label_id": 3, "confidence": 0.9, "needs_review": False,
            "top_k": [{"label": "Kargo", "confidence": 0.9}], "model_version": "v1", "message_id": "m1",
            records.SOURCE: {"ack_id": "a1", "data": "x" * 100}, **extra}


@pytest.mark.parametrize("escaped", ['"', "\\", "\x01", "\n"])
def test_a_malformed_message_near_ten_mb_gives_a_dead_letter_that_fits(escaped):
    """Escaping can make the payload up to six times longer than the message: it is cut, and says so."""
    data = ('{"id": "big", "text": "' + escaped * (9_500_000 // len(escaped.encode()))).encode()
    letter = _letter_for(data)
    assert letter["reason"] == records.MALFORMED_JSON and letter["source"]["ack_id"] == "a1"
    message = pubsub.encode_dead_letter(letter)
    _fits(message)
    body = json.loads(message.data)
    assert body["payload_truncated"] is True and body["payload_chars"] == len(data.decode())
    assert data.decode().startswith(body["payload"]) and len(body["payload"]) > 1_000_000
    assert body["reason"] == records.MALFORMED_JSON and body["message_id"] == "m1"


@pytest.mark.parametrize("data", [b'{"id": 1, "text": ', ('{"text": "' + "ç" * 4_700_000).encode()])
def test_a_dead_letter_that_fits_keeps_its_whole_payload(data):
    message = pubsub.encode_dead_letter(_letter_for(data))
    _fits(message)
    body = json.loads(message.data)
    assert body["payload"] == data.decode() and "payload_truncated" not in body


@pytest.mark.parametrize("data", [
    b"{" + b'"a":' * 0 + b"[" * 200_000,  # nested deeper than Python's recursion limit
    b'{"id": "n", "text": "t", "n": ' + b"9" * 5000 + b"}",  # an integer over Python's digit limit
    b"\xff\xfe" * 4_000_000,  # 8 MB of bytes that are not UTF-8
])
def test_messages_json_cannot_hold_become_dead_letters(data):
    letter = _letter_for(data)
    assert letter["reason"] in (records.MALFORMED_JSON, records.INVALID_UTF8)
    _fits(pubsub.encode_dead_letter(letter))


def test_dead_letter_attributes_stay_within_pubsub_limits():
    original = {f"k{i:03d}": "v" * 1024 for i in range(100)}  # the most Pub/Sub allows on the input
    message = pubsub.encode_dead_letter(_letter_for(b"{nope", original))
    _fits(message)
    assert message.attributes["dead_letter_reason"] == records.MALFORMED_JSON
    assert json.loads(message.data)["attributes"] == original  # all of them, in the body


def test_a_prediction_too_large_for_a_message_leaves_out_its_largest_passthrough_fields():
    message = pubsub.encode_prediction(_prediction(notes="n" * 9_900_000, channel="web"))
    _fits(message)
    body = json.loads(message.data)
    assert body["omitted_fields"] == ["notes"] and body["channel"] == "web" and body["label"] == "Kargo"
    assert records.SOURCE not in body


@pytest.mark.parametrize("data", [
    b'{"id": "s", "text": "kargo", "note": "\\ud800"}',
    b'{"id": "s", "text": "kargo \\udc00"}',
    b'{"id": "s", "text": "k", "x": ["\\uD83D"]}',
])
def test_json_escaping_half_a_surrogate_pair_is_invalid_utf8(data):
    assert _letter_for(data)["reason"] == records.INVALID_UTF8


def test_json_escaping_whole_surrogate_pairs_decodes():
    record, letter = pubsub.decode(PubsubMessage(b'{"id": "e", "text": "\\ud83d\\ude00 kargo"}', {}, "m3"))
    assert letter is None and record["text"] == "\U0001F600 kargo"


def test_an_output_with_a_lone_surrogate_is_still_valid_json():
    body = json.loads(pubsub.encode_prediction(_prediction(note="\ud800")).data)
    assert body["note"] == "\ud800"


def test_prediction_attributes_are_cut_to_pubsub_limits():
    message = pubsub.encode_prediction(_prediction(label="Ç" * 2000))
    _fits(message)
    assert message.attributes["label"] == "Ç" * 512


def test_publish_requests_cover_every_message_once_and_stay_under_the_limits():
    messages = [(b"x" * 9_700_000, {}), (b"y" * 10, {"a": "b"}), (b"z" * 6_000_000, {}), (b"w" * 5_000_000, {})]
    messages += [(b"", {})] * 2500
    slices = publish_requests(messages)
    assert [start for start, _ in slices] == [0] + [end for _, end in slices[:-1]] and slices[-1][1] == len(messages)
    for start, end in slices:
        assert sum(len(d) for d, _ in messages[start:end]) <= MAX_REQUEST_BYTES and end - start <= 1000
    assert (2, 3) in slices  # 6 MB and 5 MB do not share a request
