"""Batching defaults, importable without TensorFlow (the CLI reads them for --help).

Chosen by measurement on a 2-core machine (benchmarks/throughput.py): the BiLSTM's
per-row cost flattens out from about 256 rows per call, and RunInference's
adaptive batching grows from the minimum towards the maximum.
"""

METRICS_NAMESPACE = "complaints"  # Beam counters/distributions of the worker and RunInference

DEFAULT_MIN_BATCH_SIZE = 32  # the live job: a batch is what a poll brings, down to a few messages
DEFAULT_MAX_BATCH_SIZE = 512
LIVE_MAX_BATCH_DURATION_SECS = 1  # the live job: the longest a message waits for its batch to fill
# The nightly job classifies a table at a time (`worker.tables`) in batches of one size, one XLA
# program to compile; bigger batches run the BiLSTM faster, flattening out above 1,024 rows, while a
# bigger program takes longer to compile (benchmarks/RESULTS.md, issue #18's rounds).
DEFAULT_NIGHTLY_BATCH_SIZE = 1024
# Below this many rows the XLA compile (about half a second more than graph mode's preparation) costs
# more than it saves (`--xla auto`); measured with `label` on the reference model at 10,000 and 20,000
# rows (benchmarks/RESULTS.md, issue #18's rounds).
XLA_MIN_ROWS = 15_000

# The model reads at most this many characters of a text; a longer one is labelled on its start and its
# prediction says `text_truncated`. The BiLSTM reads 40 words and the linear model's n-grams gain nothing
# from more: real complaints here are at most 25,516 characters (CFPB narratives), and a 10 MB text of
# one-letter words would otherwise be split into millions of tokens before either model looks at it.
MAX_TEXT_CHARS = 50_000
