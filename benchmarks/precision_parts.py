"""Where a batch's time goes at each precision, and the ceiling that sets for `label --precision auto` / fp32.

A lower precision speeds up only the numeric core. The nightly job also standardises
and vectorises every text in TensorFlow, decodes the probabilities and builds Arrow
tables, at the same cost whatever the precision. So the job can gain at most

    ceiling = classify(fp32) / (classify(fp32) - core(fp32) + core(lower))

per row, before the fixed costs (load, compile, auto's timing) and the Parquet I/O
shrink it further. Every part is timed here on the same batches of real texts,
interleaved over rounds, medians reported:

    core        the numeric core alone on the batch's token ids (XLA FP32, TF bf16 graph, OpenVINO bf16 and f32)
    serve       the serving call: texts → probabilities, token and out-of-vocabulary counts
    classify    the classification core: serve + decoding into the prediction table (+ word counts)

    python -m benchmarks.precision_parts --model MODEL --source ../shared/data/D/test.parquet \\
        --out benchmarks/results/precision_parts.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from model.precision import cpu_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--source", help="Parquet file of texts (default: generated complaints)")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/precision_parts.json")
    args = parser.parse_args()

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import tensorflow as tf

    from model import artifact, compiled, precision
    from model.sample import generate
    from model.serving import ServingModel
    from worker import core, record_columns

    loaded = artifact.load(args.model)
    rows = args.batch * args.batches
    texts = (pq.read_table(args.source, columns=["text"]).column("text").to_pylist() if args.source
             else generate(rows, seed=5, labelled=False)["text"].tolist())
    texts = [t for t in texts if t]
    texts = (texts * -(-rows // len(texts)))[:rows]
    batches = [texts[i * args.batch:(i + 1) * args.batch] for i in range(args.batches)]
    ids = [compiled.split(loaded.model).vectorizer(tf.constant(b)) for b in batches]
    decoding = core.Decoding(3, 0.5, args.batch, record_columns.schema(), word_counts=True)
    row_ids = [f"r{i}" for i in range(args.batch)]

    served = [precision.FP32, precision.BF16]
    served += [at for at in precision.OPENVINO if precision.unavailable(loaded.model, at) is None]
    models = {at: ServingModel(loaded, precision=at, sizes=(args.batch,)) for at in served}
    xla_core = compiled.split(loaded.model).core
    cores = {precision.FP32: tf.function(lambda x: xla_core(x, training=False), jit_compile=True)}
    bf16_core = compiled.split(precision.converted(loaded.model, precision.BF16)).core
    cores[precision.BF16] = tf.function(lambda x: bf16_core(x, training=False))
    for at in precision.OPENVINO:
        if at in models:
            cores[at] = lambda x, ov=models[at].openvino: ov(x.numpy())

    parts = {}
    for at in served:
        parts[f"core {at}"] = lambda at=at: [np.asarray(cores[at](x)) for x in ids]
        parts[f"serve {at}"] = lambda at=at: [models[at](b) for b in batches]
        parts[f"classify {at}"] = lambda at=at: [core.classify(models[at], core.Rows(row_ids, b, pa.table({})),
                                                              decoding) for b in batches]
    for run in parts.values():
        run()  # compile, trace, first-call costs
    seconds: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(args.rounds):
        for name, run in parts.items():
            started = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - started)
    per_row = {name: statistics.median(s) / rows * 1e6 for name, s in seconds.items()}

    _report(args, texts[:rows], served, per_row)


def _report(args, texts: list[str], served: list[str], per_row: dict[str, float]) -> None:
    """Each part's time per row, and what swapping FP32's core for a lower precision's could gain the job."""
    from model import openvino_core, precision

    rows = len(texts)
    fp32 = precision.FP32
    ceilings = {at: per_row[f"classify {fp32}"] / (per_row[f"classify {fp32}"] - per_row[f"core {fp32}"]
                                                    + per_row[f"core {at}"]) for at in served if at != fp32}
    measured = {at: per_row[f"classify {fp32}"] / per_row[f"classify {at}"] for at in served if at != fp32}
    features = precision.isa_features()
    mean_chars = sum(map(len, texts)) / rows
    print(f"{rows:,} texts ({mean_chars:,.0f} characters on average) in batches of {args.batch}, {args.rounds} "
          f"rounds; {os.cpu_count()} cores, {cpu_model()} ({', '.join(features) or 'no bf16/VNNI features'})")
    print(f"{'part':<24} {'µs per row':>11} {'rows/s':>9}")
    for name, value in per_row.items():
        print(f"{name:<24} {value:>11,.1f} {1e6 / value:>9,.0f}")
    print("job ceilings (classify fp32 with its core swapped): "
          + ", ".join(f"{at} {c:.2f}×" for at, c in ceilings.items()))
    print("classify fp32 / classify lower, measured: " + ", ".join(f"{at} {m:.2f}×" for at, m in measured.items()))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"model": args.model, "source": args.source, "rows": rows, "mean_chars": mean_chars,
                   "batch": args.batch, "rounds": args.rounds, "us_per_row": per_row, "ceilings": ceilings,
                   "classify_ratios": measured, "openvino": openvino_core.available(),
                   "machine": {"cores": os.cpu_count(), "cpu": cpu_model(), "isa_features": features}}, f, indent=2)


if __name__ == "__main__":
    main()
