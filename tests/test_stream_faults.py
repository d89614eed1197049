"""The live job against faults of its own and of Pub/Sub: nothing stops it or stalls it silently.

Real emulator, real job in a child process. Where Pub/Sub cannot be made to fail on
demand (refuse one message, a bug in a thread), the fault is injected into the job's
own Pub/Sub clients by `tests.faulty_job`, and each such test says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
import urllib.error
import urllib.request

import pytest
from google.api_core import exceptions

from model.sample import generate
from pipelines.app import pubsub_admin as admin
from pipelines.plumbing import lease as pubsub_lease
from pipelines.plumbing.lease_settings import LeaseSettings
from tests.conftest import PROJECT
from tests.test_stream import _answer_all, _log, _start_job, _topics

pytestmark = pytest.mark.slow  # whole jobs, services or trainings: left out of `pytest -m "not slow"`

FAULT_LOG_DEADLINE = 180  # model load and compile in the child come first


def _complaints(count: int, seed: int, marker_at: int | None = None) -> list[tuple[bytes, dict]]:
    texts = generate(count, seed=seed, labelled=False)["text"].tolist()
    return [(json.dumps({"id": f"c{i}", "text": t, **({"note": "REJECT-ME"} if i == marker_at else {})}).encode(),
             {}) for i, t in enumerate(texts)]


def _wait_for_note(log_path, text: str, process) -> str:
    deadline = time.monotonic() + FAULT_LOG_DEADLINE
    while True:
        with contextlib.suppress(FileNotFoundError):
            notes = open(f"{log_path}.fault", encoding="utf-8").read()
            if text in notes:
                return notes
        assert process.poll() is None, _log(process)
        assert time.monotonic() < deadline, f"no {text!r} from the fault in {FAULT_LOG_DEADLINE} s: {_log(process)}"
        time.sleep(0.05)


def _error_lines(process) -> list[str]:
    return [line for line in _log(process).splitlines() if line.startswith("error:")]


def test_a_thread_that_dies_ends_the_job_with_one_error_line(emulator_host, model_dir, tmp_path):
    """Fault injected in the job's own subscriber client: the pull thread raises RuntimeError."""
    in_topic, in_sub, out_topic, dead_topic, _ = _topics("dies")
    admin.publish(in_topic, _complaints(20, seed=1))
    process = _start_job(model_dir, emulator_host, tmp_path / "job.log", in_sub, out_topic, dead_topic,
                         fault="pull-dies")
    try:
        _wait_for_note(tmp_path / "job.log", "pull thread raising", process)
        died = time.monotonic()
        code = process.wait(timeout=10)
        assert time.monotonic() - died < 10
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert code != 0
    errors = _error_lines(process)
    assert len(errors) == 1 and "pull thread" in errors[0] and "RuntimeError" in errors[0], _log(process)
    assert "Traceback" not in _log(process)


def test_one_refused_message_is_dead_lettered_and_its_request_is_not_held_back(emulator_host, model_dir, tmp_path):
    """Fault injected in the job's own publisher client: a request holding the marked message is refused with
    InvalidArgument, as a schema-validated topic would refuse it."""
    in_topic, in_sub, out_topic, dead_topic, outputs = _topics("reject")
    ids = admin.publish(in_topic, _complaints(500, seed=2, marker_at=250))
    process = _start_job(model_dir, emulator_host, tmp_path / "job.log", in_sub, out_topic, dead_topic,
                         "--min-batch-size", "500", "--max-batch-size", "512", "--max-batch-duration-secs", "10",
                         fault="reject-marker")
    try:
        outputs.wait_for(lambda o: set(ids) <= set(o.by_message), process)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(timeout=60) == 0, _log(process)
    outputs.pull()
    assert outputs.duplicates() == 0
    rejected = outputs.by_message[ids[250]][0]
    assert rejected["reason"] == "publish_rejected" and "schema" in rejected["detail"]
    assert rejected["id"] == "c250" and "REJECT-ME" in rejected["payload"]
    assert all("label" in outputs.by_message[m][0] for i, m in enumerate(ids) if i != 250)
    sizes = [int(n) for n in re.findall(r"rejected a request of (\d+)", open(f"{tmp_path}/job.log.fault").read())]
    assert sizes[0] > 100 and sizes[-1] == 1, sizes  # one big request refused, split down to the one message


