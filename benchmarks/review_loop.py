"""What the review loop's answers are worth: accuracy against labels spent, reviewing the least certain rows of
an unlabelled pool each round, against reviewing as many random rows.

A simulation on labelled data: start from `--start` labelled rows (a seeded random
sample of the training file), the rest is the unlabelled pool; each round the current
model scores the pool, `--per-round` rows are "reviewed" (they get their true label,
as a reviewer's answer would give), the model is retrained on every label so far, and
scored on the fixed test file. Two strategies side by side, over several seeds: the
least certain rows (lowest top-1 confidence: what `needs_review` sends to people) and
random rows. The linear model is used (the default below about 100,000 rows, and fast
enough to retrain every round); each round's chosen rows' confidences are kept, to set
`--review-threshold` from.

    python -m benchmarks.review_loop --data ../shared/data/sikayetvar_belediye_tr/train.parquet \\
        --test ../shared/data/sikayetvar_belediye_tr/test.parquet --out benchmarks/results/review_loop_tr.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from model.precision import cpu_model

STRATEGIES = ("least certain", "random")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="labelled Parquet: the start and the pool")
    parser.add_argument("--test", required=True, help="labelled Parquet: the fixed test set")
    parser.add_argument("--start", type=int, default=200)
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/review_loop.json")
    args = parser.parse_args()

    import pyarrow.parquet as pq

    pool = pq.read_table(args.data, columns=["text", "category"]).to_pandas().dropna()
    test = pq.read_table(args.test, columns=["text", "category"]).to_pandas().dropna()
    curves = {s: [] for s in STRATEGIES}
    picked_confidence = []
    for seed in range(args.seeds):
        for strategy in STRATEGIES:
            curve, confidences = _simulate(pool, test, strategy, seed, args)
            curves[strategy].append(curve)
            picked_confidence += confidences
            print(f"seed {seed} {strategy:13}: " + " ".join(f"{a:.3f}" for _, a in curve), flush=True)
    summary = _summary(curves, picked_confidence, args)
    print(_table(summary))
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"cpu": cpu_model(), "data": args.data, "test": args.test, "test_rows": len(test),
                   "pool_rows": len(pool), **vars(args), **summary}, f, indent=2)
    _plot(summary, os.path.splitext(args.out)[0] + ".png", args.data)


def _simulate(pool, test, strategy: str, seed: int, args) -> tuple[list[tuple[int, float]], list[float]]:
    """One run: [(labels spent, test accuracy)] per round, and the confidences of the rows it chose."""
    import numpy as np

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pool))
    labelled, unlabelled = list(order[:args.start]), list(order[args.start:])
    curve, confidences = [], []
    for round_ in range(args.rounds + 1):
        model, labels = _trained(pool.iloc[labelled], seed)
        probabilities = _scored(model, test["text"])
        predicted = [labels[i] for i in probabilities.argmax(axis=1)]
        curve.append((len(labelled), float(np.mean(np.array(predicted) == test["category"].to_numpy()))))
        if round_ == args.rounds or not unlabelled:
            break
        if strategy == "least certain":
            confidence = _scored(model, pool["text"].iloc[unlabelled]).max(axis=1)
            chosen = np.argsort(confidence, kind="stable")[:args.per_round]
            confidences += confidence[chosen].tolist()
        else:
            chosen = rng.choice(len(unlabelled), min(args.per_round, len(unlabelled)), replace=False)
        picked = {unlabelled[i] for i in chosen}
        labelled += sorted(picked)
        unlabelled = [i for i in unlabelled if i not in picked]
    return curve, confidences


def _trained(rows, seed: int):
    from model import artifact
    from model.architecture import ArchitectureConfig
    from model.data import LabelledData
    from model.train import TrainConfig, train

    data = LabelledData(rows["text"].to_numpy(object), rows["category"].astype(str).to_numpy(object), 0, [])
    config = dataclasses.replace(TrainConfig(), architecture="linear", verbose=0, seed=seed, final_fit="all")
    folder = tempfile.mkdtemp(prefix="review-loop-")
    try:
        result = train(data, os.path.join(folder, "m"), ArchitectureConfig(), config)
        return result.model, artifact.read_metadata(result.artifact_dir)[0]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _scored(model, texts):
    import numpy as np

    return np.asarray(model.predict(np.asarray(list(texts), dtype=object), batch_size=512, verbose=0))


def _summary(curves: dict, picked_confidence: list[float], args) -> dict:
    import numpy as np

    table = []
    for step in range(len(curves[STRATEGIES[0]][0])):
        row = {"labels": curves[STRATEGIES[0]][0][step][0]}
        for s in STRATEGIES:
            values = [c[step][1] for c in curves[s] if step < len(c)]
            row[s] = {"mean": statistics.mean(values), "sd": statistics.pstdev(values)}
        table.append(row)
    spent = table[-1]["labels"] - table[0]["labels"]
    per_point = {s: spent / max((table[-1][s]["mean"] - table[0][s]["mean"]) * 100, 1e-9) for s in STRATEGIES}
    confidence = np.asarray(picked_confidence) if picked_confidence else np.zeros(1)
    return {"curve": table, "reviewed_rows_per_accuracy_point": per_point,
            "chosen_confidence": {"median": float(np.median(confidence)), "p90": float(np.quantile(confidence, .9)),
                                  "share_below_0.5": float(np.mean(confidence < 0.5))}}


def _table(summary: dict) -> str:
    lines = [f"{'labels':>7} " + " ".join(f"{s:>22}" for s in STRATEGIES)]
    for row in summary["curve"]:
        lines.append(f"{row['labels']:>7,} " + " ".join(
            f"{row[s]['mean']:>15.3f} ± {row[s]['sd']:.3f}" for s in STRATEGIES))
    lines.append("reviewed rows per accuracy point: " + ", ".join(
        f"{s} {v:,.0f}" for s, v in summary["reviewed_rows_per_accuracy_point"].items()))
    c = summary["chosen_confidence"]
    lines.append(f"confidence of the rows least-certain chose: median {c['median']:.3f}, 90th percentile "
                 f"{c['p90']:.3f}, below 0.5: {c['share_below_0.5']:.0%}")
    return "\n".join(lines)


def _plot(summary: dict, path: str, data: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    labels = [r["labels"] for r in summary["curve"]]
    for s, colour in zip(STRATEGIES, ("#c44e52", "#4c72b0"), strict=True):
        means = [r[s]["mean"] for r in summary["curve"]]
        sds = [r[s]["sd"] for r in summary["curve"]]
        ax.errorbar(labels, means, yerr=sds, label=s, color=colour, marker="o", capsize=3)
    ax.set_xlabel("labelled rows (start + reviewed)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"The review loop's worth: {os.path.basename(os.path.dirname(data))}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
