"""The live job's Pub/Sub sink: predictions to the output topic, dead letters to the dead-letter topic.

Committed means: Pub/Sub has confirmed the publish. With the local late-ack read
this sink answers, request by request, which inputs it confirmed (`PublishConfirmed`),
and only those does the source acknowledge (`AcknowledgeLeased`), so a crash at any
moment leaves every message either answered or redelivered. An output that
Pub/Sub refuses (`InvalidArgument`) is answered with a `publish_rejected` dead letter
instead, and nothing else in its request is held back. On Dataflow,
Beam's WriteToPubSub and the service's checkpoints give the same at-least-once.
"""

from __future__ import annotations

from collections.abc import Callable

import apache_beam as beam

from pipelines.plumbing.codec import encode_dead_letter, encode_prediction
from pipelines.sinks.base import DEAD_LETTERS, PREDICTIONS, Sink
from pipelines.sinks.pubsub_publish import PublishConfirmed
from worker import record_columns


class PublishOutputs(beam.PTransform):
    """Encode outputs for Pub/Sub and publish them; with the late-ack read, return what was confirmed.

    The late-ack read's answers are `(ack ids, confirmed)` pairs for the source to act
    on; otherwise (Beam's read, where the service acknowledges) there are none. A topic
    of None publishes nothing: with the late-ack read its inputs are answered anyway (a
    dead letter with nowhere to go is counted, not redelivered forever).
    """

    def __init__(self, topic: str | None, encode: Callable, dead_letter_topic: str | None, late_ack: bool,
                 dead_letters: bool = False):
        super().__init__()
        self.topic, self.encode, self.dead_letters = topic, encode, dead_letters
        self.dead_letter_topic, self.late_ack = dead_letter_topic, late_ack

    def expand(self, outputs):
        if self.late_ack:
            encode = self.encode
            return (
                outputs
                | "Encode" >> beam.Map(lambda output: (record_columns.ack_id(output), encode(output)))
                | "PublishConfirmed" >> beam.ParDo(
                    PublishConfirmed(self.topic, self.dead_letter_topic, self.dead_letters))
            )
        if self.topic:
            outputs | "Encode" >> beam.Map(self.encode) | "Publish" >> beam.io.WriteToPubSub(
                self.topic, with_attributes=True)
        return None


class PubSubTopics(Sink):
    committed = "Pub/Sub confirmed the publish; only then does the late-ack read acknowledge the input"

    def __init__(self, output_topic: str | None, dead_letter_topic: str | None, late_ack: bool):
        """`late_ack`: the local read that acknowledges only what a publish confirmed (else Beam's read)."""
        super().__init__()
        self.output_topic, self.dead_letter_topic, self.late_ack = output_topic, dead_letter_topic, late_ack

    def expand(self, classified) -> list:
        records = classified[PREDICTIONS] | "ToRecords" >> beam.FlatMap(record_columns.records)
        answers = [records | "PublishPredictions" >> PublishOutputs(
            self.output_topic, encode_prediction, self.dead_letter_topic, self.late_ack)]
        # Each part on its own: a Flatten would be a stage boundary on the local runner,
        # and the local read's stage never ends.
        for part, letters in classified[DEAD_LETTERS].items():
            answers.append(letters | f"PublishDeadLetters{part}" >> PublishOutputs(
                self.dead_letter_topic, encode_dead_letter, self.dead_letter_topic, self.late_ack, dead_letters=True))
        return [answer for answer in answers if answer is not None]
