"""What `--explain K` costs: rows/s of the classification core without explanations, with the needs_review
rows explained (the jobs' default), and with every row explained, for the BiLSTM and the linear model.

Both models are trained here at the reference size on the same labelled data (or
given with --bilstm/--linear), and every variant classifies the same batches of
texts through the jobs' own core (`worker.core.classify`), interleaved over rounds;
medians and the ratio to no explanation are reported, with the share of rows
explained and the distinct words tried per explained row (the predictions each costs).

    python -m benchmarks.explain --data ../shared/data/sikayetvar_belediye_tr/train.parquet \\
        --texts ../shared/data/sikayetvar_belediye_tr/test.parquet --out benchmarks/results/explain.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from model.precision import cpu_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="labelled Parquet to train both models on (default: generated complaints)")
    parser.add_argument("--texts", help="Parquet of texts to classify (default: generated complaints)")
    parser.add_argument("--bilstm", help="a trained BiLSTM model directory (skips its training)")
    parser.add_argument("--linear", help="a trained linear model directory (skips its training)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rows", type=int, default=512, help="rows per batch")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/explain.json")
    args = parser.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq

    from model.sample import generate
    from worker import core

    models = _models(args, tempfile.mkdtemp(prefix="explain-bench-"))
    texts = (pq.read_table(args.texts, columns=["text"]).column("text").to_pylist() if args.texts
             else generate(args.rows, seed=7, labelled=False)["text"].tolist())
    texts = [t for t in texts if t and t.strip()]
    texts = (texts * -(-args.rows // len(texts)))[:args.rows]
    batch = core.Rows([f"r{i}" for i in range(len(texts))], texts, pa.table({}))
    rows = [row for name, directory in models.items() for row in _timed(args, name, directory, batch)]
    print(f"{'model':8} {'variant':13} {'rows/s':>9} {'× none':>7} {'explained':>9} {'words/row':>9}")
    for r in rows:
        print(f"{r['model']:8} {r['variant']:13} {r['rows_per_second']:9,.1f} {r['ratio_to_none']:7.3f} "
              f"{r['rows_explained']:9.1%} {r['distinct_words_per_row']:9.1f}")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"cpu": cpu_model(), "rows": args.rows, "k": args.k, "rounds": args.rounds,
                   "texts": args.texts or "generated", "data": args.data or "generated", "results": rows}, f,
                  indent=2)


def _models(args, work: str) -> dict[str, str]:
    """{name: model directory}: those given, and the others trained into `work`."""
    import dataclasses

    from model.architecture import ArchitectureConfig
    from model.data import LabelledData, load_labelled
    from model.sample import generate
    from model.train import TrainConfig, train

    models = {"bilstm": args.bilstm, "linear": args.linear}
    if not all(models.values()):
        labelled = load_labelled(args.data) if args.data else None
        if labelled is None:
            frame = generate(6000, seed=1)
            labelled = LabelledData(frame["text"].to_numpy(object), frame["category"].to_numpy(object), 0, [])
        for name in [n for n, d in models.items() if not d]:
            models[name] = os.path.join(work, name)
            train(labelled, models[name], ArchitectureConfig(),
                  dataclasses.replace(TrainConfig(), architecture=name, epochs=args.epochs, verbose=0))
    return models


def _timed(args, name: str, directory: str, batch) -> list[dict]:
    """One model's rows of the table: each variant classifies `batch`, interleaved for `args.rounds` rounds."""
    import numpy as np

    from model import artifact
    from model.predict import DEFAULT_REVIEW_THRESHOLD
    from model.serving import ServingModel
    from worker import core, prediction

    served, schema = ServingModel(artifact.load(directory)), prediction.schema(explain=True)
    variants = {
        "none": core.Decoding(3, DEFAULT_REVIEW_THRESHOLD, args.rows, prediction.schema()),
        "needs_review": core.Decoding(3, DEFAULT_REVIEW_THRESHOLD, args.rows, schema, explain=args.k),
        "all": core.Decoding(3, DEFAULT_REVIEW_THRESHOLD, args.rows, schema, explain=args.k, explain_all=True),
    }
    core.classify(served, batch, variants["all"])  # warm up every compiled size the variants reach
    times: dict[str, list[float]] = {v: [] for v in variants}
    explained = {}
    for _ in range(args.rounds):
        for variant, decoding in variants.items():
            started = time.perf_counter()
            result = core.classify(served, batch, decoding)
            times[variant].append(time.perf_counter() - started)
            if "explanation" in result.predictions.schema.names:
                explained[variant] = sum(e is not None for e in result.predictions.column("explanation")
                                         .to_pylist()) / result.predictions.num_rows
    words = np.mean([len(set(w)) for w in served.words(batch.texts)])
    median = {variant: statistics.median(seconds) for variant, seconds in times.items()}
    return [{"model": name, "variant": variant, "rows_per_second": round(args.rows / median[variant], 1),
             "ratio_to_none": round(median["none"] / median[variant], 3),
             "rows_explained": explained.get(variant, 0.0), "distinct_words_per_row": round(float(words), 1)}
            for variant in variants]


if __name__ == "__main__":
    main()
