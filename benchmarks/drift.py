"""False alarms and detections of the nightly drift check, for a weak and a strong model.

    python -m benchmarks.drift --out benchmarks/results/drift.json

Two models are trained on generated complaints with one category held out: a weak
one (2 epochs, about 25% accuracy) and a strong one (8 epochs). A pool of generated
complaints from the training distribution is classified once by each model's real
serving function; each night is a sample of the pool, and its drift section is
computed by the job's own code (`pipelines.nightly.drift.section`) from the same figures the
job's combiners produce (label shares, confidence and length histograms, word counts
from `ServingModel.word_counts`). That replaces the job's pipeline, not its drift
arithmetic, so 20 nights per cell take seconds instead of 20 job runs.

Same-distribution nights at 300, 3,000 and 30,000 rows count false alarms (goal: at
most 1 in 20 per cell); three shifts at 1,000 rows count detections (goal: 20 of 20):
30% of complaints from the held-out category, complaints of three categories only,
and English complaints.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time

import numpy as np
import pandas as pd

HELD_OUT = "Otomotiv"
ENGLISH = ["The parcel never arrived and customer service does not answer my calls",
           "My internet connection drops every evening and nobody fixes it",
           "The bank charged me twice for the same transfer last week",
           "The hotel room was dirty and the staff were rude to us",
           "My new phone screen cracked after two days and the shop refuses a refund",
           "The airline lost my luggage and nobody calls me back"]


def train_models(work: str, rows: int) -> dict[str, str]:
    from model.data import LabelledData
    from model.sample import generate
    from model.train import train
    from tests.conftest import TINY_ARCHITECTURE, TINY_TRAINING

    frame = generate(rows, seed=51)
    frame = frame[frame["category"] != HELD_OUT]
    data = LabelledData(frame["text"].to_numpy(dtype=object), frame["category"].to_numpy(dtype=object), 0, [])
    settings = {"weak": dataclasses.replace(TINY_TRAINING, epochs=2, seed=8, learning_rate=0.003),
                "strong": dataclasses.replace(TINY_TRAINING, epochs=8, seed=8)}
    dirs = {}
    for name, config in settings.items():
        dirs[name] = os.path.join(work, name)
        train(data, dirs[name], TINY_ARCHITECTURE, config)
    return dirs


@dataclasses.dataclass
class Classified:
    """A pool of texts as one model sees them: the per-row figures the job's combiners sum."""

    texts: list[str]
    category: np.ndarray
    probabilities: np.ndarray
    tokens: np.ndarray
    oov: np.ndarray


def classify(serving, frame: pd.DataFrame) -> Classified:
    texts = frame["text"].tolist()
    parts = [serving(texts[i:i + 1024]) for i in range(0, len(texts), 1024)]
    probabilities, tokens, oov = (np.concatenate([p[k] for p in parts]) for k in range(3))
    return Classified(texts, frame["category"].to_numpy(), probabilities, tokens, oov)


def night_summary(pool: Classified, rows: np.ndarray, labels: list[str], review_threshold: float) -> dict:
    """The summary fields drift reads, as `pipelines/nightly/summary.py` computes them."""
    from model import baseline

    probabilities, tokens = pool.probabilities[rows], pool.tokens[rows]
    confidence = probabilities.max(axis=1)
    labelled = tokens > 0  # empty texts are dead letters, not predictions
    confidence, ids, tokens, oov = confidence[labelled], probabilities[labelled].argmax(axis=1), tokens[labelled], \
        pool.oov[rows][labelled]
    counts = np.bincount(ids, minlength=len(labels))
    return {
        "predicted": int(labelled.sum()),
        "labels": {labels[i]: {"count": int(c), "share": c / labelled.sum()} for i, c in enumerate(counts) if c},
        "confidence_histogram": np.bincount(baseline.confidence_bins(confidence),
                                            minlength=baseline.CONFIDENCE_BINS).tolist(),
        "length_histogram": np.bincount(baseline.length_bins(tokens), minlength=len(baseline.LENGTH_EDGES)).tolist(),
        "mean_confidence": float(confidence.mean()),
        "needs_review_share": float((confidence < review_threshold).mean()),
        "oov_share": float(oov.sum() / max(tokens.sum(), 1)),
    }


def word_counts(serving, texts: list[str]) -> dict:
    counts = sum(serving.word_counts(texts[i:i + 4096]) for i in range(0, len(texts), 4096))
    ids = np.flatnonzero(counts)
    return {"ids": ids.tolist(), "counts": counts[ids].tolist()}


