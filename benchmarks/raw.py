"""The raw variants of `benchmarks.throughput`: the serving function and the usual alternatives on in-memory
batches, in this process, and what a fresh process needs to load the model and compile it (`bench_prepare`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, count: int) -> float:
    started = time.perf_counter()
    fn()
    return count / (time.perf_counter() - started)


def bench_raw(model_dir: str, texts: list[str], xla: bool, precision: str = "fp32",
              sizes: tuple[int, ...] = (64, 256, 512, 1024, 2048)) -> tuple[float, dict]:
    """Steady-state throughput of the worker's serving function: every batch size traced (and, with
    XLA, compiled) before timing, so this is the fastest the model runs here."""
    from model import artifact
    from model.serving import ServingModel

    serving = ServingModel(artifact.load(model_dir), xla=xla, precision=precision)
    by_size = {}
    sample = texts[: min(len(texts), 20_000)]
    for size in sizes:
        serving(sample[:size])  # trace, and compile this padded size
        def run(size=size):
            for i in range(0, len(sample), size):
                serving(sample[i : i + size])
        by_size[size] = timed(run, len(sample))
    best = max(by_size, key=by_size.get)

    def run_all():
        for i in range(0, len(texts), best):
            serving(texts[i : i + best])
    return timed(run_all, len(texts)), {"best_batch_size": best, "by_batch_size": by_size, "path": serving.path}


def bench_openvino(model_dir: str, texts: list[str], precision: str) -> tuple[float | None, str]:
    """The serving function at an OpenVINO precision (openvino-bf16, openvino-f32), batch 1,024."""
    from model import artifact, openvino_core
    from model.serving import ServingModel

    if not openvino_core.available():
        return None, "OpenVINO is not installed"
    serving = ServingModel(artifact.load(model_dir), precision=precision)
    serving(texts[:1024])

    def run():
        for i in range(0, len(texts), 1024):
            serving(texts[i : i + 1024])
    return timed(run, len(texts)), f"TF vectoriser + OpenVINO at {serving.openvino.hint}, batch size 1024"


def bench_keras_predict(model_dir: str, texts: list[str]) -> float:
    import tensorflow as tf

    from model import artifact

    model = artifact.load(model_dir).model
    model.predict(tf.constant(texts[:32]), verbose=0)
    return timed(lambda: model.predict(tf.constant(texts), verbose=0), len(texts))


def bench_per_text(model_dir: str, texts: list[str]) -> float:
    import tensorflow as tf

    from model import artifact

    model = artifact.load(model_dir).model
    sample = texts[:500]
    model.predict(tf.constant(sample[:1]), verbose=0)
    return timed(lambda: [model.predict(tf.constant([t]), verbose=0) for t in sample], len(sample))


def _pkg_resources_shim() -> None:
    """tensorflow_hub 0.16.1, its last release, imports `pkg_resources` (for one version check), which
    setuptools no longer ships (since 81): Beam's TensorFlow handler imports tensorflow_hub, so without
    this the stock handler cannot even be imported. The shim gives it `parse_version`, nothing else."""
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        import types

        from packaging.version import parse

        sys.modules["pkg_resources"] = types.SimpleNamespace(parse_version=parse)


def bench_stock_runinference(model_dir: str, texts: list[str]) -> tuple[float | None, str]:
    """Beam's own TFModelHandlerTensor on the artifact (`pip install -e '.[bench]'`): what a Beam user would
    try first. It gets one string tensor per element and stacks them into batches of Beam's choosing."""
    _pkg_resources_shim()
    try:
        import apache_beam as beam
        import tensorflow as tf
        from apache_beam.ml.inference.base import RunInference
        from apache_beam.ml.inference.tensorflow_inference import TFModelHandlerTensor
    except ImportError as exc:
        return None, f"cannot import Beam's TensorFlow handler: {exc}"
    import model.text  # noqa: F401 (registers the standardisation for Keras loading)

    handler = TFModelHandlerTensor(model_uri=os.path.join(model_dir, "model.keras"))
    started = time.perf_counter()
    try:
        with beam.Pipeline(runner="FnApiRunner") as p:
            _ = (p | beam.Create(texts) | beam.Map(lambda t: tf.constant(t))
                 | RunInference(handler) | beam.combiners.Count.Globally())
    except Exception as exc:  # noqa: BLE001 (report why the stock handler cannot serve it)
        return None, f"failed: {str(exc).strip().splitlines()[-1][:200]}"
    return len(texts) / (time.perf_counter() - started), "ok"


PREPARE = """
import json, sys, time
from model import artifact
from model.serving import ServingModel
started = time.perf_counter()
serving = ServingModel(artifact.load(sys.argv[1]), xla=sys.argv[2] == "on", sizes=(int(sys.argv[3]),))
serving.warm_up()
print(json.dumps({"seconds": time.perf_counter() - started, "path": serving.path}))
"""


def bench_prepare(model_dir: str, xla: bool) -> float:
    """Seconds from loading the artifact to a served batch size compiled, in a fresh process, imports excluded."""
    from worker.defaults import DEFAULT_NIGHTLY_BATCH_SIZE

    command = [sys.executable, "-c", PREPARE, model_dir, "on" if xla else "off", str(DEFAULT_NIGHTLY_BATCH_SIZE)]
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def raw_variants(model_dir: str, texts: list[str], want, add) -> tuple[dict, dict]:
    """The serving function and the usual alternatives on in-memory batches; (raw's details, raw-xla's)."""
    raw_detail = xla_detail = {}
    if want("raw"):
        raw, raw_detail = bench_raw(model_dir, texts, xla=False)
        add("raw", raw, peak_rss_mb(), f"graph mode, batch size {raw_detail['best_batch_size']}")
    if want("raw-xla"):
        raw_xla, xla_detail = bench_raw(model_dir, texts, xla=True)
        add("raw-xla", raw_xla, peak_rss_mb(), f"{xla_detail['path']}, batch size {xla_detail['best_batch_size']}")
    if want("raw-bf16"):
        rate, detail = bench_raw(model_dir, texts[:20_000], xla=False, precision="bf16", sizes=(1024,))
        add("raw-bf16", rate, peak_rss_mb(), f"{detail['path']}, batch size 1024, first {min(len(texts), 20_000):,}")
    for name in ("raw-openvino-bf16", "raw-openvino-f32"):
        if want(name):
            rate, detail = bench_openvino(model_dir, texts, name.removeprefix("raw-"))
            add(name, rate, peak_rss_mb(), detail)
    if want("keras-predict"):
        add("keras-predict", bench_keras_predict(model_dir, texts), peak_rss_mb(), "batch size 32 (Keras default)")
    if want("per-text"):
        add("per-text", bench_per_text(model_dir, texts), peak_rss_mb(), "sample of 500")
    if want("stock-runinference"):
        rate, note = bench_stock_runinference(model_dir, texts[:2000])
        add("stock-runinference", rate, None, note)
    return raw_detail, xla_detail
