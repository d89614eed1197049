"""Beam, but no I/O: records in → predictions + dead letters out.

The one transform both jobs share (`ClassifyComplaints`), so batch and stream give
identical predictions. Never imports `pipelines` and never opens a file or a topic.
"""
