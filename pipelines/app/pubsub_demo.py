"""`complaints pubsub-demo`: the live job on a local emulator, start to finish.

Starts the emulator (unless PUBSUB_EMULATOR_HOST points at one), creates the
topics, runs `complaints stream` in a child process, publishes sample complaints
and two broken messages, prints what comes out, and stops everything.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from model.sample import generate
from pipelines.app import pubsub_admin


def run_pubsub_demo(model_dir: str, project: str, count: int, echo: Callable[[str], None] = print,
                    timeout: float = 120.0) -> tuple[int, int]:
    """Returns (labelled, dead-lettered) message counts."""
    existing = os.environ.get("PUBSUB_EMULATOR_HOST")
    with contextlib.ExitStack() as stack:
        host = existing or stack.enter_context(pubsub_admin.emulator(project))
        os.environ["PUBSUB_EMULATOR_HOST"] = host
        echo(f"Pub/Sub emulator at {host}")
        in_topic, in_sub = pubsub_admin.create_topic_with_subscription(project, "complaints", "complaints-worker")
        out_topic, out_sub = pubsub_admin.create_topic_with_subscription(project, "complaints-labelled",
                                                                         "labelled-demo")
        dead_topic, dead_sub = pubsub_admin.create_topic_with_subscription(project, "complaints-dead", "dead-demo")
        command = [sys.executable, "-m", "pipelines", "stream", "--model", model_dir, "--subscription", in_sub,
                   "--output-topic", out_topic, "--dead-letter-topic", dead_topic]
        echo("$ complaints " + " ".join(command[3:]))
        worker = subprocess.Popen(command, env=os.environ.copy(), start_new_session=True)
        stack.callback(_stop, worker)
        texts = generate(count, seed=2024, labelled=False)["text"].tolist()
        messages = [(json.dumps({"id": f"demo-{i}", "text": t}, ensure_ascii=False).encode(), {})
                    for i, t in enumerate(texts)]
        messages += [(b'{"id": "broken", "text": ', {}), (b"\xff\xfe", {"id": "binary"})]
        pubsub_admin.publish(in_topic, messages)
        echo(f"published {len(messages)} messages to {in_topic}")
        labelled = dead = 0
        deadline = time.monotonic() + timeout
        while (labelled < count or dead < 2) and time.monotonic() < deadline:
            for message in pubsub_admin.pull(out_sub):
                labelled += 1
                record = json.loads(message.data)
                echo(f"  {record['id']:>8}  {record['label']:<26} {record['confidence']:.2f}"
                     f"{'  needs review' if record['needs_review'] else ''}")
            for message in pubsub_admin.pull(dead_sub):
                dead += 1
                letter = json.loads(message.data)
                echo(f"  dead letter {letter['id']}: {letter['reason']} ({letter['detail']})")
            if worker.poll() is not None:
                break
        echo(f"{labelled} labelled, {dead} dead-lettered")
        return labelled, dead


def _stop(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
