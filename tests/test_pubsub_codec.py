"""Pub/Sub messages in and out: every message Pub/Sub accepts decodes, and every output fits in a message."""

from __future__ import annotations

import json

import pytest
from apache_beam.io.gcp.pubsub import PubsubMessage

from pipelines.plumbing import codec as pubsub
from pipelines.plumbing.lease import MAX_REQUEST_BYTES, publish_requests
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


def _strict(data: bytes):
    def refuse(constant):
        raise AssertionError(f"{constant} in an output: strict JSON parsers refuse it")
    return json.loads(data, parse_constant=refuse)


@pytest.mark.parametrize("data", [
    '\ufeff{"id": "bom1", "text": "kargo gelmedi"}'.encode(),
    '\ufeff  {"id": "bom1", "text": "kargo gelmedi"}\n'.encode(),
])
def test_a_byte_order_mark_before_json_is_read_as_json(data):
    record, letter = pubsub.decode(PubsubMessage(data, {}, message_id="m1"))
    assert letter is None and record["id"] == "bom1" and record["text"] == "kargo gelmedi"


@pytest.mark.parametrize(("data", "detail"), [
    (b'{"id": "n", "text": "t", "score": NaN}', "NaN is not a JSON number"),
    (b'{"id": "n", "text": "t", "score": Infinity}', "Infinity is not a JSON number"),
    (b'{"id": "n", "text": "t", "score": [-Infinity]}', "-Infinity is not a JSON number"),
    (b'{"id": "n", "text": "t", "n": ' + b"[" * 64 + b"]" * 64 + b"}", "deeper than 64"),
    (b'{"id": "n", "text": "t", "n": ' + b'{"a":' * 70 + b"1" + b"}" * 70 + b"}", "deeper than 64"),
])
def test_what_json_does_not_allow_is_a_malformed_json_dead_letter(data, detail):
    letter = _letter_for(data)
    assert letter["reason"] == records.MALFORMED_JSON and detail in letter["detail"]
    _strict(pubsub.encode_dead_letter(letter).data)


def test_json_at_the_depth_limit_is_labelled_and_encoded_strictly():
    data = b'{"id": "n", "text": "t", "n": ' + b"[" * 63 + b"]" * 63 + b"}"
    record, letter = pubsub.decode(PubsubMessage(data, {}, message_id="m1"))
    assert letter is None
    body = _strict(pubsub.encode_prediction(_prediction(n=record["n"])).data)
    assert body["n"] == record["n"]


@pytest.mark.parametrize("text", ["[acil] kargo gelmedi", '"kargo gelmedi"', "42", "[1, 2]", "null"])
def test_text_that_does_not_start_with_a_brace_is_plain_text(text):
    record, letter = pubsub.decode(PubsubMessage(text.encode(), {"id": "p"}, message_id="m1"))
    assert letter is None and record == {**record, "id": "p", "text": text}


def test_outputs_never_carry_a_bare_nan():
    for value in (float("nan"), float("inf"), [float("-inf"), {"x": float("nan")}]):
        body = _strict(pubsub.encode_prediction(_prediction(score=value)).data)
        assert body["score"] in (None, [None, {"x": None}])
        letter = {"id": "d", "reason": records.EMPTY_TEXT, "detail": "x", "payload": "p", "extra": value}
        _strict(pubsub.encode_dead_letter(letter).data)


def test_shrinking_a_prediction_of_many_fields_serialises_the_body_a_few_times(monkeypatch):
    """100,000 fields of 100 bytes: each field is measured once, the whole body serialised two or three times."""
    fields = {f"f{i:06d}": "x" * 100 for i in range(100_000)}
    real, bodies = pubsub.strict_json, []

    def counting(body):
        if len(body) > 10:
            bodies.append(len(body))
        return real(body)

    monkeypatch.setattr(pubsub, "strict_json", counting)
    message = pubsub.encode_prediction(_prediction(**fields))
    _fits(message)
    body = _strict(message.data)
    assert len(body["omitted_fields"]) + len([k for k in body if k.startswith("f")]) == 100_000
    assert len(bodies) <= 4, bodies


def test_no_exception_while_decoding_or_validating_stops_the_job(monkeypatch):
    """Whatever raises inside decoding or validation, the message gets a dead letter with the reason."""
    from worker.transform import DEAD_LETTERS, ValidateRecords

    def explode(*args, **kwargs):
        raise RecursionError("maximum recursion depth exceeded")

    message = PubsubMessage(b'{"id": "x", "text": "kargo"}', {"id": "x"}, message_id="m9")
    with monkeypatch.context() as patch:
        patch.setattr(pubsub, "decode", explode)
        [letter] = list(pubsub.DecodeMessages().process(("ack-9", message)))
    assert letter.tag == DEAD_LETTERS and letter.value["reason"] == records.MALFORMED_RECORD
    assert "RecursionError" in letter.value["detail"] and letter.value["source"]["ack_id"] == "ack-9"
    record, _ = pubsub.decode(message, "ack-9")
    with monkeypatch.context() as patch:
        patch.setattr(records, "checked_text", explode)
        [letter] = list(ValidateRecords().process(record))
    assert letter.tag == DEAD_LETTERS and letter.value["reason"] == records.MALFORMED_RECORD
    assert letter.value["id"] == "x" and letter.value["source"]["ack_id"] == "ack-9"


def test_a_record_nested_past_the_recursion_limit_still_gets_its_dead_letter():
    deep: dict = {}
    inner = deep
    for _ in range(5000):
        inner["n"] = {}
        inner = inner["n"]
    letter = records.validate({"id": "deep", "meta": deep})
    assert letter["reason"] == records.MISSING_TEXT and letter["payload"]
