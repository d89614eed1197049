"""The live job's room: Pub/Sub in, each message answered before it is acknowledged.

- `job`: the streaming pipeline, its start and its stop;
- `codec`: Pub/Sub messages to worker records and predictions back to messages;
- `lease`, `lease_settings`: pulling in bulk and holding each lease until its output is
  confirmed (what happens when a lease expires);
- `local_read`: the late-acknowledging read of local runners;
- `metrics`: `/metrics` and `/healthz`.

The Pub/Sub sink and its publish confirmation live with the other sinks
(`pipelines.sinks.pubsub_topics`, `pipelines.sinks.pubsub_publish`).
"""
