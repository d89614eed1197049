"""Beam, but none of a job's I/O: batches of rows in → prediction tables + dead letters out.

One core (`core.classify`) behind one RunInference model handler (`handler`) serves
both jobs; each job has a thin edge that forms its batches: the nightly job from
Arrow tables (`tables.ClassifyTables`), the live job from Pub/Sub records
(`transform.ClassifyComplaints`). `local.LocalClassifier` gives the same verdicts
without a pipeline (`predict`, the page, `compare`). Never imports `pipelines`, and
never reads an archive, writes an output or touches a topic: the files it opens are
the model directory (`slot`, through `model.artifact`) and the machine's precision
cache (`precision_cache`).
"""
