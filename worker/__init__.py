"""Beam, but no I/O: batches of rows in → prediction tables + dead letters out.

One core (`core.classify`) behind one RunInference model handler (`handler`) serves
both jobs; each job has a thin edge that forms its batches: the nightly job from
Arrow tables (`tables.ClassifyTables`), the live job from Pub/Sub records
(`transform.ClassifyComplaints`). `local.LocalClassifier` gives the same verdicts
without a pipeline (`predict`, the page, `compare`). Never imports `pipelines` and
never opens a file or a topic.
"""
