"""What `label --shadow` costs: the nightly job, end to end, with and without a challenger scoring every row.

Each variant is one `complaints label` process (Parquet in, Beam's DirectRunner, the
batched core, the staged commit; with `--shadow`, the second model's pass, its files
and the summary's pairing), its peak RSS its own (`benchmarks.labelling`). Both models
are reference-sized BiLSTMs trained here from different seeds. The variants alternate
for `--rounds` rounds on one archive, so drift in the machine's speed falls on both;
the table gives each round's ratio and the median.

    python -m benchmarks.shadow_cost --rows 50000 --out benchmarks/results/shadow_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.labelling import label_run
from model.precision import cpu_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--small", action="store_true", help="tiny models (a smoke run)")
    parser.add_argument("--out", default="benchmarks/results/shadow_cost.json")
    args = parser.parse_args()

    from benchmarks.labelling import write_archive

    work = tempfile.mkdtemp(prefix="shadow-cost-")
    champion, challenger = (_trained(work, name, seed, args.small) for name, seed in (("a", 1), ("b", 2)))
    archive = os.path.join(work, "in", "archive.parquet")
    write_archive(archive, args.rows, None)
    runs = []
    for round_ in range(args.rounds):
        for name, flags in (("champion only", []), ("with --shadow", ["--shadow", challenger])):
            runs.append({"round": round_ + 1, "variant": name, **_label(champion, archive, work, flags, args.rows)})
    table = _table(runs)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"cpu": cpu_model(), "cores": os.cpu_count(), "rows": args.rows,
                   "model": "tiny" if args.small else "reference-size BiLSTMs, 1 epoch on 6,000 generated rows",
                   "runs": runs, "summary": table}, f, indent=2)


def _label(model: str, archive: str, work: str, flags: list[str], rows: int) -> dict:
    run = label_run(model, archive, tempfile.mkdtemp(prefix="out-", dir=work), flags)
    return {"seconds": round(run["seconds"], 1), "rows_per_second": round(rows / run["seconds"], 1),
            "peak_rss_mb": run["peak_rss_mb"], "agreement": (run["summary"].get("shadow") or {}).get("agreement")}


def _table(runs: list[dict]) -> dict:
    """Print each round's pair and the median ratio; return the medians."""
    print(f"{'round':>5} {'variant':16} {'seconds':>8} {'rows/s':>8} {'peak RSS MB':>11} {'× alone':>8}")
    ratios = []
    for alone, shadowed in zip(runs[::2], runs[1::2], strict=True):
        ratios.append(alone["seconds"] / shadowed["seconds"])
        for r, ratio in ((alone, 1.0), (shadowed, ratios[-1])):
            print(f"{r['round']:>5} {r['variant']:16} {r['seconds']:8.1f} {r['rows_per_second']:8.1f} "
                  f"{r['peak_rss_mb']:11,} {ratio:8.3f}")
    median = statistics.median(ratios)
    print(f"median throughput with --shadow: {median:.3f}× the champion alone")
    return {"median_throughput_ratio": round(median, 3), "ratios": [round(r, 3) for r in ratios]}


def _trained(work: str, name: str, seed: int, small: bool) -> str:
    from model.architecture import ArchitectureConfig
    from model.data import LabelledData
    from model.sample import generate
    from model.train import TrainConfig, train

    frame = generate(6000, seed=seed)
    labelled = LabelledData(frame["text"].to_numpy(object), frame["category"].to_numpy(object), 0, [])
    directory = os.path.join(work, name)
    architecture = ArchitectureConfig(max_tokens=2000, lstm_units=8) if small else ArchitectureConfig()
    train(labelled, directory, architecture, TrainConfig(epochs=1, verbose=0, seed=seed))
    return directory


if __name__ == "__main__":
    main()
