"""Which sinks the live job writes to, from its config: the one place that reads a StreamConfig for the sinks."""

from __future__ import annotations

from pipelines.config import LATE_ACK, StreamConfig
from pipelines.live.facts import LiveFacts
from pipelines.sinks import Sink
from pipelines.sinks.parquet_files import ParquetFiles
from pipelines.sinks.pubsub_topics import PubSubTopics


def stream_sinks(config: StreamConfig, facts: LiveFacts) -> list[Sink]:
    """The output and dead-letter topics, and the windowed Parquet archive when asked for (with the challenger's
    windows when the run scores one), for the read and the served models the run decided."""
    late_ack, worker, shadow = facts.read == LATE_ACK, facts.worker, facts.shadow
    return [
        PubSubTopics(config.output_topic, config.dead_letter_topic, late_ack),
        *([ParquetFiles.live(config.archive_output, config.window_seconds, wall_clock=late_ack,
                             lineage=worker.lineage, explain=worker.explain > 0,
                             shadow=shadow is not None, shadow_lineage=shadow.lineage if shadow else None)]
          if config.archive_output else []),
    ]
