"""Pull a subscription in bulk and hold every message's lease until its output is confirmed.

Beam's local Pub/Sub reader acknowledges a message as soon as it pulls it, ten at a
time. This is the other half of the contract Pub/Sub offers: a background thread
pulls up to `pull_size` messages a call while the number and bytes of unacknowledged
messages stay under the flow-control limits; another keeps extending their ack
deadline; and a message is acknowledged only when the sink that published its
output says so (`acknowledge`). If the process dies, nothing it held is
acknowledged, and Pub/Sub redelivers it once its deadline passes.

One `LeasedSubscription` per subscription per process (`open_subscription`): the
reading DoFn and the publishing DoFn of a local job run in the same process and meet
here by subscription path. No Apache Beam in this module.

The pull loop retries by hand, on `google.api_core`'s backoff (the publish uses its
`Retry`): it lasts as long as the job and must notice a stop within half a second.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from typing import Any

from google.api_core import exceptions, gapic_v1
from google.api_core.retry import exponential_sleep_generator

from model.errors import UserError
from pipelines.plumbing.lease_settings import FIRST_SIZE_GUESS, LeaseSettings, pull_room

__all__ = ["LeaseSettings", "LeasedSubscription", "close_all", "open_subscription", "pull_room", "request_stop"]

log = logging.getLogger(__name__)
API_ERRORS = (exceptions.GoogleAPICallError, exceptions.RetryError)  # what a Pub/Sub call raises

PULL_TIMEOUT_SECS = 2.0  # one pull call waits at most this long, so a stop is noticed quickly
IDS_PER_REQUEST = 1000  # ack ids per acknowledge / modify-ack-deadline call (request limit: 512 KB)




# Errors worth trying again: the service is busy or a call was cut off, not the request itself.
TRANSIENT = (exceptions.ServiceUnavailable, exceptions.DeadlineExceeded, exceptions.ResourceExhausted,
             exceptions.Aborted, exceptions.InternalServerError)


def _grpc_options() -> list[tuple[str, int]]:
    # Pub/Sub accepts messages up to 10 MB; gRPC's default receive limit is 4 MB.
    return [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]


def subscriber_api():
    """The generated subscriber client, with a channel that takes 10 MB messages from the emulator too."""
    from google import pubsub_v1

    host = os.environ.get("PUBSUB_EMULATOR_HOST")
    if not host:  # the default channel already lifts the size limits
        return pubsub_v1.SubscriberClient()
    import grpc
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    return pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(
        channel=grpc.insecure_channel(host, options=_grpc_options())))


def publisher_api():
    """The generated publisher client: one synchronous call publishes a whole list and confirms it."""
    from google import pubsub_v1

    host = os.environ.get("PUBSUB_EMULATOR_HOST")
    if not host:
        return pubsub_v1.PublisherClient()
    import grpc
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    return pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(
        channel=grpc.insecure_channel(host, options=_grpc_options())))


MAX_REQUEST_BYTES = 9_900_000  # Pub/Sub refuses publish requests over 10,000,000 bytes
MAX_REQUEST_MESSAGES = 1000


def publish_requests(messages: list[tuple[bytes, dict[str, str]]]) -> list[tuple[int, int]]:
    """(start, end) slices of `messages` that each fit in one publish request."""
    slices, start, size = [], 0, 0
    for i, (data, attributes) in enumerate(messages):
        item = len(data) + sum(len(k.encode()) + len(v.encode()) + 8 for k, v in attributes.items()) + 16
        if i > start and (size + item > MAX_REQUEST_BYTES or i - start >= MAX_REQUEST_MESSAGES):
            slices.append((start, i))
            start, size = i, 0
        size += item
    if start < len(messages):
        slices.append((start, len(messages)))
    return slices


def publish(api, topic: str, messages: list[tuple[bytes, dict[str, str]]]) -> list[str]:
    """Publish (data, attributes) pairs and wait for Pub/Sub to store them; returns their ids in order.

    The generated client takes attributes as a map, so any attribute name works
    (the handwritten client's keyword arguments collide with `timeout`, `retry`, …).
    """
    ids: list[str] = []
    for start, end in publish_requests(messages):
        ids += publish_request(api, topic, messages[start:end])
    return ids


def publish_request(api, topic: str, messages: list[tuple[bytes, dict[str, str]]],
                    retry=gapic_v1.method.DEFAULT) -> list[str]:
    """One publish call (the messages must fit in one request, see publish_requests); returns once stored.
    `retry`: the client's own by default (up to 10 minutes); None where the caller retries."""
    response = api.publish(topic=topic, timeout=120, retry=retry, messages=[
        {"data": data, "attributes": attributes} for data, attributes in messages])
    return list(response.message_ids)


def check_exists(subscription: str, topics: list[str]) -> None:
    """One clear line for a subscription or topic that is not there, before the job starts."""
    try:
        subscriber_api().get_subscription(subscription=subscription, timeout=30)
    except exceptions.NotFound:
        raise UserError(f"subscription {subscription} does not exist: create it, or check the name") from None
    except exceptions.GoogleAPICallError as exc:
        raise UserError(f"cannot read subscription {subscription}: {exc.message}") from None
    publisher = publisher_api()
    for topic in topics:
        try:
            publisher.get_topic(topic=topic, timeout=30)
        except exceptions.NotFound:
            raise UserError(f"topic {topic} does not exist: create it, or check the name") from None
        except exceptions.GoogleAPICallError as exc:
            raise UserError(f"cannot use topic {topic}: {exc.message}") from None


class LeasedSubscription:
    """Pulled messages waiting for the pipeline, and the leases of all messages not yet acknowledged.

    Both background threads are supervised: any exception that ends one sets
    `failure`, and the next `finished()` raises it, so the job stops with one error
    line instead of idling without reading.
    """

    def __init__(self, subscription: str, settings: LeaseSettings):
        self.subscription = subscription
        self.settings = settings
        self._api = subscriber_api()
        self._ready: collections.deque = collections.deque()  # pulled, not yet taken by the pipeline
        self._leases: dict[str, tuple[int, float]] = {}  # ack id → (bytes, when leased), not yet acknowledged
        self._leased_bytes = 0
        self._sizes = (0, 0)  # messages and bytes pulled so far: the mean sizes the next pull
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._closed = threading.Event()
        self.failure: str | None = None  # why pulling cannot go on (subscription deleted, a thread died)
        self.counts = collections.Counter()  # received, acknowledged, ack_failed, redelivered, leases_expired
        self.last_pull_ok = time.monotonic()  # when a pull last succeeded (the health check reads it)
        self._puller = threading.Thread(target=self._supervised, args=("pull", self._pull_loop),
                                        name=f"pull {subscription}", daemon=True)
        self._leaser = threading.Thread(target=self._supervised, args=("lease", self._lease_loop),
                                        name=f"lease {subscription}", daemon=True)
        self._puller.start()
        self._leaser.start()

    @property
    def outstanding(self) -> int:
        """Messages pulled and not yet acknowledged or handed back."""
        with self._changed:
            return len(self._leases)

    @property
    def acknowledged(self) -> int:
        """Messages whose acknowledgement Pub/Sub confirmed."""
        return self.counts["acknowledged"]

    # The pipeline's side -------------------------------------------------------------------------

    def take(self, min_count: int, max_count: int, max_wait: float, idle_wait: float = 0.5) -> list:
        """Up to `max_count` pulled messages: at once if `min_count` are there, else once `max_wait` has passed.

        Returns an empty list after `idle_wait` without messages, so the caller can look
        at `finished()` again.
        """
        with self._changed:
            if not self._changed.wait_for(lambda: self._ready or self._done_pulling() or self.failure,
                                          timeout=idle_wait):
                return []
            deadline = time.monotonic() + max_wait
            while len(self._ready) < min_count and not self._done_pulling() and not self.failure:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(timeout=min(remaining, 0.5))
            return [self._ready.popleft() for _ in range(min(max_count, len(self._ready)))]

    def acknowledge(self, ack_ids: list[str]) -> None:
        """The outputs of these messages are published: Pub/Sub may forget them.

        Only what Pub/Sub confirmed counts as acknowledged; a failed call is counted as
        `ack_failed`, and Pub/Sub redelivers those messages (a duplicate, never a loss).
        """
        for chunk in _chunks(ack_ids):
            try:
                self._api.acknowledge(subscription=self.subscription, ack_ids=chunk, timeout=60)
            except API_ERRORS as exc:  # the lease may have run out: Pub/Sub redelivers, nothing is lost
                self.counts["ack_failed"] += len(chunk)
                log.warning("could not acknowledge %d messages (%s); Pub/Sub will redeliver them", len(chunk), exc)
            else:
                self.counts["acknowledged"] += len(chunk)
        self._release(ack_ids)

    def redeliver(self, ack_ids: list[str]) -> None:
        """Give messages back at once (their output could not be published)."""
        for chunk in _chunks(ack_ids):
            try:
                self._api.modify_ack_deadline(subscription=self.subscription, ack_ids=chunk, ack_deadline_seconds=0,
                                              timeout=60)
                self.counts["redelivered"] += len(chunk)
            except API_ERRORS as exc:
                log.warning("could not return %d messages (%s); they come back when their lease ends", len(chunk),
                            exc)
        self._release(ack_ids)

    def stop(self) -> None:
        """Pull nothing more; what is already pulled still goes through the pipeline."""
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()

    def finished(self) -> bool:
        """Stopped, and every pulled message has been taken."""
        if self.failure:
            raise RuntimeError(self.failure)
        with self._changed:
            return self._done_pulling() and not self._ready

    def close(self) -> None:
        """Stop both threads and hand back whatever is still leased."""
        self.stop()
        self._puller.join(timeout=PULL_TIMEOUT_SECS + 5)
        with self._changed:
            left = list(self._leases)
        if left:
            self.redeliver(left)
        self._closed.set()
        self._leaser.join(timeout=5)

    # The background threads ----------------------------------------------------------------------

    def _stop_wanted(self) -> bool:
        return self._stopping.is_set() or _STOP_REQUESTED.is_set()

    def _done_pulling(self) -> bool:
        return self._stop_wanted() and not self._puller.is_alive()

    def _supervised(self, name: str, loop) -> None:
        try:
            loop()
        except BaseException as exc:  # noqa: BLE001 (a thread that dies quietly would leave the job idle)
            self.failure = f"the {name} thread of {self.subscription} died: {type(exc).__name__}: {exc}"
            log.error("%s", self.failure)
        finally:
            with self._changed:
                self._changed.notify_all()

    def _room(self) -> int:
        count, size = self._sizes
        return pull_room(self.settings, len(self._leases), self._leased_bytes,
                         size / count if count else FIRST_SIZE_GUESS)

    def _pull_loop(self) -> None:
        delays = exponential_sleep_generator(0.5, 30.0)  # capped, with full jitter
        while not self._stop_wanted():
            with self._changed:
                self._changed.wait_for(lambda: self._room() > 0 or self._stop_wanted(), timeout=0.5)
                room = self._room()
            if self._stop_wanted():
                break
            if room == 0:
                continue
            try:
                response = self._api.pull(subscription=self.subscription, max_messages=room,
                                          timeout=PULL_TIMEOUT_SECS, retry=None)
            except exceptions.DeadlineExceeded:
                self.last_pull_ok = time.monotonic()  # answered: nothing to pull
                continue
            except (exceptions.NotFound, exceptions.PermissionDenied, exceptions.InvalidArgument) as exc:
                self.failure = f"cannot pull {self.subscription}: {exc.message}"
                break
            except exceptions.GoogleAPICallError as exc:  # unavailable, internal, …: try again
                delay = next(delays)
                self.counts["pull_retries"] += 1
                log.warning("pull failed (%s); retrying in %.1f s", exc, delay)
                deadline = time.monotonic() + delay
                while time.monotonic() < deadline and not self._stop_wanted():
                    self._stopping.wait(min(0.5, deadline - time.monotonic()))
                continue
            delays = exponential_sleep_generator(0.5, 30.0)  # capped, with full jitter
            self.last_pull_ok = time.monotonic()
            received = list(response.received_messages)
            if not received:
                continue
            self._extend([m.ack_id for m in received])  # from the subscription's deadline to ours, at once
            now = time.monotonic()
            with self._changed:
                count, total = self._sizes
                for message in received:
                    size = len(message.message.data) + sum(len(k) + len(v) for k, v in
                                                           message.message.attributes.items())
                    self._leases[message.ack_id] = (size, now)
                    self._leased_bytes += size
                    count, total = count + 1, total + size
                    self._ready.append(message)
                self._sizes = (count, total)
                self.counts["received"] += len(received)
                self._changed.notify_all()

    def _lease_loop(self) -> None:
        interval = max(1.0, min(self.settings.ack_deadline_secs / 3, self.settings.max_lease_secs / 2))
        while not self._closed.wait(interval):
            oldest = time.monotonic() - self.settings.max_lease_secs
            with self._changed:
                expired = [ack_id for ack_id, (_, since) in self._leases.items() if since < oldest]
                held = [ack_id for ack_id, (_, since) in self._leases.items() if since >= oldest]
            if expired:
                self.counts["leases_expired"] += len(expired)
                log.warning("%d messages held for over %d s handed back to Pub/Sub", len(expired),
                            self.settings.max_lease_secs)
                self.redeliver(expired)
            self._extend(held)

    def _extend(self, ack_ids: list[str]) -> None:
        for chunk in _chunks(ack_ids):
            try:
                self._api.modify_ack_deadline(subscription=self.subscription, ack_ids=chunk,
                                              ack_deadline_seconds=self.settings.ack_deadline_secs, timeout=60)
            except API_ERRORS as exc:  # an expired lease is redelivered: a duplicate, never a loss
                log.warning("could not extend %d leases (%s)", len(chunk), exc)

    def _release(self, ack_ids: list[str]) -> None:
        with self._changed:
            for ack_id in ack_ids:
                self._leased_bytes -= self._leases.pop(ack_id, (0, 0.0))[0]
            self._changed.notify_all()


def _chunks(ids: list[str]) -> list[list[str]]:
    return [ids[i:i + IDS_PER_REQUEST] for i in range(0, len(ids), IDS_PER_REQUEST)]


_OPEN: dict[str, LeasedSubscription] = {}
_OPEN_LOCK = threading.Lock()
_STOP_REQUESTED = threading.Event()


def open_subscription(subscription: str, settings: LeaseSettings) -> LeasedSubscription:
    """This process's LeasedSubscription for `subscription`, started on first use."""
    with _OPEN_LOCK:
        leased = _OPEN.get(subscription)
        if leased is None:
            leased = _OPEN[subscription] = LeasedSubscription(subscription, settings)
        return leased


def opened() -> list[LeasedSubscription]:
    """This process's subscriptions (the metrics endpoint and the health check read them)."""
    with _OPEN_LOCK:
        return list(_OPEN.values())


def request_stop() -> None:
    """Stop pulling everywhere in this process. Safe in a signal handler: it only sets an event, which every
    subscription's threads and reads look at (a lock here could be held by the very thread the signal
    interrupted)."""
    _STOP_REQUESTED.set()


def stop_requested() -> bool:
    return _STOP_REQUESTED.is_set()


def close_all() -> dict[str, Any]:
    """Close every open subscription; returns how many messages each acknowledged (confirmed by Pub/Sub)."""
    with _OPEN_LOCK:
        opened = dict(_OPEN)
        _OPEN.clear()
    for leased in opened.values():
        leased.close()
    _STOP_REQUESTED.clear()
    return {path: leased.acknowledged for path, leased in opened.items()}
