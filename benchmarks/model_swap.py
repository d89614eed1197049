"""Seconds from a complete model directory appearing to the first prediction that carries its version.

Runs `complaints stream --watch-models DIR/*` against Google's Pub/Sub emulator with a
steady trickle of messages, then writes models A and B alternately into new directories
under DIR (metadata.json last, as `complaints train` does), each after a random pause,
and times each swap. Prints a table and writes JSON.

    python -m benchmarks.model_swap --swaps 5 --interval 10 --out benchmarks/results/model_swap.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from model import artifact
from model.sample import generate
from pipelines.app import pubsub_admin

PROJECT = "swap-bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-a", help="default: train a small model on sample data")
    parser.add_argument("--model-b", help="same labels as A, other weights (default: train one)")
    parser.add_argument("--swaps", type=int, default=5)
    parser.add_argument("--interval", type=int, default=10, help="--watch-interval-secs of the job")
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second while swapping")
    parser.add_argument("--out", default="benchmarks/results/model_swap.json")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="swap-")
    sources = [args.model_a or _train(work, "a", seed=1), args.model_b or _train(work, "b", seed=2)]
    versions = [artifact.read_metadata(m)[1]["model_version"] for m in sources]
    models = os.path.join(work, "models")
    artifact.copy_directory(sources[0], os.path.join(models, "v0"))
    latencies = []
    with pubsub_admin.emulator(PROJECT) as host:
        os.environ["PUBSUB_EMULATOR_HOST"] = host
        in_topic, in_sub = pubsub_admin.create_topic_with_subscription(PROJECT, "swap-in", "swap-in-sub")
        out_topic, out_sub = pubsub_admin.create_topic_with_subscription(PROJECT, "swap-out", "swap-out-sub")
        job = subprocess.Popen([sys.executable, "-m", "pipelines", "stream", "--model", os.path.join(models, "v0"),
                                "--subscription", in_sub, "--output-topic", out_topic, "--watch-models",
                                os.path.join(models, "*"), "--watch-interval-secs", str(args.interval)],
                               start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        arrivals: list[tuple[float, str]] = []
        stop = threading.Event()
        threading.Thread(target=_publish, args=(in_topic, args.rate, stop), daemon=True).start()
        threading.Thread(target=_receive, args=(out_sub, arrivals, stop), daemon=True).start()
        try:
            _wait(lambda: arrivals, 180, "the job labelled nothing within 180 s")
            pause = random.Random(7)
            for i in range(1, args.swaps + 1):
                # Models land at any moment, not in step with the job's last look.
                time.sleep(pause.uniform(0, args.interval))
                appeared = time.time()
                artifact.copy_directory(sources[i % 2], os.path.join(models, f"v{i}"))
                appeared = (appeared + time.time()) / 2  # metadata.json is written at the end of the copy
                _wait(lambda v=versions[i % 2], t=appeared: any(a >= t and m == v for a, m in arrivals),
                      args.interval + 120, f"swap {i} did not happen")
                first = min(a for a, m in arrivals if a >= appeared and m == versions[i % 2])
                latencies.append(round(first - appeared, 2))
                print(f"swap {i}: {latencies[-1]:.2f} s")
        finally:
            stop.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(job.pid, signal.SIGTERM)
            job.wait(timeout=60)
    report = {"interval_secs": args.interval, "rate_per_s": args.rate, "swaps": len(latencies),
              "latencies_s": latencies, "median_s": statistics.median(latencies), "max_s": max(latencies)}
    print(f"{'interval s':>10} {'swaps':>6} {'median s':>9} {'max s':>7}")
    print(f"{args.interval:>10} {len(latencies):>6} {report['median_s']:>9.2f} {report['max_s']:>7.2f}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)


def _train(work: str, name: str, seed: int) -> str:
    from model.architecture import ArchitectureConfig
    from model.data import LabelledData
    from model.train import TrainConfig, train

    frame = generate(4000, seed=seed)
    out = os.path.join(work, name)
    data = LabelledData(frame["text"].to_numpy(dtype=object), frame["category"].to_numpy(dtype=object), 0, [])
    train(data, out, ArchitectureConfig(max_tokens=20_000, lstm_units=32), TrainConfig(epochs=2, seed=seed, verbose=0))
    return out


def _publish(topic: str, rate: float, stop: threading.Event) -> None:
    texts = generate(500, seed=3, labelled=False)["text"].tolist()
    i = 0
    while not stop.is_set():
        pubsub_admin.publish(topic, [(json.dumps({"id": f"m{i}", "text": texts[i % len(texts)]}).encode(), {})])
        i += 1
        time.sleep(1 / rate)


def _receive(subscription: str, arrivals: list, stop: threading.Event) -> None:
    while not stop.is_set():
        for message in pubsub_admin.pull(subscription, max_messages=1000, timeout=2):
            arrivals.append((time.time(), dict(message.attributes)["model_version"]))


def _wait(condition, seconds: float, failure: str) -> None:
    deadline = time.time() + seconds
    while not condition():
        if time.time() > deadline:
            raise SystemExit(failure)
        time.sleep(0.05)


if __name__ == "__main__":
    main()
