"""The live job on the local runner: the late-ack read next to Beam's local reader, in one run.

Starts Google's Pub/Sub emulator, then for each read runs the job in a child process
(so each has its own peak RSS: its `VmHWM`, since `ru_maxrss` would carry this process's
peak from training the model into every child) against its own topics, in two phases:

    backlog  publish N messages at once, measure how fast the job drains them
    steady   publish at --rate per second for --seconds, measure publish → output latency

Batch sizes come from an instrumented model handler in the child. Prints a table and
writes JSON.

    python -m benchmarks.stream_latency --out benchmarks/results/stream_latency.json

`late-ack-estimated` is the late-ack read with its polls split by Beam's batch-size
estimator (the alternative to `pipelines.live.job.WHOLE_POLLS`), for the ratio.
`late-ack-blackhole` is the late-ack read following `--watch-models models:/…@champion`
every second on a registry that accepts connections and never answers (MLflow's own
timeouts and retries): the look runs beside the job, so its latency should be
late-ack's. `late-ack-shadow` is the late-ack read with a challenger (`--shadow`, a
second model trained on other rows) scoring every message into the archive: its cost.

    python -m benchmarks.stream_latency --reads late-ack,late-ack-blackhole,late-ack-shadow \
        --out benchmarks/results/stream_latency_watch_shadow.json

Beam's local reader pulls 10 messages per bundle and blocks in a 30 s pull when traffic
stops, so its backlog is smaller (--beam-backlog) and unmeasured filler messages keep
its traffic going until every measured message is out; its steady phase stops waiting
--grace seconds after the last publish.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from model.sample import generate
from pipelines.app import pubsub_admin
from worker.handler import ComplaintModelHandler
from worker.transform import WorkerConfig

PROJECT = "latency-bench"
# late-ack-estimated: the late-ack read with Beam's batch-size estimator splitting its polls
READS = ("late-ack", "late-ack-estimated", "beam")
VARIANTS = ("late-ack-blackhole", "late-ack-shadow")  # on request (--reads): see the module's docstring


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="Model directory (default: train a reference-sized one on sample data)")
    parser.add_argument("--small", action="store_true", help="Train a tiny model instead (smoke runs)")
    parser.add_argument("--reads", default=",".join(READS))
    parser.add_argument("--backlog", type=int, default=20_000, help="Backlog drained by the late-ack read")
    parser.add_argument("--beam-backlog", type=int, default=1_000, help="Backlog drained by Beam's local reader")
    parser.add_argument("--rate", type=float, default=200.0, help="Messages per second in the steady phase")
    parser.add_argument("--seconds", type=float, default=30.0, help="Length of the steady phase")
    parser.add_argument("--grace", type=float, default=60.0, help="Wait this long after the last publish at most")
    parser.add_argument("--out", default="benchmarks/results/stream_latency.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # a JSON file: run one read, write its figures there
    parser.add_argument("--read", help=argparse.SUPPRESS)
    parser.add_argument("--challenger", help="late-ack-shadow's second model (default: trained here on other rows)")
    args = parser.parse_args()
    if args.child:
        return _child(args)

    model_dir = args.model or _model(args.small)
    challenger = args.challenger or (_model(args.small, extra_rows=1000) if "late-ack-shadow" in args.reads else "")
    results = []
    with pubsub_admin.emulator(PROJECT) as host:
        for read in args.reads.split(","):
            with tempfile.NamedTemporaryFile(suffix=".json") as figures:
                subprocess.run([sys.executable, "-m", "benchmarks.stream_latency", "--child", figures.name,
                                "--read", read, "--model", model_dir, "--backlog", str(args.backlog),
                                "--beam-backlog", str(args.beam_backlog), "--rate", str(args.rate),
                                "--seconds", str(args.seconds), "--grace", str(args.grace),
                                "--challenger", challenger],
                               env={**os.environ, "PUBSUB_EMULATOR_HOST": host}, check=True)
                results.append(json.load(open(figures.name)))
    report = {"model": "small" if args.small else ("given" if args.model else "reference-sized"),
              "rate_per_s": args.rate, "seconds": args.seconds, "results": results}
    _print(report)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)


def _model(small: bool, extra_rows: int = 0) -> str:
    """A model trained here; `extra_rows` more rows give other weights (the challenger)."""
    from benchmarks.labelling import build_model

    out = os.path.join(tempfile.mkdtemp(prefix="latency-"), "model")
    build_model(out, rows=(2000 if small else 20_000) + extra_rows, small=small)
    return out


def _print(report: dict) -> None:
    print(f"{'read':>18} {'backlog':>8} {'drained/s':>10} {'backlog batch':>14} {'rate/s':>7} {'sent':>6} "
          f"{'labelled':>9} {'p50 s':>7} {'p95 s':>7} {'steady batch':>13} {'max batch':>10} {'peak RSS MB':>12}")
    for r in report["results"]:
        b, s = r["backlog"], r["steady"]
        print(f"{r['read']:>18} {b['messages']:>8} {b['throughput_per_s']:>10.1f} {b['mean_batch_size']:>14.1f} "
              f"{report['rate_per_s']:>7.0f} {s['messages']:>6} {s['received']:>9} {s['latency_p50_s']:>7.2f} "
              f"{s['latency_p95_s']:>7.2f} {s['mean_batch_size']:>13.1f} "
              f"{max(b['max_batch_size'], s['max_batch_size']):>10} {r['peak_rss_mb']:>12.0f}")


# The child: one read, both phases --------------------------------------------------------------

def _child(args) -> None:
    read = args.read
    in_topic, in_sub = pubsub_admin.create_topic_with_subscription(PROJECT, f"{read}-in", f"{read}-in-sub")
    out_topic, out_sub = pubsub_admin.create_topic_with_subscription(PROJECT, f"{read}-out", f"{read}-out-sub")
    _start_pipeline(read, args.model, in_sub, out_topic, args.challenger)
    receiver = _Receiver(out_sub)
    filler = _Filler(in_topic) if read == "beam" else None
    receiver.expect({"warm-up"})
    pubsub_admin.publish(in_topic, [(json.dumps({"id": "warm-up", "text": "kargo gelmedi"}).encode(), {})])
    receiver.wait(time.time() + 180, filler)  # model load and tracing are not counted

    count = args.beam_backlog if read == "beam" else args.backlog
    texts = generate(max(count, 1000), seed=5, labelled=False)["text"].tolist()
    BATCH_SIZES.clear()
    ids = {f"b{i}" for i in range(count)}
    receiver.expect(ids)
    started = time.time()
    pubsub_admin.publish(in_topic, [(json.dumps({"id": f"b{i}", "text": texts[i % len(texts)]}).encode(), {})
                             for i in range(count)])
    receiver.wait(started + 1800, filler)
    backlog = {"messages": count, "received": len(receiver.seen(ids)),
               "throughput_per_s": round(count / (max(receiver.times[i] for i in ids) - started), 1),
               **_batches()}

    BATCH_SIZES.clear()
    steady_count = int(args.rate * args.seconds)
    ids = {f"s{i}" for i in range(steady_count)}
    receiver.expect(ids)
    sent: dict[str, float] = {}
    from pipelines.plumbing import lease

    api = lease.publisher_api()
    started = time.time()
    for i in range(steady_count):
        time.sleep(max(0.0, started + i / args.rate - time.time()))
        sent[f"s{i}"] = time.time()
        lease.publish(api, in_topic, [(json.dumps({"id": f"s{i}", "text": texts[i % len(texts)]}).encode(),
                                              {})])
    receiver.wait(time.time() + args.grace, filler)
    got = receiver.seen(ids)
    latencies = np.array([receiver.times[k] - sent[k] for k in got]) if got else np.array([np.nan])
    steady = {"messages": steady_count, "received": len(got), "publish_seconds": round(time.time() - started, 1),
              "latency_p50_s": round(float(np.percentile(latencies, 50)), 3),
              "latency_p95_s": round(float(np.percentile(latencies, 95)), 3),
              "latency_max_s": round(float(latencies.max()), 3), **_batches()}
    from benchmarks.labelling import high_water

    figures = {"read": read, "backlog": backlog, "steady": steady,  # this process's own peak, not ru_maxrss's
               "peak_rss_mb": round(high_water(os.getpid()) / 2**20)}
    if read == "late-ack-blackhole":
        figures["registry_connections_unanswered"] = len(_HOLES)
    with open(args.child, "w") as f:
        json.dump(figures, f)
    os._exit(0)  # do not wait for the runner's threads


def _start_pipeline(read: str, model_dir: str, subscription: str, output_topic: str, challenger: str) -> None:
    import dataclasses

    import apache_beam as beam

    from pipelines.live import job
    from pipelines.live.facts import LiveFacts
    from pipelines.live.job import build_stream
    from pipelines.options import StreamConfig, stream_options
    from worker import transform

    transform.ComplaintModelHandler = _CountingHandler  # this child process's live edge builds the counting one
    worker, shadow, archive = WorkerConfig(model_dir, max_batch_duration_secs=1), None, None
    if read == "late-ack-estimated":
        job.WHOLE_POLLS = False
    elif read == "late-ack-blackhole":
        worker = dataclasses.replace(worker, watch_models="models:/complaints@champion", watch_interval_secs=1,
                                     registry_uri=f"http://127.0.0.1:{_black_hole()}")
    elif read == "late-ack-shadow":
        shadow, archive = dataclasses.replace(worker, model_dir=challenger), tempfile.mkdtemp(prefix="archive-")
    read = "beam" if read == "beam" else "late-ack"
    config = StreamConfig(subscription=subscription, output_topic=output_topic, read=read, worker=worker,
                          archive_output=archive, window_seconds=3600)
    options, _ = stream_options([], read)
    p = beam.Pipeline(options=options)
    build_stream(p, config, LiveFacts(config.read, config.worker, shadow))
    if read == "beam":
        p.run()  # the local streaming runner returns at once
    else:  # the FnApiRunner runs the endless read in this thread until stopped
        threading.Thread(target=lambda: p.run().wait_until_finish(), daemon=True).start()


def _black_hole() -> int:
    """A port that accepts connections and never reads or answers them; each one is kept (and counted in
    `_HOLES`), so the figures show that the watch did ask."""
    import socket

    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)

    def accept():
        while True:
            _HOLES.append(hole.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    return hole.getsockname()[1]


_HOLES: list = []  # the black hole's accepted connections


class _Receiver:
    """Pulls the output subscription in a thread and records when each id first arrived."""

    def __init__(self, subscription: str):
        self.subscription = subscription
        self.times: dict[str, float] = {}
        self._expected: set[str] = set()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while True:
            for message in pubsub_admin.pull(self.subscription, max_messages=1000, timeout=5):
                self.times.setdefault(json.loads(message.data)["id"], time.time())

    def expect(self, ids: set[str]) -> None:
        self._expected = ids

    def seen(self, ids: set[str]) -> set[str]:
        return {i for i in ids if i in self.times}

    def wait(self, deadline: float, filler: _Filler | None) -> None:
        while len(self.seen(self._expected)) < len(self._expected) and time.time() < deadline:
            if filler:
                filler.send()
            time.sleep(0.05)


class _Filler:
    """Unmeasured messages, so Beam's local reader does not sit in a 30 s pull holding the last batch."""

    def __init__(self, topic: str):
        self.topic, self.count, self.last = topic, 0, 0.0

    def send(self) -> None:
        if time.time() - self.last >= 0.1:
            pubsub_admin.publish(self.topic, [(json.dumps({"id": f"fill-{self.count}", "text": "kargo"}).encode(), {})])
            self.count, self.last = self.count + 1, time.time()


