"""The floor under the jobs: what both jobs and their sinks stand on, and which imports nothing above it.

The staged commit, its journal and the output's hold (`commit`, `journal`, `hold`), a
night's identity (`night`), the Pub/Sub codec and the local read's lease (`codec`,
`lease`, `lease_settings`), and the BigQuery client (`bigquery`). Nothing here imports
a sink, a job or the command line (`.importlinter` holds the floors as contracts).
"""
