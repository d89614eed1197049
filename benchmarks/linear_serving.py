"""Serving speed of the linear TF-IDF model: sparse counts (the default) next to dense.

Trains the linear model once per variant on the same texts (a ../shared/data
train.parquet when present, else generated complaints) and times the compiled
serving function over the same in-memory batches. Dense count rows are
(batch × vocabulary) floats, which is why the artifact keeps them sparse.

    python -m benchmarks.linear_serving --out benchmarks/results/linear_serving.json
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data",
                      "sikayetvar_belediye_tr", "train.parquet")


def texts_and_labels(source: str | None, rows: int) -> tuple[list[str], np.ndarray, str]:
    from model.data import load_labelled
    from model.sample import generate

    if source and os.path.exists(source):
        data = load_labelled(source)
        texts, labels, name = data.texts.tolist(), data.labels, os.path.basename(os.path.dirname(source))
    else:
        frame = generate(rows, seed=1)
        texts, labels, name = frame["text"].tolist(), frame["category"].to_numpy(dtype=object), "generated"
    label_ids = np.searchsorted(np.array(sorted(set(labels.tolist())), dtype=object), labels)
    return texts, label_ids, name


def measure(texts, label_ids, sparse: bool, batch_sizes: list[int], repeat: int) -> dict:
    import resource

    import tensorflow as tf

    from model.architecture import end_to_end
    from model.linear import LinearConfig, train_linear

    fit = train_linear(LinearConfig(), texts, label_ids, int(label_ids.max()) + 1, seed=0, sparse=sparse)
    network, facts = fit.model, fit.facts
    served = end_to_end(network)
    serve = tf.function(lambda t: served(t, training=False), input_signature=[tf.TensorSpec([None], tf.string)])
    workload = (texts * repeat)[: len(texts) * repeat]
    rates = {}
    for batch in batch_sizes:
        serve(tf.constant(workload[:batch]))  # warm up
        started = time.perf_counter()
        for start in range(0, len(workload), batch):
            serve(tf.constant(workload[start : start + batch]))
        rates[batch] = len(workload) / (time.perf_counter() - started)
    return {"variant": "sparse" if sparse else "dense", "features": facts["features"], "reviews_per_s": rates,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=SHARED, help="A labelled Parquet file; generated complaints if missing")
    parser.add_argument("--rows", type=int, default=3000, help="Generated rows when --data is missing")
    parser.add_argument("--batch-sizes", default="64,256,512")
    parser.add_argument("--repeat", type=int, default=2, help="Passes over the texts per batch size")
    parser.add_argument("--out", default="benchmarks/results/linear_serving.json")
    args = parser.parse_args()
    texts, label_ids, name = texts_and_labels(args.data, args.rows)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    # Dense first: peak RSS is per process and only grows, so the sparse figure is an upper bound.
    results = [measure(texts, label_ids, sparse, batch_sizes, args.repeat) for sparse in (False, True)]
    dense, sparse = results
    print(f"\nlinear model serving, {name}: {len(texts)} texts × {args.repeat}, {sparse['features']:,} features")
    print(f"{'batch':>6} {'dense /s':>10} {'sparse /s':>10} {'sparse/dense':>13}")
    for batch in batch_sizes:
        ratio = sparse["reviews_per_s"][batch] / dense["reviews_per_s"][batch]
        print(f"{batch:>6} {dense['reviews_per_s'][batch]:>10,.0f} {sparse['reviews_per_s'][batch]:>10,.0f} "
              f"{ratio:>13.2f}")
    print(f"peak RSS after dense: {dense['peak_rss_mb']:,} MB; after both: {sparse['peak_rss_mb']:,} MB")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"dataset": name, "texts": len(texts), "repeat": args.repeat, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
