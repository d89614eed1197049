"""The `complaints` command with one fault injected into its own process: `python -m tests.faulty_job FAULT ARGS…`.

Pub/Sub's emulator cannot be made to fail on demand (refuse one message, lose a
thread), so the tests that need such a fault run the real job through this wrapper,
which wraps the Pub/Sub clients the job creates (`pipelines.plumbing.lease`) before
handing over to the real command line. Everything else is the real job against the
real emulator. `FAULT_LOG` (an environment variable) names a file the fault appends to.

Faults:
- `pull-dies`: the third pull raises RuntimeError (an unforeseen bug in the pull thread).
- `pull-unavailable`: every pull after the second fails with ServiceUnavailable.
- `reject-marker`: a publish request to the output topic holding a message with
  `REJECT-ME` is refused as a whole with InvalidArgument (as a schema-validated topic would).
- `hold-lock`: the 5th poll holds the subscriptions' lock for 4 s, after writing
  `holding <thread name>` to the log (a signal then lands while the lock is held).
"""

from __future__ import annotations

import os
import sys
import threading
import time

from google.api_core import exceptions

from pipelines.plumbing import lease as pubsub_lease

FAULT, ARGS = sys.argv[1], sys.argv[2:]


def note(text: str) -> None:
    with open(os.environ["FAULT_LOG"], "a", encoding="utf-8") as f:
        f.write(text + "\n")


class Wrapped:
    """A generated client with some methods replaced."""

    def __init__(self, real, **methods):
        self._real, self._methods = real, methods

    def __getattr__(self, name):
        return self._methods.get(name) or getattr(self._real, name)


real_subscriber, real_publisher = pubsub_lease.subscriber_api, pubsub_lease.publisher_api
pulls = {"count": 0}


def subscriber_api():
    client = real_subscriber()

    def pull(**kwargs):
        pulls["count"] += 1
        if FAULT == "pull-dies" and pulls["count"] == 3:
            note("pull thread raising")
            raise RuntimeError("injected: a bug in the pull thread")
        if FAULT == "pull-unavailable" and pulls["count"] > 2:
            time.sleep(0.2)
            raise exceptions.ServiceUnavailable("injected: Pub/Sub is unreachable")
        return client.pull(**kwargs)

    return Wrapped(client, pull=pull)


def publisher_api():
    client = real_publisher()
    output_topic = ARGS[ARGS.index("--output-topic") + 1] if "--output-topic" in ARGS else None

    def publish(topic, messages, **kwargs):
        if FAULT == "reject-marker" and topic == output_topic and any(b"REJECT-ME" in m["data"] for m in messages):
            note(f"rejected a request of {len(messages)}")
            raise exceptions.InvalidArgument("injected: a message does not match the topic's schema")
        return client.publish(topic=topic, messages=messages, **kwargs)

    return Wrapped(client, publish=publish)


pubsub_lease.subscriber_api, pubsub_lease.publisher_api = subscriber_api, publisher_api

if FAULT == "hold-lock":
    real_open = pubsub_lease.open_subscription
    polls = {"count": 0}

    def open_subscription(subscription, settings):
        polls["count"] += 1
        if polls["count"] == 5:
            with pubsub_lease._OPEN_LOCK:
                note(f"holding {threading.current_thread().name}")
                time.sleep(4)
        return real_open(subscription, settings)

    pubsub_lease.open_subscription = open_subscription

from pipelines.app.cli import main  # noqa: E402 (after the clients are wrapped)

sys.argv = ["complaints", *ARGS]
main()
