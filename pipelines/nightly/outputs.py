"""Which sinks a night writes to, from its config: the one place that reads a BatchConfig for the sinks."""

from __future__ import annotations

from pipelines.config import BatchConfig
from pipelines.plumbing.bigquery import TableRef
from pipelines.plumbing.journal import run_id_of
from pipelines.plumbing.night import of_run
from pipelines.sinks import Sink
from pipelines.sinks.parquet_files import ParquetFiles


def batch_sinks(config: BatchConfig, staging: str) -> list[Sink]:
    """The Parquet files, then (it loads what they stage) the BigQuery tables when asked for."""
    sinks: list[Sink] = [
        ParquetFiles.nightly(config.output, staging, config.passthrough_fields, config.worker.lineage,
                             config.worker.explain > 0),
    ]
    if config.bigquery_table:
        from pipelines.sinks.bigquery_tables import BigQueryTables, Warehouse

        warehouse = Warehouse(config.bigquery_deadline_secs, config.bigquery_busy_wait_secs,
                              config.bigquery_scratch_dataset, config.bigquery_dead_letter_text)
        night, _ = of_run(config.output, config.night, needed_by="--bigquery-table")
        sinks.append(BigQueryTables(TableRef.parse(config.bigquery_table), config.output, run_id_of(staging),
                                    night, config.passthrough_fields, warehouse))
    return sinks
