"""Model quality on the real archives in ../shared/data: bilstm, linear and auto vs TF-IDF baselines.

For each dataset (train.parquet, test.parquet) and seed: trains each architecture with
the project's own trainer (its seeded stratified split of train.parquet; calibration
on the validation part, for linear also on out-of-fold training rows), and two
scikit-learn baselines (TF-IDF word 1–2-gram logistic regression, TF-IDF character
2–5-gram linear SVM) on exactly the same training rows. Then scores all on the
dataset's own test.parquet (accuracy, macro/weighted F1, ECE). Prints a table, writes JSON.
With `--final-fits train,…` it also prints the refit's paired effect, seed by seed
(`refit_effect`): what a refit changes is only readable against the same split.

    python -m benchmarks.quality --out benchmarks/results/quality.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from model import artifact
from model.architecture import ArchitectureConfig
from model.calibration import expected_calibration_error
from model.data import load_labelled, stratified_split
from model.evaluate import classification_report, headline
from model.serving import ServingModel
from model.train import TrainConfig, train

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")
LOCALES = {"sikayetvar_belediye_tr": "tr", "cfpb_narratives_en": "unicode"}


def tfidf_baselines(train_texts, train_labels, test_texts, locale: str) -> dict[str, np.ndarray]:
    """The two scikit-learn baselines of the quality bar: word 1–2-gram LR and character 2–5-gram linear SVM."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    from model.text import standardize

    train_texts, test_texts = standardize(list(train_texts), locale), standardize(list(test_texts), locale)
    predictions = {}
    for name, vectorizer, classifier in [
        ("sklearn word tf-idf + LR", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
         LogisticRegression(max_iter=2000, C=10.0)),
        ("sklearn char tf-idf + SVM", TfidfVectorizer(analyzer="char", ngram_range=(2, 5), sublinear_tf=True),
         LinearSVC(C=1.0)),
    ]:
        classifier.fit(vectorizer.fit_transform(train_texts), train_labels)
        predictions[name] = classifier.predict(vectorizer.transform(test_texts))
    return predictions


def evaluate_dataset(name: str, directory: str, seed: int, epochs: int, architectures: list[str],
                     final_fits: list[str]) -> list[dict]:
    locale = LOCALES.get(name, "unicode")
    data = load_labelled(os.path.join(directory, "train.parquet"))
    test = load_labelled(os.path.join(directory, "test.parquet"))
    rows = []
    for kind, final_fit in ((k, f) for k in architectures for f in final_fits):
        config = TrainConfig(seed=seed, epochs=epochs, verbose=0, architecture=kind, final_fit=final_fit)
        with tempfile.TemporaryDirectory() as out:
            started = time.monotonic()
            result = train(data, out, ArchitectureConfig(locale=locale), config)
            seconds = time.monotonic() - started
            loaded = artifact.load(out)
            index = {label: i for i, label in enumerate(loaded.labels)}
            y_true = np.array([index[label] for label in test.labels])
            probabilities = ServingModel(loaded).probabilities(test.texts.tolist())
            rows.append({"dataset": name, "model": kind if final_fit == "train" else f"{kind} + refit ({final_fit})",
                         "seed": seed, "final_fit": final_fit, "test_rows": len(y_true),
                         **headline(classification_report(y_true, probabilities.argmax(axis=1), loaded.labels)),
                         "ece": expected_calibration_error(probabilities, y_true),
                         "chosen": result.metadata["selection"]["chosen"],
                         "temperature": result.metadata["calibration"]["temperature"],
                         "epochs_run": result.metadata["training"]["epochs_run"],
                         "train_seconds": round(seconds, 1)})
        print(json.dumps(rows[-1]), flush=True)
    label_ids = np.searchsorted(np.array(loaded.labels, dtype=object), data.labels)
    split = stratified_split(label_ids, config.validation_split, config.test_split, seed)
    baselines = tfidf_baselines(data.texts[split.train], data.labels[split.train], test.texts, locale)
    for model_name, predicted in baselines.items():
        y_base = np.array([index[label] for label in predicted])
        rows.append({"dataset": name, "model": model_name, "seed": seed,
                     **headline(classification_report(y_true, y_base, loaded.labels)), "ece": None})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def refit_effect(rows: list[dict]) -> list[dict]:
    """Per dataset and architecture: each refit against the split-trained model of the same seed.

    Test rows gained per seed, wins/ties/losses, the means, the spread of each across
    seeds, and the correlation between the change and the split-trained accuracy: a
    negative one says the refit loses where the split happened to train a lucky model.
    """
    trained = {(r["dataset"], r["model"], r["seed"]): r for r in rows if r.get("final_fit") == "train"}
    pairs: dict[tuple, list[tuple[dict, dict]]] = {}
    for r in rows:
        if r.get("final_fit") not in (None, "train"):
            base = trained.get((r["dataset"], r["model"].split(" + refit")[0], r["seed"]))
            if base is not None:
                pairs.setdefault((r["dataset"], r["model"]), []).append((base, r))
    effects = []
    for (dataset, model), seeds in sorted(pairs.items()):
        before = np.array([b["accuracy"] for b, _ in seeds])
        after = np.array([a["accuracy"] for _, a in seeds])
        gained = [round((a["accuracy"] - b["accuracy"]) * a["test_rows"]) if "test_rows" in a else None
                  for b, a in seeds]
        change = after - before
        effects.append({
            "dataset": dataset, "model": model, "seeds": [b["seed"] for b, _ in seeds],
            "test_rows_gained": gained, "wins": int((change > 1e-9).sum()), "ties": int((abs(change) <= 1e-9).sum()),
            "losses": int((change < -1e-9).sum()), "mean_before": float(before.mean()),
            "mean_after": float(after.mean()), "mean_change_pt": float(change.mean() * 100),
            "spread_before": float(before.std()), "spread_after": float(after.std()),
            "change_vs_before_correlation": float(np.corrcoef(before, change)[0, 1])
            if len(seeds) > 2 and before.std() > 0 and change.std() > 0 else None,
        })
    return effects