def test_sigterm_while_the_lock_is_held_stops_cleanly(emulator_host, model_dir, tmp_path):
    """Fault injected in the job's own process: a poll holds the subscriptions' lock for 4 s, on the main thread,
    where the signal handler runs; the signal is sent only then. Nothing is lost after a restart."""
    in_topic, in_sub, out_topic, dead_topic, outputs = _topics("lock")
    published = set(admin.publish(in_topic, _complaints(400, seed=3)))
    process = _start_job(model_dir, emulator_host, tmp_path / "job.log", in_sub, out_topic, dead_topic,
                         fault="hold-lock")
    try:
        notes = _wait_for_note(tmp_path / "job.log", "holding", process)
        os.killpg(process.pid, signal.SIGTERM)
        sent = time.monotonic()
        assert process.wait(timeout=20) == 0, _log(process)
        assert time.monotonic() - sent < 15
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert "holding MainThread" in notes  # the lock was held by the thread the handler interrupts
    _answer_all(outputs, published, model_dir, emulator_host, tmp_path / "job.log", in_sub, out_topic, dead_topic)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _metric(text: str, name: str, **labels) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


def test_the_metrics_endpoint_counts_what_the_topics_received(emulator_host, model_dir, tmp_path):
    in_topic, in_sub, out_topic, dead_topic, outputs = _topics("metrics")
    messages = [*_complaints(120, seed=4), (b'{"id": "bad", "text": ', {}), (b'{"id": "none"}', {}),
                (b'{"id": "e", "text": "?!"}', {})]
    ids = admin.publish(in_topic, messages)
    port = admin.free_port()
    process = _start_job(model_dir, emulator_host, tmp_path / "job.log", in_sub, out_topic, dead_topic,
                         "--metrics-port", str(port))
    try:
        outputs.wait_for(lambda o: set(ids) <= set(o.by_message), process)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while _metric(_get(f"{base}/metrics")[1], "complaints_acknowledged_total") < len(ids):
            assert time.monotonic() < deadline, _get(f"{base}/metrics")[1]
            time.sleep(0.1)
        status, text = _get(f"{base}/metrics")
        assert _get(f"{base}/healthz") == (200, "ok\n")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(timeout=60) == 0, _log(process)
    bodies = [b[0] for b in outputs.by_message.values()]
    predictions = [b for b in bodies if "label" in b]
    assert status == 200
    assert _metric(text, "complaints_answers_total", kind="prediction") == len(predictions) == 120
    for reason in ("malformed_json", "missing_text", "empty_text"):
        expected = sum(1 for b in bodies if b.get("reason") == reason)
        assert _metric(text, "complaints_answers_total", kind="dead_letter", reason=reason) == expected == 1
    assert _metric(text, "complaints_messages_received_total") == len(ids)
    assert _metric(text, "complaints_acknowledged_total") == len(ids)
    assert _metric(text, "complaints_batch_latency_seconds_count") >= 1


def test_the_health_check_fails_when_pulls_stop_succeeding(emulator_host, model_dir, tmp_path):
    """Fault injected in the job's own subscriber client: every pull after the second fails (Unavailable)."""
    _, in_sub, out_topic, dead_topic, _ = _topics("health")
    port = admin.free_port()
    process = _start_job(model_dir, emulator_host, tmp_path / "job.log", in_sub, out_topic, dead_topic,
                         "--metrics-port", str(port), "--unhealthy-after-secs", "3", fault="pull-unavailable")
    try:
        deadline = time.monotonic() + FAULT_LOG_DEADLINE
        while (health := _health(port))[0] != 503:
            assert process.poll() is None, _log(process)
            assert time.monotonic() < deadline, f"the health check never turned unhealthy: {health}"
            time.sleep(0.2)
        status, why = health
        assert status == 503 and "no pull" in why
        assert process.poll() is None  # unhealthy, still running: the supervisor decides
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(timeout=20) == 0, _log(process)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def _health(port: int) -> tuple[int | None, str]:
    """(status, body) of /healthz, or (None, why) while the job has not started serving it."""
    try:
        return _get(f"http://127.0.0.1:{port}/healthz")
    except OSError as exc:
        return None, str(exc)


