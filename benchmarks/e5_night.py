"""What `--architecture e5-linear` costs a night: the nightly job, end to end, linear against e5-linear.

Both models are trained here on one labelled dataset of ../shared/data (its train.parquet,
as `complaints train` would), then each labels the same archive (that dataset's
test.parquet texts, repeated to `--rows`) in a `complaints label` process of its own
(Beam's DirectRunner, the batched core, the staged commit), alternating for `--rounds`
rounds so drift in the machine's speed falls on both. The table gives rows per second,
peak RSS, and the hours a 400,000-row night would take at that rate; training's seconds too.

    python -m benchmarks.e5_night --rows 2000 --out benchmarks/results/e5_night.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.labelling import label_run
from model.precision import cpu_model

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")
ARCHITECTURES = ("linear", "e5-linear")
NIGHT = 400_000  # the reference archive's size, for the hours column


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=os.path.join(SHARED, "sikayetvar_belediye_tr"))
    parser.add_argument("--locale", default="tr")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-train-rows", type=int, default=0, help="a sample of train.parquet (smoke runs)")
    parser.add_argument("--out", default="benchmarks/results/e5_night.json")
    args = parser.parse_args()

    import pandas as pd

    work = tempfile.mkdtemp(prefix="e5-night-")
    training_seconds = {}
    for name in ARCHITECTURES:
        started = time.perf_counter()
        _trained(args, os.path.join(work, name), name)
        training_seconds[name] = round(time.perf_counter() - started, 1)
    models = {name: os.path.join(work, name) for name in ARCHITECTURES}
    texts = pd.read_parquet(os.path.join(args.dataset, "test.parquet"), columns=["text"])["text"].tolist()
    archive = os.path.join(work, "archive.parquet")
    repeated = (texts * (args.rows // len(texts) + 1))[: args.rows]
    pd.DataFrame({"id": [f"r{i}" for i in range(args.rows)], "text": repeated}).to_parquet(archive)
    runs = {name: [] for name in ARCHITECTURES}
    for round_ in range(args.rounds):
        for name in ARCHITECTURES:
            run = label_run(models[name], archive, os.path.join(work, f"out-{name}-{round_}"), [])
            runs[name].append({"rows_per_s": args.rows / run["seconds"], "peak_rss_mb": run["peak_rss_mb"]})
    report = {"cpu": cpu_model(), "cores": os.cpu_count(), "rows": args.rows, "rounds": args.rounds,
              "dataset": os.path.basename(args.dataset.rstrip("/")), "runs": runs, "training_seconds": training_seconds,
              "median_rows_per_s": {n: statistics.median(r["rows_per_s"] for r in runs[n]) for n in ARCHITECTURES}}
    _print(report)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)


def _trained(args, out: str, architecture: str) -> str:
    import pandas as pd

    from model.architecture import ArchitectureConfig
    from model.data import LabelledData
    from model.train import TrainConfig, train

    frame = pd.read_parquet(os.path.join(args.dataset, "train.parquet"), columns=["text", "category"]).dropna()
    if args.max_train_rows:
        frame = frame.sample(min(len(frame), args.max_train_rows), random_state=0)
    data = LabelledData(frame["text"].astype(str).to_numpy(object), frame["category"].astype(str).to_numpy(object),
                        0, [])
    train(data, out, ArchitectureConfig(locale=args.locale), TrainConfig(architecture=architecture, verbose=0))
    return out


def _print(report: dict) -> None:
    rates = report["median_rows_per_s"]
    print(f"{report['dataset']}: {report['rows']:,} rows, {report['rounds']} rounds, {report['cpu']}")
    print(f"{'model':10} {'rows/s (median)':>16} {'each round':>22} {'peak RSS MB':>12} {'400k rows':>10}")
    for name in ARCHITECTURES:
        each = ", ".join(f"{r['rows_per_s']:,.1f}" for r in report["runs"][name])
        rss = max(r["peak_rss_mb"] for r in report["runs"][name])
        print(f"{name:10} {rates[name]:16,.1f} {each:>22} {rss:12,} {NIGHT / rates[name] / 3600:9.1f}h")
    print(f"e5-linear / linear: {rates['e5-linear'] / rates['linear']:.3f}×; training seconds: "
          f"{report['training_seconds']}")


if __name__ == "__main__":
    main()