def print_refit_effect(effects: list[dict]) -> None:
    if not effects:
        return
    print(f"\n{'dataset':<24} {'refit':<38} {'seeds':>5} {'before':>7} {'after':>7} {'change':>7} "
          f"{'W/T/L':>8} {'spread':>13} {'corr':>6}  test rows gained")
    for e in effects:
        corr = f"{e['change_vs_before_correlation']:.2f}" if e["change_vs_before_correlation"] is not None else "n/a"
        print(f"{e['dataset']:<24} {e['model']:<38} {len(e['seeds']):>5} {e['mean_before']:>7.4f} "
              f"{e['mean_after']:>7.4f} {e['mean_change_pt']:>+6.2f}p {e['wins']:>2}/{e['ties']}/{e['losses']:<3} "
              f"{e['spread_before']:.4f}→{e['spread_after']:.4f} {corr:>6}  {e['test_rows_gained']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=SHARED, help="Folder of datasets, each with train/test.parquet")
    parser.add_argument("--seeds", default="42", help="Comma-separated seeds")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--architectures", default="bilstm,linear,auto")
    parser.add_argument("--final-fits", default="train+validation",
                        help="Comma-separated: train (no refit), train+validation (the default), all")
    parser.add_argument("--out", default="benchmarks/results/quality.json")
    args = parser.parse_args()
    datasets = sorted(d for d in os.listdir(args.data) if os.path.exists(os.path.join(args.data, d, "train.parquet")))
    rows = []
    for name in datasets:
        for seed in (int(s) for s in args.seeds.split(",")):
            rows += evaluate_dataset(name, os.path.join(args.data, name), seed, args.epochs,
                                     args.architectures.split(","), args.final_fits.split(","))
    print(f"\n{'dataset':<24} {'model':<38} {'seed':>4} {'accuracy':>9} {'macro F1':>9} {'weighted F1':>12} {'ECE':>7}")
    for r in rows:
        ece = f"{r['ece']:.4f}" if r["ece"] is not None else "n/a"
        print(f"{r['dataset']:<24} {r['model']:<38} {r['seed']:>4} {r['accuracy']:>9.4f} {r['macro_f1']:>9.4f} "
              f"{r['weighted_f1']:>12.4f} {ece:>7}")
    print_refit_effect(refit_effect(rows))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
