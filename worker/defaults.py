"""Batching defaults, importable without TensorFlow (the CLI reads them for --help).

Chosen by measurement on a 2-core machine (benchmarks/throughput.py): the BiLSTM's
per-row cost flattens out from about 256 rows per call, and RunInference's
adaptive batching grows from the minimum towards the maximum.
"""

METRICS_NAMESPACE = "complaints"  # Beam counters/distributions of the worker and RunInference

DEFAULT_MIN_BATCH_SIZE = 32  # the live job: a batch is what a poll brings, down to a few messages
DEFAULT_MAX_BATCH_SIZE = 512
# The nightly job classifies a table at a time (`worker.tables`) in batches of one size, one XLA
# program to compile; bigger batches run the BiLSTM faster, flattening out above 1,024 rows
# (reference model, XLA: 3,542 rows/s at 512, 3,756 at 1,024, 3,821 at 2,048 with a longer compile).
DEFAULT_NIGHTLY_BATCH_SIZE = 1024
# Below this many rows the XLA compile (about half a second more than graph mode's preparation) costs
# more than it saves (`--xla auto`): reference model, `label` at 10,000 rows took 5.3–5.7 s with XLA and
# 5.3 s without, at 20,000 rows 8.1 s with and 9.1 s without.
XLA_MIN_ROWS = 15_000
