"""Which sinks a night writes to, from its config: the one place that reads a BatchConfig for the sinks."""

from __future__ import annotations

from pipelines.config import BatchConfig
from pipelines.nightly.facts import RunFacts
from pipelines.plumbing.bigquery import TableRef
from pipelines.plumbing.journal import run_id_of
from pipelines.sinks import Sink
from pipelines.sinks.parquet_files import ParquetFiles


def batch_sinks(config: BatchConfig, facts: RunFacts, staging: str) -> list[Sink]:
    """The Parquet files, then (it loads what they stage) the BigQuery tables when asked for."""
    sinks: list[Sink] = [
        ParquetFiles.nightly(facts.output, staging, facts.passthrough_fields, facts.worker.lineage,
                             facts.worker.explain > 0, shadow=facts.shadow is not None,
                             shadow_lineage=facts.shadow.lineage if facts.shadow else None),
    ]
    if config.bigquery_table:
        from pipelines.sinks.bigquery_tables import BigQueryTables, Warehouse

        warehouse = Warehouse(config.bigquery_deadline_secs, config.bigquery_busy_wait_secs,
                              config.bigquery_scratch_dataset, config.bigquery_dead_letter_text)
        sinks.append(BigQueryTables(TableRef.parse(config.bigquery_table), facts.output, run_id_of(staging),
                                    facts.night, facts.passthrough_fields, warehouse))
    return sinks