BATCH_SIZES: list[int] = []  # filled in the child by the instrumented handler below


def _batches() -> dict:
    from benchmarks import stream_latency as module  # where the handler records them (not __main__)

    sizes = list(module.BATCH_SIZES)
    module.BATCH_SIZES.clear()
    if not sizes:
        return {"batches": 0, "mean_batch_size": 0.0, "max_batch_size": 0, "batch_size_histogram": {}}
    edges = [1, 2, 5, 10, 20, 50, 100, 200, 500]
    histogram = Counter(next((f"{lo}-{hi - 1}" for lo, hi in itertools.pairwise(edges) if size < hi),
                             f"{edges[-1]}+") for size in sizes)
    return {"batches": len(sizes), "mean_batch_size": round(float(np.mean(sizes)), 2), "max_batch_size": max(sizes),
            "batch_size_histogram": dict(sorted(histogram.items(), key=lambda kv: int(kv[0].split("-")[0].rstrip(
                "+"))))}


class _CountingHandler(ComplaintModelHandler):
    def run_inference(self, batch, model, inference_args=None):
        # Importable by name: cloudpickle copies __main__'s globals, so a bare global would not do.
        from benchmarks import stream_latency as module

        module.BATCH_SIZES.append(len(batch))
        return super().run_inference(batch, model, inference_args)


if __name__ == "__main__":
    main()
