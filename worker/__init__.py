"""Beam, but no I/O: records or Arrow tables in → predictions + dead letters out.

The live job classifies a record at a time (`ClassifyComplaints`), the nightly job
an Arrow table at a time (`ClassifyTables`). Both validate with the same helpers,
serve through the same model handler and build predictions from the same fields,
so batch and stream give identical predictions (tests/test_tables.py). Never
imports `pipelines` and never opens a file or a topic.
"""
