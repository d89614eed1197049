"""The live job: Pub/Sub subscription in, labelled messages out, within seconds.

Messages are decoded into records, which `ClassifyComplaints` (the live edge of the
one classification core, `worker.core`, behind RunInference, as the nightly job's)
turns into prediction tables, so the same text gets the same verdict and the sinks
receive what the nightly job's receive. Only the edges depend on where it runs:

- locally (`read="late-ack"`): the project's own read (`live.local_read`) pulls in bulk,
  holds each message's lease, and acknowledges it only after the Pub/Sub sink has
  confirmed its prediction or dead letter (the sink answers, the source acknowledges). The job runs on Beam's in-process
  FnApiRunner as one endless fused stage, so batches are the messages each poll
  takes, and a stop request (SIGINT/SIGTERM) drains what is in flight and exits.
- on Dataflow (`read="beam"`): Beam's native ReadFromPubSub/WriteToPubSub, where the
  service acknowledges after a durable checkpoint, and RunInference's stateful
  batching forms batches across bundles.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import GoogleCloudOptions

from model import artifact
from model.errors import UserError
from pipelines import remote
from pipelines.errors import JobFailed, cause
from pipelines.live.facts import LiveFacts
from pipelines.live.local_read import AcknowledgeLeased, ReadLeasedMessages
from pipelines.live.outputs import stream_sinks
from pipelines.options import LATE_ACK, StreamConfig, create_local_locations, stream_options, template_only
from pipelines.plumbing import lease
from pipelines.plumbing.codec import DecodeMessages
from pipelines.served_model import challenger, served_from
from pipelines.sinks import DEAD_LETTERS, SHADOW
from worker.defaults import METRICS_NAMESPACE
from worker.precision_choice import PrecisionSetting, candidates
from worker.transform import DEAD_LETTER_PARTS, PREDICTIONS, ClassifyComplaints

log = logging.getLogger(__name__)


# The late-ack read's polls are its batches (`ClassifyComplaints(whole_bundles=True)`); False: Beam's batch-size
# estimator splits them, as Beam's own estimator does (benchmarks/stream_latency.py compares the two in one run).
WHOLE_POLLS = True


def build_stream(p: beam.Pipeline, config: StreamConfig, facts: LiveFacts | None = None) -> dict:
    """Wire read → decode → classify → the config's sinks (`pipelines.live.outputs.stream_sinks`), for the read and
    the models `facts` name (default: the config's own).

    A challenger (`facts.shadow`, `--shadow`) classifies the same records beside the
    champion; only the Parquet archive keeps its verdicts, and no acknowledgement waits
    for them."""
    facts = facts or LiveFacts.as_typed(config)
    late_ack = facts.read == LATE_ACK
    worker, shadow = facts.worker, facts.shadow
    if late_ack:
        messages = p | "ReadMessages" >> ReadLeasedMessages(
            config.subscription, config.lease, worker.min_batch_size, worker.max_batch_size,
            float(worker.max_batch_duration_secs or 1))
        worker = dataclasses.replace(worker, max_batch_duration_secs=None)  # each poll is already a batch
    else:
        messages = p | "ReadMessages" >> beam.io.ReadFromPubSub(subscription=config.subscription,
                                                                with_attributes=True)
    decoded = messages | "Decode" >> beam.ParDo(DecodeMessages()).with_outputs(DEAD_LETTERS, main="records")
    results = decoded.records | "Classify" >> ClassifyComplaints(worker, whole_bundles=late_ack and WHOLE_POLLS)
    dead_letters = {"Undecodable": decoded[DEAD_LETTERS], **{part: results[part] for part in DEAD_LETTER_PARTS}}
    classified = {PREDICTIONS: results[PREDICTIONS], DEAD_LETTERS: dead_letters}
    if shadow is not None:
        shadow = dataclasses.replace(shadow, max_batch_duration_secs=worker.max_batch_duration_secs)
        classified[SHADOW] = (decoded.records | "Shadow" >> ClassifyComplaints(
            shadow, whole_bundles=late_ack and WHOLE_POLLS))[PREDICTIONS]
    for sink in stream_sinks(config, facts):
        answers = classified | type(sink).__name__ >> sink
        if late_ack:  # the source acknowledges what a sink confirmed, each answer in its own (fused) step
            for n, answered in enumerate(answers):
                answered | f"Acknowledge{type(sink).__name__}{n}" >> beam.ParDo(
                    AcknowledgeLeased(config.subscription, config.lease))
    return classified


def run(config: StreamConfig, beam_args: list[str] | None = None, test_pipeline: beam.Pipeline | None = None):
    """Run the live job: until it is stopped (late-ack read), or cancelled or failed (Beam's read).

    Returns the pipeline result for Beam's read; for the late-ack read, once it has
    stopped cleanly, a dict with the number of messages it acknowledged.
    """
    loaded = artifact.load(config.worker.model_dir)  # a model that does not load fails here, in one line
    # nor one at a precision refused, or one this installation cannot serve
    candidates(PrecisionSetting.of(config.worker), loaded.metadata, config.worker.model_dir, loaded.model)
    check_names(config)
    options, read = stream_options(beam_args, config.read)
    create_local_locations(options)
    if config.shadow and not config.archive_output:
        raise UserError("--shadow keeps the challenger's verdicts under --archive-output (never on the output "
                        "topic): give --archive-output too")
    shadow, note = challenger(config.worker, config.shadow, loaded.version, options)
    if note and "not_scored" in note:
        log.warning("--shadow %s is not scored: %s", config.shadow, note["not_scored"])
    facts = LiveFacts(read, served_from(config.worker, loaded.metadata, options), shadow)
    p = test_pipeline or beam.Pipeline(options=options)
    if read == LATE_ACK:
        return _run_late_ack(p, config, facts)
    build_stream(p, config, facts)
    try:
        result = p.run()
        if template_only(options):
            return {"template_location": options.view_as(GoogleCloudOptions).template_location}
        remote.announce(result, options)
        result.wait_until_finish()
    except Exception as exc:
        raise JobFailed(f"the streaming job stopped ({cause(exc)})") from exc
    return result


def _run_late_ack(p: beam.Pipeline, config: StreamConfig, facts: LiveFacts) -> dict:
    lease.check_exists(config.subscription, [t for t in (config.output_topic, config.dead_letter_topic) if t])
    build_stream(p, config, facts)
    server = None
    if config.metrics_port:
        from pipelines.live.metrics import MetricsServer

        server = MetricsServer(config.metrics_host, config.metrics_port, config.unhealthy_after_secs)
        print(f"metrics on http://{config.metrics_host}:{config.metrics_port}/metrics, health on /healthz",
              file=sys.stderr, flush=True)
    try:
        with _stop_on_signals(config.stop_timeout_secs):
            result = p.run()
            result.wait_until_finish()
    except Exception as exc:
        raise JobFailed(f"the streaming job stopped ({cause(exc)})") from exc
    finally:
        acknowledged = lease.close_all()
        if server is not None:
            server.close()
    counters = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]
    totals: dict[str, int] = {}
    for counter in counters:
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + counter.committed
    return {"acknowledged": sum(acknowledged.values()), "counters": dict(sorted(totals.items()))}


def check_names(config: StreamConfig) -> None:
    """One line for a subscription or topic name that Pub/Sub would refuse."""
    names = [("--subscription", config.subscription, "subscriptions"),
             ("--output-topic", config.output_topic, "topics")]
    if config.dead_letter_topic:
        names.append(("--dead-letter-topic", config.dead_letter_topic, "topics"))
    for option, name, kind in names:
        if not re.fullmatch(rf"projects/[a-z][-a-z0-9.:]{{1,62}}/{kind}/[A-Za-z][-\w.~+%]{{2,254}}", name):
            raise UserError(f"{option} must look like projects/PROJECT/{kind}/NAME (a name of 3–255 characters "
                            f"starting with a letter), not {name!r}")


@contextlib.contextmanager
def _stop_on_signals(stop_timeout_secs: float) -> Iterator[None]:
    """SIGINT/SIGTERM: stop pulling and let what is in flight finish; a second signal leaves at once.

    The handler only sets an event (`lease.request_stop`): it runs on whatever
    the main thread was doing, which may hold any lock. A watchdog thread says that the
    job is stopping, and ends the process if the stop takes longer than
    `stop_timeout_secs` (Pub/Sub unreachable: publishes and acknowledgements would wait
    for their own timeouts). Leaving early loses nothing: only messages whose outputs
    are confirmed have been acknowledged, and Pub/Sub redelivers the rest.
    """
    signalled = threading.Event()
    done = threading.Event()

    def handler(signum, _frame):
        if signalled.is_set():
            os._exit(128 + signum)
        lease.request_stop()
        signalled.set()

    def watchdog():
        while not signalled.wait(0.5):
            if done.is_set():
                return
        print("stopping: finishing the messages in flight (signal again to quit at once)", file=sys.stderr,
              flush=True)
        if not done.wait(stop_timeout_secs):
            leased = sum(s.outstanding for s in lease.opened())
            print(f"error: the stop did not finish within {stop_timeout_secs:g} s (is Pub/Sub reachable?); "
                  f"{leased} messages were not acknowledged and Pub/Sub will redeliver them", file=sys.stderr,
                  flush=True)
            os._exit(1)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    guard = threading.Thread(target=watchdog, name="stop watchdog", daemon=True)
    guard.start()
    try:
        yield
    finally:
        done.set()
        for s, h in previous.items():
            signal.signal(s, h)
