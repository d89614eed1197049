"""The live job: Pub/Sub subscription in, labelled messages out, within seconds.

Same ClassifyComplaints as the nightly job, so the same text gets the same
prediction. Batches form across bundles through RunInference's stateful batching
(`max_batch_duration_secs`), so a steady trickle is classified in batches.
"""

from __future__ import annotations

import apache_beam as beam

from model import artifact
from pipelines.archive import ArchivePredictions
from pipelines.errors import JobFailed, cause
from pipelines.options import StreamConfig, beam_options
from pipelines.pubsub import DEAD_LETTERS, DecodeMessages, encode_dead_letter, encode_prediction
from worker.transform import PREDICTIONS, ClassifyComplaints


def build_stream(p: beam.Pipeline, config: StreamConfig) -> dict:
    """Wire read → decode → classify → publish (and optionally archive)."""
    messages = p | "ReadMessages" >> beam.io.ReadFromPubSub(subscription=config.subscription, with_attributes=True)
    decoded = messages | "Decode" >> beam.ParDo(DecodeMessages()).with_outputs(DEAD_LETTERS, main="records")
    results = decoded.records | "Classify" >> ClassifyComplaints(config.worker)
    (
        results[PREDICTIONS]
        | "EncodePredictions" >> beam.Map(encode_prediction)
        | "PublishPredictions" >> beam.io.WriteToPubSub(config.output_topic, with_attributes=True)
    )
    dead = (decoded[DEAD_LETTERS], results[DEAD_LETTERS]) | "AllDeadLetters" >> beam.Flatten()
    if config.dead_letter_topic:
        (
            dead
            | "EncodeDeadLetters" >> beam.Map(encode_dead_letter)
            | "PublishDeadLetters" >> beam.io.WriteToPubSub(config.dead_letter_topic, with_attributes=True)
        )
    if config.archive_output:
        results[PREDICTIONS] | "Archive" >> ArchivePredictions(config.archive_output, config.window_seconds)
    return {PREDICTIONS: results[PREDICTIONS], DEAD_LETTERS: dead}


def run(config: StreamConfig, beam_args: list[str] | None = None, test_pipeline: beam.Pipeline | None = None):
    """Start the streaming job and block until it is cancelled or fails."""
    artifact.load(config.worker.model_dir)  # a model that does not load fails here, in one line
    options = beam_options(beam_args, streaming=True)
    p = test_pipeline or beam.Pipeline(options=options)
    build_stream(p, config)
    try:
        result = p.run()
        result.wait_until_finish()
    except Exception as exc:
        raise JobFailed(f"the streaming job stopped ({cause(exc)})") from exc
    return result
