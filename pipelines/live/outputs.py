"""Which sinks the live job writes to, from its config: the one place that reads a StreamConfig for the sinks."""

from __future__ import annotations

from pipelines.config import LATE_ACK, StreamConfig
from pipelines.sinks import Sink
from pipelines.sinks.parquet_files import ParquetFiles
from pipelines.sinks.pubsub_topics import PubSubTopics
from worker.config import WorkerConfig


def stream_sinks(config: StreamConfig, shadow: WorkerConfig | None = None) -> list[Sink]:
    """The output and dead-letter topics, and the windowed Parquet archive when asked for (with the challenger's
    windows when `shadow`)."""
    late_ack = config.read == LATE_ACK
    return [
        PubSubTopics(config.output_topic, config.dead_letter_topic, late_ack),
        *([ParquetFiles.live(config.archive_output, config.window_seconds, wall_clock=late_ack,
                             lineage=config.worker.lineage, explain=config.worker.explain > 0,
                             shadow=shadow is not None, shadow_lineage=shadow.lineage if shadow else None)]
          if config.archive_output else []),
    ]
