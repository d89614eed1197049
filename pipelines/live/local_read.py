"""The live job's read on a local runner: it acknowledges late, once the sink has confirmed an output.

`ReadLeasedMessages` is a splittable DoFn over an endless offset range. Each call
takes what `pipelines.plumbing.lease` has pulled (at least `min_count` messages, or whatever
came within `max_wait`), emits them, and defers the rest of its range: the runner
calls it again at once, and everything downstream of it runs in the same bundle.
The Pub/Sub sink's writer (`pipelines.sinks.pubsub_publish.PublishConfirmed`)
publishes a bundle's outputs in synchronous requests and says, request by request,
which inputs are answered and which go back; `AcknowledgeLeased` (the source's side,
here) acknowledges or returns them at once, in the same fused stage. A message whose
job dies before that is never acknowledged, and Pub/Sub redelivers it.
"""

from __future__ import annotations

import logging

import apache_beam as beam
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.transforms.core import RestrictionProvider

from pipelines.plumbing import lease
from pipelines.plumbing.lease import LeaseSettings

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
        leased = lease.open_subscription(self.subscription, self.settings)
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



class AcknowledgeLeased(beam.DoFn):
    """(ack ids, confirmed) in, from a sink that answers: acknowledge the inputs it confirmed, give back the rest.

    The source's side of the late-ack read: a sink only says what it confirmed.
    """

    def __init__(self, subscription: str, settings: LeaseSettings):
        self.subscription, self.settings = subscription, settings

    def process(self, answer: tuple[tuple[str, ...], bool]):
        ack_ids, confirmed = answer
        leased = lease.open_subscription(self.subscription, self.settings)
        if confirmed:
            leased.acknowledge(list(ack_ids))
        else:
            leased.redeliver(list(ack_ids))
