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
from pipelines.app import pubsub_admin as admin
from tests.conftest import PROJECT

pytestmark = pytest.mark.slow  # whole jobs, services or trainings: left out of `pytest -m "not slow"`


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


def test_stream_labels_every_message_or_dead_letters_it(emulator_host, model_dir, loaded, serving, tmp_path):
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
        # Stop the job cleanly: once it has exited it has published everything it ever will,
        # so anything extra (duplicates, strays) is in the subscriptions now.
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(timeout=120) == 0, process.stdout.read().decode(errors="replace")
        outputs += _drain(out_sub)
        letters += _drain(dead_sub)

        assert len(outputs) == expected["good"]
        assert sorted(json.loads(m.data)["reason"] for m in letters) == sorted(expected["reasons"])
        predictions = {json.loads(m.data)["id"]: (json.loads(m.data), dict(m.attributes)) for m in outputs}
        assert set(predictions) == {f"j{i}" for i in range(40)} | {"plain-with-attribute", ids[41]}

        probabilities = serving.probabilities(texts)
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

        # The archive: a clean stop writes the last window too.
        files = glob.glob(str(archive / "predictions-*.parquet"))
        archived = pd.concat([pd.read_parquet(f) for f in files]) if files else pd.DataFrame()
        assert len(archived) == expected["good"]
        assert set(archived["id"]) == set(predictions)
        assert np.allclose(archived.set_index("id").loc[[f"j{i}" for i in range(40)], "confidence"],
                           probabilities.max(axis=1), atol=1e-5)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _drain(subscription: str) -> list:
    """Pull until a pull comes back empty (each pull waits up to 2 s for messages)."""
    pulled, batch, deadline = [], admin.pull(subscription), time.monotonic() + 300
    while batch:
        assert time.monotonic() < deadline, f"{subscription} still not drained after 300 s ({len(pulled)} pulled)"
        pulled += batch
        batch = admin.pull(subscription)
    return pulled


def _not_json(constant: str):
    raise AssertionError(f"the job published {constant}, which strict JSON parsers (BigQuery, jq, Java) refuse")


def strict_json(data: bytes):
    """RFC 8259 JSON, as strict parsers read it: no NaN or Infinity."""
    return json.loads(data, parse_constant=_not_json)


