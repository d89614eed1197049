"""The live job's edges on a local runner: a read that acknowledges late, and a publish that confirms.

`ReadLeasedMessages` is a splittable DoFn over an endless offset range. Each call
takes what `pubsub_lease` has pulled (at least `min_count` messages, or whatever
came within `max_wait`), emits them, and defers the rest of its range: the runner
calls it again at once, and everything downstream of it runs in the same bundle.
`PublishThenAcknowledge` publishes a bundle's outputs in large synchronous requests
(each returns only once Pub/Sub has stored the messages) and only then acknowledges
the input messages they came from. A message whose job dies before that is never
acknowledged, and Pub/Sub redelivers it.
"""

from __future__ import annotations

import logging

import apache_beam as beam
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.transforms.core import RestrictionProvider
from google.api_core import exceptions

from pipelines import pubsub_lease
from pipelines.pubsub_lease import LeaseSettings

log = logging.getLogger(__name__)

ENDLESS = 2**62


class _Endless(RestrictionProvider):
    """One offset per poll, never split: there is one subscription and one reader."""

    def initial_restriction(self, element):
        return OffsetRange(0, ENDLESS)

    def create_tracker(self, restriction):
        return OffsetRestrictionTracker(restriction)

    def restriction_size(self, element, restriction):
        return 1

    def split(self, element, restriction):
        yield restriction


_ENDLESS = beam.DoFn.RestrictionParam(_Endless())


class _PollLeasedMessages(beam.DoFn):
    def __init__(self, subscription: str, settings: LeaseSettings, min_count: int, max_count: int, max_wait: float):
        self.subscription = subscription
        self.settings = settings
        self.min_count, self.max_count, self.max_wait = min_count, max_count, max_wait

    def process(self, _impulse, tracker=_ENDLESS):
        leased = pubsub_lease.open_subscription(self.subscription, self.settings)
        position = tracker.current_restriction().start
        if leased.finished():  # stopped and drained: claim the rest, and the read is done
            tracker.try_claim(ENDLESS - 1)
            return
        if not tracker.try_claim(position):
            return
        for received in leased.take(self.min_count, self.max_count, self.max_wait):
            message = received.message
            yield received.ack_id, PubsubMessage(bytes(message.data), dict(message.attributes),
                                                 message_id=message.message_id,
                                                 publish_time=message.publish_time)
        tracker.defer_remainder()


class ReadLeasedMessages(beam.PTransform):
    """(ack id, PubsubMessage) pairs from a subscription; nothing is acknowledged here."""

    def __init__(self, subscription: str, settings: LeaseSettings, min_count: int, max_count: int, max_wait: float):
        super().__init__()
        self.poll = _PollLeasedMessages(subscription, settings, min_count, max_count, max_wait)

    def expand(self, pipeline):
        return pipeline | "Impulse" >> beam.Impulse() | "Poll" >> beam.ParDo(self.poll)


class PublishThenAcknowledge(beam.DoFn):
    """(ack id, PubsubMessage) in: publish the message, then acknowledge the input it answers.

    With `topic=None` nothing is published (dead letters with no dead-letter topic)
    and the inputs are acknowledged as handled.
    """

    def __init__(self, topic: str | None, subscription: str, settings: LeaseSettings):
        self.topic = topic
        self.subscription = subscription
        self.settings = settings

    def setup(self):
        self._api = pubsub_lease.publisher_api() if self.topic else None

    def start_bundle(self):
        self._pending: list[tuple[str, PubsubMessage]] = []

    def process(self, element: tuple[str, PubsubMessage]):
        self._pending.append(element)

    def finish_bundle(self):
        pending, self._pending = self._pending, []
        if not pending:
            return
        leased = pubsub_lease.open_subscription(self.subscription, self.settings)
        if not self.topic:
            leased.acknowledge([ack_id for ack_id, _ in pending])
            return
        messages = [(m.data, m.attributes) for _, m in pending]
        for start, end in pubsub_lease.publish_requests(messages):
            request = messages[start:end]
            ack_ids = [ack_id for ack_id, _ in pending[start:end]]
            try:
                pubsub_lease.publish_request(self._api, self.topic, request)
            except pubsub_lease.API_ERRORS as exc:
                leased.redeliver(ack_ids)
                if isinstance(exc, (exceptions.NotFound, exceptions.PermissionDenied)):
                    raise RuntimeError(f"cannot publish to {self.topic}: {exc}") from exc
                log.error("publishing %d messages to %s failed (%s); their inputs go back to Pub/Sub",
                          len(request), self.topic, exc)
                continue
            leased.acknowledge(ack_ids)
