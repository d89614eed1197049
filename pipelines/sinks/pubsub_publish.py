"""The Pub/Sub sink's writer on a local runner: publish, and say which inputs Pub/Sub has confirmed.

`PublishConfirmed` publishes a bundle's outputs in large synchronous requests (each
returns only once Pub/Sub has stored the messages) and says, request by request,
which inputs are answered and which go back; the live job's read
(`pipelines.live.local_read.AcknowledgeLeased`) acknowledges or returns them at once,
in the same fused stage. A message whose job dies before that is never acknowledged,
and Pub/Sub redelivers it.
"""

from __future__ import annotations

import json
import logging

import apache_beam as beam
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.transforms.window import GlobalWindows
from google.api_core import exceptions, retry

from pipelines.plumbing import codec, lease
from worker import telemetry
from worker.defaults import METRICS_NAMESPACE
from worker.records import PUBLISH_REJECTED

log = logging.getLogger(__name__)

PUBLISH_RETRY_SECS = 15.0  # how long one publish request is tried again on transient errors


def _worth_retrying(exc: Exception) -> bool:
    return isinstance(exc, lease.TRANSIENT) and not lease.stop_requested()


def _count_retry(topic: str, exc: Exception) -> None:
    beam.metrics.Metrics.counter(METRICS_NAMESPACE, "publish_retries").inc()
    telemetry.PUBLISH_RETRIES.inc()
    log.warning("publish to %s failed (%s); trying again for up to %.0f s in all", topic, exc, PUBLISH_RETRY_SECS)


def _answer(ack_ids: list[str], confirmed: bool):
    return GlobalWindows.windowed_value((tuple(ack_ids), confirmed))