def test_a_stop_ends_in_bounded_time_when_pubsub_has_gone(model_dir, tmp_path):
    """Its own emulator, stopped under the running job; then SIGTERM: the job ends within --stop-timeout-secs."""
    with contextlib.ExitStack() as stack:
        host = stack.enter_context(admin.emulator(PROJECT))
        previous = os.environ.get("PUBSUB_EMULATOR_HOST")
        os.environ["PUBSUB_EMULATOR_HOST"] = host
        try:
            in_topic, in_sub, out_topic, dead_topic, outputs = _topics("gone")
            ids = admin.publish(in_topic, _complaints(50, seed=5))
            process = _start_job(model_dir, host, tmp_path / "job.log", in_sub, out_topic, dead_topic,
                                 "--stop-timeout-secs", "5")
            outputs.wait_for(lambda o: set(ids) <= set(o.by_message), process)
            admin.publish(in_topic, _complaints(50, seed=6))
        finally:
            if previous is not None:
                os.environ["PUBSUB_EMULATOR_HOST"] = previous
        stack.close()  # the emulator goes away under the job
    try:  # the emulator's process group has been waited for: Pub/Sub is unreachable now
        os.killpg(process.pid, signal.SIGTERM)
        sent = time.monotonic()
        process.wait(timeout=30)
        assert time.monotonic() - sent < 5 + 5, _log(process)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


class _FailingAck:
    """The subscriber client with its first acknowledge call failing (fault injected into the client)."""

    def __init__(self, real):
        self.real, self.failed = real, False

    def __getattr__(self, name):
        return getattr(self.real, name)

    def acknowledge(self, **kwargs):
        if not self.failed:
            self.failed = True
            raise exceptions.ServiceUnavailable("injected: acknowledge failed")
        return self.real.acknowledge(**kwargs)


def test_leases_end_after_their_maximum_age_and_only_confirmed_acks_count(emulator_host):
    in_topic, in_sub, _, _, _ = _topics("lease")
    ids = set(admin.publish(in_topic, _complaints(5, seed=7)))
    leased = pubsub_lease.LeasedSubscription(in_sub, LeaseSettings(ack_deadline_secs=10, max_lease_secs=2))
    try:
        first = _take_all(leased, ids)
        deadline = time.monotonic() + 30
        while leased.counts["leases_expired"] < 5:
            assert time.monotonic() < deadline, dict(leased.counts)
            time.sleep(0.1)
        again = _take_all(leased, ids)  # handed back: Pub/Sub delivers them again
        assert {m.message.message_id for m in again} == {m.message.message_id for m in first} == ids
        leased._api = _FailingAck(leased._api)
        leased.acknowledge([m.ack_id for m in again])
        assert leased.counts["ack_failed"] == 5 and leased.acknowledged == 0
    finally:
        leased.close()


def _take_all(leased, ids: set[str]) -> list:
    taken, deadline = [], time.monotonic() + 60
    while {m.message.message_id for m in taken} != ids:
        assert time.monotonic() < deadline, f"took {len(taken)} of {len(ids)}"
        taken += leased.take(1, 100, 0.5)
    return taken


def test_pulls_are_sized_to_the_byte_budget():
    settings = LeaseSettings(max_outstanding_messages=5000, max_outstanding_bytes=10 * 2**20, pull_size=1000)
    assert pubsub_lease.pull_room(settings, 0, 0, 1_000) == 1000  # small messages: the pull size
    assert pubsub_lease.pull_room(settings, 0, 0, 1_000_000) == 10  # 1 MB messages: ten fit
    assert pubsub_lease.pull_room(settings, 0, 9 * 2**20, 1_000_000) == 1  # always room for one
    assert pubsub_lease.pull_room(settings, 0, 10 * 2**20, 100) == 0  # the budget is spent
    assert pubsub_lease.pull_room(settings, 4990, 0, 100) == 10  # the message budget too


class _Refusing:
    """The publisher client, refusing (InvalidArgument) what `refuse(topic, messages)` says: fault injection."""

    def __init__(self, real, refuse):
        self.real, self.refuse = real, refuse

    def __getattr__(self, name):
        return getattr(self.real, name)

    def publish(self, topic, messages, **kwargs):
        if self.refuse(topic, messages):
            raise exceptions.InvalidArgument("injected: refused by the topic's schema")
        return self.real.publish(topic=topic, messages=messages, **kwargs)


