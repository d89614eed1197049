"""Batching defaults, importable without TensorFlow (the CLI reads them for --help).

Chosen by measurement on a 2-core machine (benchmarks/throughput.py): the BiLSTM's
per-row cost flattens out from about 256 rows per call, and RunInference's
adaptive batching grows from the minimum towards the maximum.
"""

# The serving function's own (model/config.py): the live job's batch is what a poll brings, down to a few
# messages, and at most the size past which the BiLSTM's per-row cost no longer falls; the text bound.
from model.config import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MIN_BATCH_SIZE, MAX_TEXT_CHARS  # noqa: F401

METRICS_NAMESPACE = "complaints"  # Beam counters/distributions of the worker and RunInference

LIVE_MAX_BATCH_DURATION_SECS = 1  # the live job: the longest a message waits for its batch to fill
# The nightly job classifies a table at a time (`worker.tables`) in batches of one size, one XLA
# program to compile; bigger batches run the BiLSTM faster, flattening out above 1,024 rows, while a
# bigger program takes longer to compile (benchmarks/RESULTS.md, the batch-size rounds).
DEFAULT_NIGHTLY_BATCH_SIZE = 1024
# Below this many rows the XLA compile (about half a second more than graph mode's preparation) costs
# more than it saves (`--xla auto`); measured with `label` on the reference model at 10,000 and 20,000
# rows (benchmarks/RESULTS.md, the batch-size rounds).
XLA_MIN_ROWS = 15_000
