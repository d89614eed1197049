"""Batching defaults, importable without TensorFlow (the CLI reads them for --help).

Chosen by measurement on a 2-core machine (benchmarks/throughput.py): the BiLSTM's
per-row cost flattens out from about 256 rows per call, and RunInference's
adaptive batching grows from the minimum towards the maximum.
"""

METRICS_NAMESPACE = "complaints"  # Beam counters/distributions of the worker and RunInference

DEFAULT_MIN_BATCH_SIZE = 32  # the live job: a batch is what a poll brings, down to a few messages
DEFAULT_MAX_BATCH_SIZE = 512
# The nightly job batches at the maximum from the first batch: RunInference's adaptive
# batcher otherwise ramps up slowly and keeps batches small (20,000 rows: 9.9 s at
# 512–512 against 13.3 s at 32–512), and one batch size is one XLA program to compile.
DEFAULT_NIGHTLY_MIN_BATCH_SIZE = DEFAULT_MAX_BATCH_SIZE
# Below this many rows the XLA compile (about a second) costs more than it saves (`--xla auto`).
XLA_MIN_ROWS = 50_000