def test_a_refused_dead_letter_is_sent_minimal(emulator_host):
    """Fault injected into the publisher client: the output topic refuses the prediction, and the dead-letter
    topic refuses any letter that carries a payload; the minimal letter goes through and the input is
    acknowledged once."""
    from apache_beam.io.gcp.pubsub import PubsubMessage

    from pipelines.live.local_read import AcknowledgeLeased
    from pipelines.sinks.pubsub_publish import PublishConfirmed

    in_topic, in_sub, out_topic, dead_topic, outputs = _topics("minimal")
    ids = set(admin.publish(in_topic, _complaints(1, seed=8)))
    settings = LeaseSettings()
    leased = pubsub_lease.open_subscription(in_sub, settings)
    try:
        [taken] = _take_all(leased, ids)
        publisher, source = PublishConfirmed(out_topic, dead_topic), AcknowledgeLeased(in_sub, settings)
        publisher.setup()
        publisher._api = _Refusing(publisher._api, lambda topic, messages: topic == out_topic or any(
            b'"payload"' in m["data"] for m in messages))
        publisher.start_bundle()
        output = json.dumps({"id": "c0", "label": "Kargo", "message_id": taken.message.message_id}).encode()
        publisher.process((taken.ack_id, PubsubMessage(output, {"label": "Kargo"})))
        answers = [answer.value for answer in publisher.finish_bundle()]
        assert answers == [((taken.ack_id,), True)]  # the sink answers; the source acknowledges
        for answer in answers:
            source.process(answer)
        assert leased.acknowledged == 1
    finally:
        pubsub_lease.close_all()
    outputs.wait_for(lambda o: ids <= set(o.by_message))
    [letter] = outputs.by_message[taken.message.message_id]
    assert letter == {"id": "c0", "reason": "publish_rejected", "detail": letter["detail"],
                      "message_id": taken.message.message_id}
    assert "refused" in letter["detail"]


class _Unavailable:
    """The publisher client, failing its first `failures` publish calls with ServiceUnavailable (fault injection);
    it notes the `retry` each call was given."""

    def __init__(self, real, failures: int):
        self.real, self.failures, self.retries = real, failures, []

    def __getattr__(self, name):
        return getattr(self.real, name)

    def publish(self, topic, messages, **kwargs):
        self.retries.append(kwargs.get("retry", "the client's default"))
        if len(self.retries) <= self.failures:
            raise exceptions.ServiceUnavailable("injected: the service is unavailable")
        return self.real.publish(topic=topic, messages=messages, **kwargs)


def test_a_transient_publish_error_is_retried_then_handed_back_and_a_stop_cuts_it_short(emulator_host, monkeypatch):
    """Fault injected into the publisher client: its first calls fail with ServiceUnavailable. The request is
    published once it goes through, each error counted; one that keeps failing is handed back for redelivery
    once the retry's time is up; during a stop it is handed back at once."""
    from apache_beam.io.gcp.pubsub import PubsubMessage

    from pipelines.sinks import pubsub_publish
    from worker import telemetry

    _, _, out_topic, dead_topic, outputs = _topics("transient")
    publisher = pubsub_publish.PublishConfirmed(out_topic, dead_topic)
    publisher.setup()
    real = publisher._api

    def publish(failures: int, name: str):
        publisher._api = client = _Unavailable(real, failures)
        publisher.start_bundle()
        publisher.process((name, PubsubMessage(json.dumps({"id": name, "message_id": name}).encode(), {})))
        return [answer.value for answer in publisher.finish_bundle()], client.retries

    counted = telemetry.PUBLISH_RETRIES._value.get()
    answers, retries = publish(2, "through")
    assert answers == [(("through",), True)]
    assert retries == [None] * 3  # three calls, none inside the client's own retry
    assert telemetry.PUBLISH_RETRIES._value.get() - counted == 2

    monkeypatch.setattr(pubsub_publish, "PUBLISH_RETRY_SECS", 1.0)
    started = time.monotonic()
    answers, retries = publish(10**9, "given-back")
    assert answers == [(("given-back",), False)] and len(retries) > 1
    assert time.monotonic() - started < 30  # its retry time, not the client's ten minutes

    pubsub_lease.request_stop()
    try:
        answers, retries = publish(1, "stopping")
    finally:
        pubsub_lease.close_all()  # clears the stop
    assert answers == [(("stopping",), False)] and len(retries) == 1
    outputs.wait_for(lambda o: "through" in o.by_message)
    outputs.pull()
    assert list(outputs.by_message) == ["through"] and len(outputs.by_message["through"]) == 1