class _Outputs:
    """Everything the job published, by input message id: predictions and dead letters, duplicates counted."""

    def __init__(self, out_sub: str, dead_sub: str):
        self.subscriptions = (out_sub, dead_sub)
        self.by_message: dict[str, list[dict]] = {}

    def pull(self) -> None:
        for subscription in self.subscriptions:
            for message in admin.pull(subscription):
                body = strict_json(message.data)
                self.by_message.setdefault(body["message_id"], []).append(body)

    def wait_for(self, condition, process: subprocess.Popen | None = None, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while not condition(self):
            assert time.monotonic() < deadline, f"timed out with {len(self.by_message)} messages answered"
            if process is not None:
                assert process.poll() is None, _log(process)
            self.pull()

    def duplicates(self) -> int:
        return sum(len(bodies) - 1 for bodies in self.by_message.values())


def _topics(name: str) -> tuple[str, str, str, str, str]:
    in_topic, in_sub = admin.create_topic_with_subscription(PROJECT, f"{name}-in", f"{name}-in-sub")
    out_topic, out_sub = admin.create_topic_with_subscription(PROJECT, f"{name}-out", f"{name}-out-sub")
    dead_topic, dead_sub = admin.create_topic_with_subscription(PROJECT, f"{name}-dead", f"{name}-dead-sub")
    return in_topic, in_sub, out_topic, dead_topic, _Outputs(out_sub, dead_sub)


def _start_job(model_dir: str, host: str, log_path, subscription: str, out_topic: str, dead_topic: str, *extra,
               fault: str | None = None):
    """The real job in a child process; with `fault`, through `tests.faulty_job` (which notes to log_path.fault)."""
    log = open(log_path, "ab")
    started_at = log.tell()
    command = [sys.executable, "-m", "tests.faulty_job", fault] if fault else [sys.executable, "-m", "pipelines"]
    process = subprocess.Popen(
        [*command, "stream", "--model", model_dir, "--subscription", subscription,
         "--output-topic", out_topic, "--dead-letter-topic", dead_topic, "--ack-deadline-secs", "10", *extra],
        env={**os.environ, "PUBSUB_EMULATOR_HOST": host, "FAULT_LOG": f"{log_path}.fault"}, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True, cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    process.log_path, process.log_start = log_path, started_at
    return process


def _log(process) -> str:
    with open(process.log_path, encoding="utf-8", errors="replace") as f:
        return f.read()[-3000:]


def _own_log(process) -> str:
    """What this process wrote (the log file is shared by a test's restarts)."""
    with open(process.log_path, encoding="utf-8", errors="replace") as f:
        f.seek(process.log_start)
        return f.read()


def _answer_all(outputs: _Outputs, published: set[str], *job) -> None:
    """Start the job, wait until every published message is answered, stop it cleanly (exit 0).

    The stop waits until the job serves (it logs "serving model" once its signal handlers are in place):
    a signal before that ends a process by default, whatever the job would do.
    """
    process = _start_job(*job)
    try:
        outputs.wait_for(lambda o: published <= set(o.by_message) and "serving model" in _own_log(process),
                         process)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(timeout=60) == 0, _log(process)
    assert set(outputs.by_message) == published


def _backlog(count: int, seed: int) -> list[tuple[bytes, dict]]:
    """`count` complaints with a malformed message every 100."""
    texts = generate(count, seed=seed, labelled=False)["text"].tolist()
    return [(b'{"id": "broken", "text": ' if i % 100 == 99 else json.dumps({"id": f"b{i}", "text": t}).encode(), {})
            for i, t in enumerate(texts)]


def test_killed_at_any_moment_every_message_is_still_answered(emulator_host, model_dir, tmp_path):
    """SIGKILL the job at several points of a backlog, restart it each time: nothing is lost.

    Only messages whose prediction or dead letter Pub/Sub has confirmed are acknowledged,
    so what a killed job held comes back after its lease (10 s here). Duplicates are
    allowed (at-least-once); consumers de-duplicate on message_id.
    """
    in_topic, in_sub, out_topic, dead_topic, outputs = _topics("kill")
    published = set(admin.publish(in_topic, _backlog(3000, seed=5)))
    for moment in (1, 900, 1800):  # answered messages when the job is killed
        process = _start_job(model_dir, emulator_host, tmp_path / "job.log", in_sub, out_topic, dead_topic)
        outputs.wait_for(lambda o, m=moment: len(o.by_message) >= m, process)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    _answer_all(outputs, published, model_dir, emulator_host, tmp_path / "job.log", in_sub, out_topic, dead_topic)
    reasons = [b.get("reason") for bodies in outputs.by_message.values() for b in bodies]
    assert reasons.count("malformed_json") >= 30 and reasons.count(None) >= 2970


def test_sigterm_finishes_what_is_in_flight_and_exits_0(emulator_host, model_dir, tmp_path):
    """A clean stop acknowledges exactly what it published: the restarted job answers only the rest."""
    in_topic, in_sub, out_topic, dead_topic, outputs = _topics("term")
    published = set(admin.publish(in_topic, _backlog(3000, seed=6)))
    archive = tmp_path / "archive"
    process = _start_job(model_dir, emulator_host, tmp_path / "job.log", in_sub, out_topic, dead_topic,
                         "--archive-output", str(archive), "--window-seconds", "3600")
    outputs.wait_for(lambda o: len(o.by_message) >= 300, process)
    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(timeout=30) == 0, _log(process)
    assert "stopped:" in _log(process)
    # A clean stop writes the window still open: every prediction published so far, once.
    archived = pd.concat([pd.read_parquet(f) for f in glob.glob(str(archive / "predictions-*.parquet"))])
    assert len(archived) >= 300 * 0.99 and archived["message_id"].is_unique
    assert set(archived["message_id"]) <= published and archived["label"].notna().all()
    assert not glob.glob(str(archive / ".writing-*"))
    _answer_all(outputs, published, model_dir, emulator_host, tmp_path / "job.log", in_sub, out_topic, dead_topic)
    assert outputs.duplicates() == 0


def test_a_challenger_labels_the_same_messages_into_the_archive_and_never_the_topic(
        emulator_host, model_dir, retrained_model_dir, tmp_path):
    """`stream --shadow` (issue #53, item 6): the champion answers on the topic, the challenger only in
    shadow-*.parquet beside the archive, for the same messages; a clean stop writes both windows."""
    from model import artifact

    in_topic, in_sub, out_topic, dead_topic, outputs = _topics("shadow")
    published = set(admin.publish(in_topic, _backlog(400, seed=8)))
    archive = tmp_path / "archive"
    _answer_all(outputs, published, model_dir, emulator_host, tmp_path / "job.log", in_sub, out_topic, dead_topic,
                "--archive-output", str(archive), "--window-seconds", "3600", "--shadow", retrained_model_dir)
    champion, challenger = artifact.load(model_dir).version, artifact.load(retrained_model_dir).version
    answered = [b for bodies in outputs.by_message.values() for b in bodies if "label" in b]
    assert {b["model_version"] for b in answered} == {champion}  # the topic has the champion's verdicts only
    archived = pd.concat([pd.read_parquet(f) for f in glob.glob(str(archive / "predictions-*.parquet"))])
    shadow = pd.concat([pd.read_parquet(f) for f in glob.glob(str(archive / "shadow-*.parquet"))])
    assert set(shadow["model_version"]) == {challenger} and set(archived["model_version"]) == {champion}
    assert sorted(shadow["message_id"]) == sorted(archived["message_id"]) and len(shadow) == len(answered)


def test_messages_of_any_size_and_content_are_answered_and_the_job_goes_on(emulator_host, model_dir, tmp_path):
    """Up to 10 MB, escape-heavy, 100 attributes, a lone surrogate: each is labelled or dead-lettered."""
    in_topic, in_sub, out_topic, dead_topic, outputs = _topics("size")
    huge_text = " ".join(generate(1, seed=9, labelled=False)["text"].tolist() * 60_000).encode()[:9_400_000].decode(
        errors="ignore")
    messages = [
        (json.dumps({"id": "huge-valid", "text": huge_text}, ensure_ascii=False).encode(), {}),
        (('{"id": "huge-broken", "text": "' + '"\\\x01' * 3_150_000).encode(), {"id": "huge-broken"}),
        (json.dumps({"id": "many-attributes"}).encode(), {f"k{i:02d}": "v" * 1000 for i in range(99)} | {
            "timeout": "1"}),
        (b'{"id": "surrogate", "text": "kargo gelmedi", "note": "\\ud800"}', {}),
        ('\ufeff{"id": "bom1", "text": "kargo gelmedi"}'.encode(), {}),  # as Windows tools write it
        (b'{"id": "nan1", "text": "kargo gelmedi", "score": NaN}', {}),
        (b'{"id": "inf1", "text": "kargo gelmedi", "score": -Infinity}', {}),
        (b'{"id": "deep", "text": "kargo gelmedi", "n": ' + b"[" * 600 + b"]" * 600 + b"}", {}),
        (b'{"id": "deep-ok", "text": "kargo gelmedi", "n": ' + b"[" * 60 + b"]" * 60 + b"}", {}),
        (b"[acil] kargo gelmedi", {"id": "plain-bracket"}),
    ]
    messages += [(json.dumps({"id": f"after-{i}", "text": t}).encode(), {})
                 for i, t in enumerate(generate(20, seed=10, labelled=False)["text"])]
    ids = admin.publish(in_topic, messages)
    process = _start_job(model_dir, emulator_host, tmp_path / "job.log", in_sub, out_topic, dead_topic)
    try:
        outputs.wait_for(lambda o: set(ids) <= set(o.by_message), process)
        assert process.poll() is None
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(timeout=60) == 0, _log(process)
    answer = {message_id: outputs.by_message[message_id][0] for message_id in ids}
    assert answer[ids[0]]["id"] == "huge-valid" and "label" in answer[ids[0]]
    broken = answer[ids[1]]
    assert broken["reason"] == "malformed_json" and broken["payload_truncated"] is True
    assert broken["payload_chars"] == len(messages[1][0].decode()) and broken["attributes"] == {"id": "huge-broken"}
    assert answer[ids[2]]["reason"] == "missing_text" and answer[ids[2]]["attributes"] == messages[2][1]
    assert answer[ids[3]]["reason"] == "invalid_utf8"  # half a surrogate pair is not text
    assert answer[ids[4]]["id"] == "bom1" and "label" in answer[ids[4]]
    assert [answer[ids[i]]["reason"] for i in (5, 6, 7)] == ["malformed_json"] * 3
    assert "NaN is not a JSON number" in answer[ids[5]]["detail"] and "deeper" in answer[ids[7]]["detail"]
    assert answer[ids[8]]["id"] == "deep-ok" and "label" in answer[ids[8]]
    assert answer[ids[9]]["id"] == "plain-bracket" and "label" in answer[ids[9]]  # not JSON: plain text
    assert all("label" in answer[message_id] for message_id in ids[10:])


class _Publisher:
    """Publishes `count` more complaints (ids PREFIX0, PREFIX1, …, texts in turn) and keeps every message id."""

    def __init__(self, topic: str, texts: list[str], prefix: str):
        self.topic, self.texts, self.prefix, self.ids = topic, texts, prefix, []

    def __call__(self, count: int) -> list[str]:
        start = len(self.ids)
        ids = admin.publish(self.topic, [(json.dumps({"id": f"{self.prefix}{start + i}", "text": self.texts[
            (start + i) % len(self.texts)]}).encode(), {}) for i in range(count)])
        self.ids.extend(ids)
        return ids


def _versions(outputs: _Outputs, message_ids) -> list[str | None]:
    return [outputs.by_message[m][0].get("model_version") for m in message_ids]


def test_a_new_model_is_served_without_a_restart_and_unfit_ones_are_refused(
        emulator_host, model_dir, retrained_model_dir, other_labels_model_dir, loaded, tmp_path):
    from model import artifact

    in_topic, in_sub, out_topic, dead_topic, outputs = _topics("swap")
    models = tmp_path / "models"
    artifact.copy_directory(model_dir, str(models / "a"))
    process = _start_job(str(models / "a"), emulator_host, tmp_path / "job.log", in_sub, out_topic, dead_topic,
                         "--watch-models", str(models / "*"), "--watch-interval-secs", "1")
    publish = _Publisher(in_topic, generate(400, seed=21, labelled=False)["text"].tolist(), "w")
    published = publish.ids

    try:
        before = publish(50)
        outputs.wait_for(lambda o: set(before) <= set(o.by_message), process)
        assert set(_versions(outputs, before)) == {loaded.version}

        artifact.copy_directory(retrained_model_dir, str(models / "b"))  # a nightly retrain lands in a new directory
        retrained = artifact.load(retrained_model_dir).version

        def swapped(o):
            return retrained in _versions(o, [m for m in published if m in o.by_message])

        deadline = time.monotonic() + 180
        while not swapped(outputs):  # traffic goes on until a prediction carries B's version
            assert time.monotonic() < deadline, "no prediction carried the new model's version within 180 s"
            publish(10)
            outputs.wait_for(lambda o: set(published) <= set(o.by_message), process)
        after = publish(50)
        outputs.wait_for(lambda o: set(after) <= set(o.by_message), process)
        assert set(_versions(outputs, after)) == {retrained}

        broken = artifact.copy_directory(model_dir, str(models / "c-broken"))
        with open(os.path.join(broken, artifact.MODEL_FILE), "wb") as f:
            f.write(b"corrupt")
        artifact.copy_directory(other_labels_model_dir, str(models / "d-other-labels"))
        deadline = time.monotonic() + 180
        while _log(process).count("refused model") < 2:  # the watch looks when batches come
            assert time.monotonic() < deadline, "the broken models were not both refused within 180 s"
            publish(10)
            outputs.wait_for(lambda o: set(published) <= set(o.by_message), process)
        last = publish(50)
        outputs.wait_for(lambda o: set(last) <= set(o.by_message), process)
        assert set(_versions(outputs, last)) == {retrained}  # still serving B
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(timeout=30) == 0, _log(process)
    log = _log(process)
    assert set(outputs.by_message) == set(published) and outputs.duplicates() == 0  # none lost, none twice
    assert f"serving model {loaded.version} from {models / 'a'}" in log
    assert f"serving model {retrained} from {models / 'b'}" in log
    assert f"refused model {models / 'c-broken'}" in log and f"refused model {models / 'd-other-labels'}" in log
    assert "model_swaps=1" in log and "model_refused=2" in log


def test_pubsub_demo_command(emulator_host, model_dir):
    from pipelines.app.pubsub_demo import run_pubsub_demo

    lines = []
    labelled, dead = run_pubsub_demo(model_dir, PROJECT, 5, echo=lines.append, timeout=150)
    assert (labelled, dead) == (5, 2)
    assert lines[-1] == "5 labelled, 2 dead-lettered"
    assert any("malformed_json" in line for line in lines)


@pytest.mark.parametrize("problem", ["no subscription", "no topic", "bad name", "late-ack on Dataflow",
                                     "multi-process", "shadow without archive"])
def test_live_job_user_errors_are_one_line_before_anything_starts(problem, emulator_host, model_dir):
    from click.testing import CliRunner

    from pipelines.app.cli import cli

    _, in_sub = admin.create_topic_with_subscription(PROJECT, "errors-in", "errors-in-sub")
    out_topic, _ = admin.create_topic_with_subscription(PROJECT, "errors-out", "errors-out-sub")
    args = {"--subscription": in_sub, "--output-topic": out_topic}
    extra, expected = [], ""
    if problem == "no subscription":
        args["--subscription"], expected = admin.subscription_path(PROJECT, "missing-sub"), "does not exist"
    elif problem == "no topic":
        args["--output-topic"], expected = admin.topic_path(PROJECT, "missing-topic"), "does not exist"
    elif problem == "bad name":
        args["--subscription"], expected = "complaints-in-sub", "--subscription must look like"
    elif problem == "late-ack on Dataflow":
        extra, expected = ["--read", "late-ack", "--runner", "DataflowRunner"], "local runner only"
    elif problem == "shadow without archive":
        extra, expected = ["--shadow", model_dir], "--archive-output"
    else:
        extra, expected = ["--direct_running_mode=multi_processing"], "one process"
    result = CliRunner().invoke(cli, ["stream", "--model", model_dir, *sum(args.items(), ()), *extra])
    assert result.exit_code == 2, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: ") and expected in last
    assert "Traceback" not in result.output


def test_the_live_job_follows_a_registry_alias_and_a_rollback_moves_it_back(
        emulator_host, model_dir, retrained_model_dir, loaded, tmp_path, monkeypatch):
    """Issue #42: `--watch-models models:/NAME@champion` on a SQLite registry; promote, then roll back; the
    metrics say which registered version serves. (With --explain-all, every answer says why: issue #43.)"""
    import urllib.request

    from model import artifact, registration, registry
    from tests.registries import register, sqlite_uri

    monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path / "resolved"))  # the child inherits it
    uri = sqlite_uri(tmp_path)
    register(uri, model_dir, "complaints", "champion")
    register(uri, retrained_model_dir, "complaints")
    retrained = artifact.load(retrained_model_dir).version
    in_topic, in_sub, out_topic, dead_topic, outputs = _topics("alias")
    port = admin.free_port()
    alias = "models:/complaints@champion"
    process = _start_job(alias, emulator_host, tmp_path / "job.log", in_sub, out_topic, dead_topic,
                         "--registry-uri", uri, "--watch-models", alias, "--watch-interval-secs", "1",
                         "--metrics-port", str(port), "--explain", "2", "--explain-all")
    publish = _Publisher(in_topic, generate(200, seed=22, labelled=False)["text"].tolist(), "r")
    published = publish.ids

    def serves(version: str) -> None:
        since = len(published)  # the swap happens beside the batches: look only at what came after the move
        deadline = time.monotonic() + 180
        while version not in _versions(outputs, [m for m in published[since:] if m in outputs.by_message]):
            assert time.monotonic() < deadline, f"model {version} was not served within 180 s: {_log(process)}"
            publish(10)
            outputs.wait_for(lambda o: set(published) <= set(o.by_message), process)
        after = publish(30)
        outputs.wait_for(lambda o: set(after) <= set(o.by_message), process)
        assert set(_versions(outputs, after)) == {version}

    try:
        first = publish(30)
        outputs.wait_for(lambda o: set(first) <= set(o.by_message), process)
        assert set(_versions(outputs, first)) == {loaded.version}
        explained = [outputs.by_message[m][0].get("explanation") for m in first]  # issue #43, on the live job
        assert all(isinstance(e, list) and len(e) <= 2 for e in explained) and any(explained)
        registration.promote("complaints", "2", "champion", uri)
        serves(retrained)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            metrics = answer.read().decode()
        served = [line for line in metrics.splitlines() if line.startswith("complaints_served_model{")]
        assert len(served) == 1 and f'model_version="{retrained}"' in served[0] and 'version="2"' in served[0]
        assert 'alias="champion"' in served[0] and 'name="complaints"' in served[0]
        registration.promote("complaints", "1", "champion", uri)  # the rollback
        serves(loaded.version)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(timeout=30) == 0, _log(process)
    assert set(outputs.by_message) == set(published) and outputs.duplicates() == 0
    assert "model_swaps=2" in _log(process)
