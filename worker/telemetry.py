"""The process's own counters for an operator's scraper (Prometheus), beside Beam's metrics.

Beam's metrics reach the runner (Dataflow's console), and a local job's only at its
end. The live job on a local runner is one long-lived process, so it can also answer
a scraper while it runs (`pipelines.live.metrics`). These are that process's
counters; the code that does the thing counts it, once. Importing this module costs
nothing else: prometheus_client is pure Python.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from model import precision

REGISTRY = CollectorRegistry(auto_describe=True)

ANSWERS = Counter("complaints_answers", "Messages answered: outputs Pub/Sub confirmed (or dead letters with no "
                  "topic, acknowledged as handled), by kind and dead-letter reason", ["kind", "reason"],
                  registry=REGISTRY)
PUBLISH_RETRIES = Counter("complaints_publish_retries", "Transient errors of publish requests (each request is tried "
                          "again while its retry time lasts)", registry=REGISTRY)
PUBLISH_REJECTED = Counter("complaints_publish_rejected", "Outputs Pub/Sub refused (InvalidArgument), answered with "
                           "a publish_rejected dead letter", registry=REGISTRY)
ANSWERS_DROPPED = Counter("complaints_answers_dropped", "Refused outputs whose minimal dead letter was refused too",
                          registry=REGISTRY)
MODEL_SWAPS = Counter("complaints_model_swaps", "Newer models taken into service without a restart",
                      registry=REGISTRY)
MODEL_REFUSED = Counter("complaints_model_refused", "Candidate models refused (they do not load, or do not fit)",
                        registry=REGISTRY)
BATCH_LATENCY = Histogram("complaints_batch_latency_seconds", "Model time per batch",
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=REGISTRY)
BATCH_ROWS = Histogram("complaints_batch_rows", "Rows per model batch (full batches under a backlog, small ones "
                       "when traffic is quiet)", buckets=(1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048),
                       registry=REGISTRY)
SERVED_PRECISION = Gauge("complaints_served_precision", "1 for the precision the serving model runs at, 0 for the "
                         "others", ["precision"], registry=REGISTRY)
PRECISION_RATE = Gauge("complaints_precision_rows_per_second", "Rows per second each candidate precision reached "
                       "when --precision auto measured them at load", ["precision"], registry=REGISTRY)

SERVED_MODEL = Gauge("complaints_served_model", "1 for the model serving now, with where it came from (registry, "
                     "name, version and alias for models:/ models; empty for a directory)",
                     ["model_version", "registry", "name", "version", "alias"], registry=REGISTRY)
REGISTRY_UNREACHABLE = Counter("complaints_registry_unreachable", "Polls of --watch-models models:/NAME@ALIAS the "
                               "registry did not answer (the current model kept serving)", registry=REGISTRY)


def served_model(model_version: str, lineage: dict | None) -> None:
    """The model taken into service, with its registry lineage (the live job's metrics)."""
    lineage = lineage or {}
    SERVED_MODEL.clear()
    SERVED_MODEL.labels(model_version, lineage.get("registry", ""), lineage.get("name", ""),
                        lineage.get("version", ""), lineage.get("alias") or "").set(1)


def served_precision(chosen: str, rates: dict[str, float] | None) -> None:
    """What the last model taken into service runs at, and what auto measured (the live job's metrics)."""
    for name in precision.PRECISIONS:
        SERVED_PRECISION.labels(name).set(1 if name == chosen else 0)
    for name, rate in (rates or {}).items():
        PRECISION_RATE.labels(name).set(rate)