class PublishConfirmed(beam.DoFn):
    """(ack id, PubsubMessage) in: publish the message; out, per request, (ack ids, confirmed) for the source.

    Emitted from `finish_bundle` as each request returns, so `AcknowledgeLeased`
    acknowledges a request's inputs before the next request is sent. With
    `topic=None` nothing is published (dead letters with no dead-letter topic) and
    the inputs are answered as handled.

    A request Pub/Sub rejects as a whole (`InvalidArgument`: a schema-validated topic,
    an attribute it refuses) is split in halves until the rejected messages stand
    alone; each becomes a `publish_rejected` dead letter on `dead_letter_topic` (for a
    dead letter: a minimal letter, id, reason and detail, on the same topic), and every
    other message is published and acknowledged once. Transient errors are retried by
    Google's own retry (`google.api_core.retry`: capped exponential backoff, full jitter)
    for `PUBLISH_RETRY_SECS`, and not once a stop is under way; what still fails goes
    back to Pub/Sub. It is the only retry: the client's default one (up to 10 minutes) is
    switched off for the call, so a request is never retried inside a retry.
    """

    def __init__(self, topic: str | None, dead_letter_topic: str | None = None, dead_letters: bool = False):
        self.topic = topic
        self.dead_letter_topic = dead_letter_topic
        self.dead_letters = dead_letters  # this publishes dead letters: a rejected one is sent minimal

    def setup(self):
        self._api = lease.publisher_api() if self.topic or self.dead_letter_topic else None

    def start_bundle(self):
        self._pending: list[tuple[str, PubsubMessage]] = []

    def process(self, element: tuple[str, PubsubMessage]):
        self._pending.append(element)

    def finish_bundle(self):
        pending, self._pending = self._pending, []
        if not pending:
            return
        if not self.topic:
            _count_answers([m for _, m in pending])
            yield _answer([ack_id for ack_id, _ in pending], True)
            return
        messages = [(m.data, m.attributes) for _, m in pending]
        for start, end in lease.publish_requests(messages):
            yield from self._publish_or_split(pending[start:end])

    def _publish_or_split(self, items: list[tuple[str, PubsubMessage]]):
        ack_ids = [ack_id for ack_id, _ in items]
        try:
            self._publish(self.topic, [(m.data, m.attributes) for _, m in items])
        except exceptions.InvalidArgument as exc:
            if len(items) > 1:
                middle = len(items) // 2
                yield from self._publish_or_split(items[:middle])
                yield from self._publish_or_split(items[middle:])
            else:
                yield from self._reject(items[0], exc)
            return
        except lease.API_ERRORS as exc:
            yield _answer(ack_ids, False)
            if isinstance(exc, (exceptions.NotFound, exceptions.PermissionDenied)):
                raise RuntimeError(f"cannot publish to {self.topic}: {exc}") from exc
            log.error("publishing %d messages to %s failed (%s); their inputs go back to Pub/Sub",
                      len(items), self.topic, exc)
            return
        _count_answers([m for _, m in items])
        yield _answer(ack_ids, True)

    def _publish(self, topic: str, messages: list[tuple[bytes, dict[str, str]]]) -> None:
        """One request, retried on transient errors; raises what is not transient, or `RetryError` once the
        retry's time is up."""
        retrying = retry.Retry(predicate=_worth_retrying, initial=0.5, maximum=30.0, multiplier=2.0,
                               timeout=PUBLISH_RETRY_SECS, on_error=lambda exc: _count_retry(topic, exc))
        retrying(lease.publish_request)(self._api, topic, messages, retry=None)

    def _reject(self, item: tuple[str, PubsubMessage], exc: BaseException):
        """One message Pub/Sub will not store: answer its input with a dead letter, then have it acknowledged."""
        ack_id, message = item
        detail = f"{self.topic} refused it: {getattr(exc, 'message', None) or exc}"[:1000]
        beam.metrics.Metrics.counter(METRICS_NAMESPACE, "publish_rejected").inc()
        telemetry.PUBLISH_REJECTED.inc()
        letter = _rejected_letter(message, detail, minimal=self.dead_letters)
        topic = self.topic if self.dead_letters else self.dead_letter_topic
        if topic is None:
            log.error("%s; no --dead-letter-topic to send its dead letter to: acknowledged and counted", detail)
            telemetry.ANSWERS.labels("dead_letter", PUBLISH_REJECTED).inc()
            yield _answer([ack_id], True)
            return
        for body, attributes in (letter, (codec.minimal_dead_letter(json.loads(letter[0])), {})):
            try:
                self._publish(topic, [(body, attributes)])
            except exceptions.InvalidArgument:
                continue  # the letter itself was refused: try the minimal one
            except lease.API_ERRORS as error:
                log.error("publishing the dead letter of a refused message failed (%s); its input goes back to "
                          "Pub/Sub", error)
                yield _answer([ack_id], False)
                return
            telemetry.ANSWERS.labels("dead_letter", PUBLISH_REJECTED).inc()
            yield _answer([ack_id], True)
            return
        beam.metrics.Metrics.counter(METRICS_NAMESPACE, "answers_dropped").inc()
        telemetry.ANSWERS_DROPPED.inc()
        log.error("%s, and %s refused even a minimal dead letter: the input is acknowledged and counted "
                  "(answers_dropped) rather than redelivered forever", detail, topic)
        yield _answer([ack_id], True)


def _count_answers(messages: list[PubsubMessage]) -> None:
    for message in messages:
        reason = (message.attributes or {}).get("dead_letter_reason")
        telemetry.ANSWERS.labels("dead_letter" if reason else "prediction", reason or "").inc()


def _rejected_letter(message: PubsubMessage, detail: str, minimal: bool) -> tuple[bytes, dict[str, str]]:
    """The dead letter for an output Pub/Sub refused: what the output said, as far as it can be read."""
    try:
        output = json.loads(message.data)
    except ValueError:
        output = {}
    if not isinstance(output, dict):
        output = {}
    record_id = output.get("id")
    if minimal:  # a dead letter was refused: keep its own reason, say why it is minimal
        body = {"id": record_id, "reason": output.get("reason", PUBLISH_REJECTED),
                "detail": f"{output.get('detail', '')} (sent minimal: {detail})"[:4000],
                "message_id": output.get("message_id")}
        return codec.strict_json(body), {}
    body = {"id": record_id, "reason": PUBLISH_REJECTED, "detail": detail,
            "payload": message.data.decode("utf-8", errors="backslashreplace")[:1_000_000],
            "message_id": output.get("message_id")}
    return codec.strict_json(body), {"dead_letter_reason": PUBLISH_REJECTED}
