"""The live job against Google's real Pub/Sub emulator, in a child process.

The emulator is started here on a free port and stopped at the end. If it cannot
start, the test fails with the emulator's own output: it never skips silently.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from model.sample import generate
from pipelines import pubsub_admin as admin

PROJECT = "complaints-test"


@pytest.fixture(scope="module")
def emulator_host():
    with admin.emulator(PROJECT) as host:
        previous = os.environ.get("PUBSUB_EMULATOR_HOST")
        os.environ["PUBSUB_EMULATOR_HOST"] = host
        yield host
        if previous is None:
            del os.environ["PUBSUB_EMULATOR_HOST"]
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = previous


def _messages(texts: list[str]) -> tuple[list, dict]:
    """Good and bad messages, and what each should become."""
    good = [(json.dumps({"id": f"j{i}", "text": t, "channel": "web"}).encode(), {"source": "app"})
            for i, t in enumerate(texts)]
    plain = [(texts[0].encode(), {"id": "plain-with-attribute"}), (texts[1].encode(), {})]
    bad = [
        (b'{"id": "x1", "text": ', {"id": "x1"}),  # truncated JSON
        (b"\xff\xfe\x00 not utf-8", {"id": "x2"}),
        (json.dumps({"id": "x3"}).encode(), {}),  # no text
        (json.dumps({"text": "kargo gelmedi"}).encode(), {"k": "v"}),  # no id
        (json.dumps({"id": "x5", "text": "?!... :)"}).encode(), {}),  # empty after standardisation
        (json.dumps({"id": "x6", "text": 12}).encode(), {}),  # not a string
    ]
    reasons = ["malformed_json", "invalid_utf8", "missing_text", "missing_id", "empty_text", "text_not_string"]
    return good + plain + bad, {"good": len(good) + len(plain), "reasons": reasons}


def test_stream_labels_every_message_or_dead_letters_it(emulator_host, model_dir, loaded, tmp_path):
    _, inp = admin.create_topic_with_subscription(PROJECT, "complaints-in", "complaints-in-sub")
    out_topic, out_sub = admin.create_topic_with_subscription(PROJECT, "labelled", "labelled-sub")
    dead_topic, dead_sub = admin.create_topic_with_subscription(PROJECT, "dead-letters", "dead-letters-sub")
    archive = tmp_path / "archive"
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines", "stream", "--model", model_dir, "--subscription", inp,
         "--output-topic", out_topic, "--dead-letter-topic", dead_topic, "--archive-output", str(archive),
         "--window-seconds", "2", "--max-batch-duration-secs", "1"],
        env={**os.environ, "PUBSUB_EMULATOR_HOST": emulator_host},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        texts = generate(40, seed=77, labelled=False)["text"].tolist()
        messages, expected = _messages(texts)
        ids = admin.publish(admin.topic_path(PROJECT, "complaints-in"), messages)
        outputs, letters = [], []
        deadline = time.monotonic() + 180
        while (len(outputs) < expected["good"] or len(letters) < len(expected["reasons"])) \
                and time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read().decode(errors="replace")
            outputs += admin.pull(out_sub)
            letters += admin.pull(dead_sub)
        time.sleep(3)  # anything extra (duplicates, strays) would show up now
        outputs += admin.pull(out_sub)
        letters += admin.pull(dead_sub)

        assert len(outputs) == expected["good"]
        assert sorted(json.loads(m.data)["reason"] for m in letters) == sorted(expected["reasons"])
        predictions = {json.loads(m.data)["id"]: (json.loads(m.data), dict(m.attributes)) for m in outputs}
        assert set(predictions) == {f"j{i}" for i in range(40)} | {"plain-with-attribute", ids[41]}

        probabilities = loaded.predict(texts)
        for i in range(len(texts)):
            record, attributes = predictions[f"j{i}"]
            assert record["label"] == loaded.labels[int(probabilities[i].argmax())]
            assert record["confidence"] == pytest.approx(float(probabilities[i].max()), abs=1e-5)
            assert record["channel"] == "web" and record["message_id"] == ids[i]
            assert "_source" not in record
            assert attributes == {"label": record["label"], "model_version": loaded.version,
                                  "needs_review": "true" if record["needs_review"] else "false"}
        assert predictions[ids[41]][0]["message_id"] == ids[41]  # plain text, no id attribute: the message id

        by_reason = {json.loads(m.data)["reason"]: (json.loads(m.data), dict(m.attributes)) for m in letters}
        letter, attributes = by_reason["malformed_json"]
        assert letter["payload"] == '{"id": "x1", "text": ' and letter["attributes"] == {"id": "x1"}
        assert attributes == {"id": "x1", "dead_letter_reason": "malformed_json"}
        assert by_reason["invalid_utf8"][0]["id"] == "x2"
        assert by_reason["missing_id"][1] == {"k": "v", "dead_letter_reason": "missing_id"}
        assert by_reason["empty_text"][0]["message_id"] == ids[46]

        # The archive: a window's file appears once the watermark passes it (the direct
        # runner's Pub/Sub pull blocks up to 30 s when idle, so this takes a while).
        deadline = time.monotonic() + 150
        archived = pd.DataFrame()
        while len(archived) < expected["good"] and time.monotonic() < deadline:
            files = glob.glob(str(archive / "predictions-*.parquet"))
            archived = pd.concat([pd.read_parquet(f) for f in files]) if files else pd.DataFrame()
            time.sleep(1)
        assert len(archived) == expected["good"]
        assert set(archived["id"]) == set(predictions)
        assert np.allclose(archived.set_index("id").loc[[f"j{i}" for i in range(40)], "confidence"],
                           probabilities.max(axis=1), atol=1e-5)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_pubsub_demo_command(emulator_host, model_dir):
    from pipelines.pubsub_demo import run_pubsub_demo

    lines = []
    labelled, dead = run_pubsub_demo(model_dir, PROJECT, 5, echo=lines.append, timeout=150)
    assert (labelled, dead) == (5, 2)
    assert lines[-1] == "5 labelled, 2 dead-lettered"
    assert any("malformed_json" in line for line in lines)
