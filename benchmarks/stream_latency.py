"""Live job latency against the real Pub/Sub emulator at a steady publish rate.

Starts the emulator, runs the streaming job in this process (the local streaming
runner returns at once from `run()`, so RunInference's batch-size metrics can be
read while it runs), publishes complaints at `--rate` per second for `--seconds`,
and measures publish → labelled-output latency from a `sent_at` field each message
carries through the pipeline. Prints a table and writes JSON.

    python -m benchmarks.stream_latency --rate 20 --seconds 30 --out benchmarks/results/stream_latency.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from collections import Counter

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from model.sample import generate
from pipelines import pubsub_admin as admin
from worker.handler import ComplaintModelHandler
from worker.transform import WorkerConfig

PROJECT = "latency-bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="Model directory (default: train a small one on sample data)")
    parser.add_argument("--rate", type=float, default=20.0, help="Messages per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--max-batch-duration-secs", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/stream_latency.json")
    args = parser.parse_args()

    model_dir = args.model or _small_model()
    with admin.emulator(PROJECT) as host:
        os.environ["PUBSUB_EMULATOR_HOST"] = host
        in_topic, in_sub = admin.create_topic_with_subscription(PROJECT, "bench-in", "bench-in-sub")
        out_topic, out_sub = admin.create_topic_with_subscription(PROJECT, "bench-out", "bench-out-sub")
        _start_pipeline(model_dir, in_sub, out_topic, args.max_batch_duration_secs)
        _warm_up(in_topic, out_sub)

        count = int(args.rate * args.seconds)
        texts = generate(count, seed=5, labelled=False)["text"].tolist()
        received: dict[str, float] = {}
        sent: dict[str, float] = {}
        done = threading.Event()
        puller = threading.Thread(target=_pull_until, args=(out_sub, received, count, done), daemon=True)
        puller.start()
        from google.cloud import pubsub_v1

        publisher = pubsub_v1.PublisherClient()
        started = time.time()
        for i, text in enumerate(texts):
            target = started + i / args.rate
            time.sleep(max(0.0, target - time.time()))
            sent[f"m{i}"] = time.time()
            publisher.publish(in_topic, json.dumps({"id": f"m{i}", "text": text}).encode())
        publish_seconds = time.time() - started
        # Keep the traffic steady (unmeasured fillers) until every measured message is out:
        # when traffic stops, the local reader blocks in a 30 s pull and holds the last batch.
        filler = 0
        deadline = time.time() + 120
        while not done.is_set() and time.time() < deadline:
            publisher.publish(in_topic, json.dumps({"id": f"fill-{filler}", "text": texts[filler % count]}).encode())
            filler += 1
            time.sleep(1.0 / args.rate)
        finished = max(received.values()) if received else time.time()
        batches = _batch_sizes()
        latencies = np.array([received[k] - sent[k] for k in received if k in sent])
        report = {
            "rate_per_s": args.rate,
            "messages": count,
            "received": len(received),
            "publish_seconds": round(publish_seconds, 2),
            "throughput_per_s": round(len(received) / (finished - started), 1),
            "latency_p50_s": round(float(np.percentile(latencies, 50)), 3),
            "latency_p95_s": round(float(np.percentile(latencies, 95)), 3),
            "latency_max_s": round(float(latencies.max()), 3),
            "max_batch_duration_secs": args.max_batch_duration_secs,
            **batches,
        }
    print(f"{'rate/s':>7} {'messages':>9} {'received':>9} {'throughput/s':>13} {'p50 s':>7} {'p95 s':>7} "
          f"{'batches':>8} {'mean batch':>11} {'max batch':>10}")
    print(f"{report['rate_per_s']:>7.0f} {report['messages']:>9} {report['received']:>9} "
          f"{report['throughput_per_s']:>13.1f} {report['latency_p50_s']:>7.2f} {report['latency_p95_s']:>7.2f} "
          f"{report['batches']:>8} {report['mean_batch_size']:>11.1f} {report['max_batch_size']:>10}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    os._exit(0)  # do not wait for the streaming runner's threads


def _small_model() -> str:
    from model.architecture import ArchitectureConfig
    from model.data import LabelledData
    from model.train import TrainConfig, train

    frame = generate(4000, seed=1)
    out = os.path.join(tempfile.mkdtemp(prefix="latency-"), "model")
    data = LabelledData(frame["text"].to_numpy(dtype=object), frame["category"].to_numpy(dtype=object), 0, [])
    train(data, out, ArchitectureConfig(max_tokens=20_000, lstm_units=32), TrainConfig(epochs=2, verbose=0))
    return out


def _start_pipeline(model_dir: str, subscription: str, output_topic: str, max_batch_duration_secs: int):
    import apache_beam as beam

    from pipelines.options import StreamConfig, beam_options
    from pipelines.stream import build_stream
    config = StreamConfig(subscription=subscription, output_topic=output_topic,
                          worker=_CountingConfig(model_dir, max_batch_duration_secs=max_batch_duration_secs))
    p = beam.Pipeline(options=beam_options([], streaming=True))
    build_stream(p, config)
    return p.run()  # the local streaming runner returns at once


def _warm_up(in_topic: str, out_sub: str) -> None:
    """One message through, so model loading and tracing are not counted as latency."""
    admin.publish(in_topic, [(json.dumps({"id": "warm-up", "text": "kargo gelmedi"}).encode(), {})])
    deadline = time.time() + 120
    while time.time() < deadline:
        if admin.pull(out_sub, timeout=5):
            return
    raise RuntimeError("the streaming job did not label the warm-up message within 120 s")


def _pull_until(subscription: str, received: dict, count: int, done: threading.Event) -> None:
    while len(received) < count:
        for message in admin.pull(subscription, max_messages=1000, timeout=5):
            record_id = json.loads(message.data)["id"]
            if not record_id.startswith("fill-"):
                received.setdefault(record_id, time.time())
    done.set()


BATCH_SIZES: list[int] = []  # filled in this process by the instrumented handler below


def _batch_sizes() -> dict:
    """The batch sizes the model saw (fillers included), without the warm-up message's batch.

    Read from an instrumented handler: the local streaming runner does not report
    RunInference's own metrics while the job runs.
    """
    from benchmarks import stream_latency as module  # where the handler recorded them (not __main__)

    sizes = module.BATCH_SIZES[1:]
    if not sizes:
        return {"batches": 0, "mean_batch_size": 0.0, "max_batch_size": 0, "batch_size_histogram": {}}
    histogram = dict(sorted(Counter(min(size // 5 * 5, 50) for size in sizes).items()))
    return {"batches": len(sizes), "mean_batch_size": round(float(np.mean(sizes)), 2), "max_batch_size": max(sizes),
            "batch_size_histogram": {f"{k}-{k + 4}" if k < 50 else "50+": v for k, v in histogram.items()}}


class _CountingHandler(ComplaintModelHandler):
    def run_inference(self, batch, model, inference_args=None):
        # Importable by name: cloudpickle copies __main__'s globals, so a bare global would not do.
        from benchmarks import stream_latency as module

        module.BATCH_SIZES.append(len(batch))
        return super().run_inference(batch, model, inference_args)


class _CountingConfig(WorkerConfig):
    def handler(self):
        return _CountingHandler(self.model_dir, max_batch_duration_secs=self.max_batch_duration_secs,
                                min_batch_size=self.min_batch_size, max_batch_size=self.max_batch_size)


if __name__ == "__main__":
    main()
