"""Local Pub/Sub plumbing: the emulator, topics, publishing and pulling.

Used by `complaints pubsub-demo`, the streaming tests and the latency benchmark.
The emulator is Google's (`gcloud beta emulators pubsub start`); it is started in
its own process group because gcloud leaves its Java child running otherwise.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator

from model.errors import UserError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def emulator(project: str, port: int | None = None, timeout: float = 90.0) -> Iterator[str]:
    """Start the emulator on a free port, yield its host:port, stop its whole process group."""
    port = port or free_port()
    host = f"127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile(prefix="pubsub-emulator-", suffix=".log", delete=False)
    try:
        process = subprocess.Popen(
            ["gcloud", "beta", "emulators", "pubsub", "start", f"--host-port={host}", f"--project={project}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    except FileNotFoundError:
        raise UserError("gcloud is not installed: install the Google Cloud CLI with its pubsub-emulator") from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://{host}/", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                with open(log.name, encoding="utf-8", errors="replace") as f:
                    output = f.read()[-3000:]
                raise RuntimeError(f"the Pub/Sub emulator did not start on {host}:\n{output}")
            time.sleep(0.25)
        yield host
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        os.unlink(log.name)


def topic_path(project: str, name: str) -> str:
    return f"projects/{project}/topics/{name}"


def subscription_path(project: str, name: str) -> str:
    return f"projects/{project}/subscriptions/{name}"


def create_topic_with_subscription(project: str, topic: str, subscription: str) -> tuple[str, str]:
    """Create (or reuse) a topic and a subscription to it; returns both paths."""
    from google.api_core.exceptions import AlreadyExists
    from google.cloud import pubsub_v1

    t, s = topic_path(project, topic), subscription_path(project, subscription)
    with contextlib.suppress(AlreadyExists):
        pubsub_v1.PublisherClient().create_topic(name=t)
    with contextlib.suppress(AlreadyExists):
        pubsub_v1.SubscriberClient().create_subscription(name=s, topic=t)
    return t, s


def publish(topic: str, messages: list[tuple[bytes, dict[str, str]]]) -> list[str]:
    """Publish (data, attributes) pairs, up to 10 MB each and with any attribute names; returns the message ids."""
    from pipelines.plumbing import lease

    return lease.publish(lease.publisher_api(), topic, messages)


def pull(subscription: str, max_messages: int = 500, timeout: float = 2.0) -> list:
    """Pull and acknowledge what is waiting (messages up to 10 MB); returns the messages (data, attributes, …)."""
    from google.api_core.exceptions import DeadlineExceeded

    from pipelines.plumbing import lease

    subscriber = lease.subscriber_api()
    try:
        response = subscriber.pull(subscription=subscription, max_messages=max_messages, timeout=timeout, retry=None)
    except DeadlineExceeded:
        return []
    if response.received_messages:
        subscriber.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in response.received_messages])
    return [m.message for m in response.received_messages]
