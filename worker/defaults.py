"""Batching defaults, importable without TensorFlow (the CLI reads them for --help).

Chosen by measurement on a 2-core machine (benchmarks/throughput.py): the BiLSTM's
per-row cost flattens out from about 256 rows per call, and RunInference's
adaptive batching grows from the minimum towards the maximum.
"""

METRICS_NAMESPACE = "complaints"  # Beam counters/distributions of the worker and RunInference

DEFAULT_MIN_BATCH_SIZE = 32
DEFAULT_MAX_BATCH_SIZE = 512