def run_nights(serving, compared, pool: Classified, rows: int, nights: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    found = []
    for _ in range(nights):
        chosen = rng.choice(len(pool.texts), size=rows, replace=rows > len(pool.texts))
        summary = night_summary(pool, chosen, compared.labels, 0.5)
        words = word_counts(serving, [pool.texts[i] for i in chosen])
        found.append(compared.section(summary, words, None, 0.5))
    return found


def shifted_pools(serving, nights: int, rows: int) -> dict[str, list[Classified]]:
    from model.sample import generate

    found = {"held-out category 30%": [], "three categories": [], "English": []}
    for n in range(nights):
        pool = generate(rows * 40, seed=1000 + n)
        usual = pool[pool["category"] != HELD_OUT].head(round(rows * 0.7))
        new = pool[pool["category"] == HELD_OUT].head(rows - len(usual))
        found["held-out category 30%"].append(classify(serving, pd.concat([usual, new])))
        three = pool[pool["category"].isin(["Alışveriş", "Beyaz-Eşya", "Bilgisayar"])].head(rows)
        found["three categories"].append(classify(serving, three))
        rng = np.random.default_rng(n)
        english = pd.DataFrame({"text": [f"{ENGLISH[i]} (order {o})" for i, o in
                                         zip(rng.integers(0, len(ENGLISH), rows), rng.integers(1000, 99999, rows),
                                             strict=True)], "category": "English"})
        found["English"].append(classify(serving, english))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="300,3000,30000", help="Same-distribution night sizes.")
    parser.add_argument("--nights", type=int, default=20, help="Nights per cell.")
    parser.add_argument("--shift-rows", type=int, default=1000)
    parser.add_argument("--pool", type=int, default=60_000, help="Generated complaints the nights are drawn from.")
    parser.add_argument("--train-rows", type=int, default=3200)
    parser.add_argument("--out", default="benchmarks/results/drift.json")
    args = parser.parse_args()

    from model import artifact
    from model.sample import generate
    from model.serving import ServingModel
    from pipelines.nightly import drift

    sizes = [int(s) for s in args.sizes.split(",")]
    results, started = [], time.monotonic()
    with tempfile.TemporaryDirectory() as work:
        models = train_models(work, args.train_rows)
        pool_frame = generate(args.pool, seed=7)
        pool_frame = pool_frame[pool_frame["category"] != HELD_OUT]
        for name, model_dir in models.items():
            loaded = artifact.load(model_dir)
            serving = ServingModel(loaded, xla=False)
            compared = drift.Compared.of(model_dir, loaded.metadata)
            accuracy = loaded.metadata["test_metrics"]["accuracy"]
            pool = classify(serving, pool_frame)
            for rows in sizes:
                sections = run_nights(serving, compared, pool, rows, args.nights, seed=rows)
                alarms = [s for s in sections if s["alert"]]
                results.append({"model": name, "accuracy": round(accuracy, 3), "night": "unchanged", "rows": rows,
                                "nights": len(sections), "alerts": len(alarms),
                                "signals_alerting": sorted({n for s in alarms for n in s["over_threshold"]})})
            for shift, pools in shifted_pools(serving, args.nights, args.shift_rows).items():
                sections = [run_nights(serving, compared, p, len(p.texts), 1, seed=i)[0] for i, p in enumerate(pools)]
                caught = [s for s in sections if s["alert"]]
                results.append({"model": name, "accuracy": round(accuracy, 3), "night": shift,
                                "rows": args.shift_rows, "nights": len(sections), "alerts": len(caught),
                                "signals_alerting": sorted({n for s in caught for n in s["over_threshold"]})})
    print(f"{'model':<7} {'acc':>5}  {'night':<22} {'rows':>6}  {'alerts':>7}  goal          signals")
    for r in results:
        goal = "≤ 1" if r["night"] == "unchanged" else f"= {r['nights']}"
        met = (r["alerts"] <= 1) if r["night"] == "unchanged" else (r["alerts"] == r["nights"])
        r["goal_met"] = met
        print(f"{r['model']:<7} {r['accuracy']:>5.2f}  {r['night']:<22} {r['rows']:>6}  "
              f"{r['alerts']:>3}/{r['nights']:<3}  {goal:<5} {'met' if met else 'MISSED':<7} "
              f"{', '.join(r['signals_alerting'])}")
    report = {"results": results, "seconds": round(time.monotonic() - started, 1),
              "settings": {"resamples": drift.RESAMPLES, "sigmas": drift.SIGMAS, "floors": drift.FLOORS,
                           "held_out": HELD_OUT, **vars(args)}}
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, ensure_ascii=False)


if __name__ == "__main__":
    main()
