"""Verdicts on a handful of texts, as `complaints predict` and the web page show them.

Every verdict comes from the worker's own path (`worker.local.LocalClassifier`): the
same record as the jobs write, or the same dead letter with the same reason. What is
shown of a prediction comes from the record's one definition (`worker.prediction`).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import pandas as pd

from model.errors import UserError
from model.predict import DEFAULT_REVIEW_THRESHOLD, DEFAULT_TOP_K
from pipelines.app.uploads import PageLimits, pasted_texts, uploaded_texts
from worker import prediction
from worker.local import LocalClassifier, texts_as_records
from worker.transform import DEAD_LETTERS, WorkerConfig

MAX_BATCH_ROWS = PageLimits().max_rows
EMPTY_INPUT = "Type or paste a complaint first."
PAGE_EXPLAIN = 5  # words the page's one-complaint answer highlights


@dataclass
class Verdict:
    """One text's outcome: its prediction record, or its dead letter (`record["reason"]`)."""

    text: str
    record: dict
    rejected: bool

    @property
    def label(self) -> str:
        return self.record["label"]

    @property
    def confidence(self) -> float:
        return self.record["confidence"]

    @property
    def needs_review(self) -> bool:
        return self.record["needs_review"]

    @property
    def top(self) -> list[tuple[str, float]]:
        return [(t["label"], t["confidence"]) for t in self.record.get("top_k", [])]

    @property
    def explanation(self) -> list[tuple[str, float]]:
        return [(e["word"], e["contribution"]) for e in self.record.get("explanation") or []]

    def as_json(self) -> dict:
        """`predict --json`'s line: the text and the record the jobs would write, or its dead letter."""
        if self.rejected:
            return {"text": self.text, "id": self.record["id"],
                    "dead_letter": {"reason": self.record["reason"], "detail": self.record["detail"]}}
        return {"text": self.text, **self.record}

    def shown(self) -> dict:
        """The page's row: the shown fields of the record, or the dead letter's reason."""
        fields = {f.name: None for f in prediction.FIELDS if f.shown}
        if self.rejected:
            return {"text": self.text, **fields, "dead_letter": f"{self.record['reason']}: {self.record['detail']}"}
        shown = prediction.shown(self.record)
        shown["top_k"] = "; ".join(f"{name} {p:.3f}" for name, p in self.top)
        if "explanation" in shown:
            shown["explanation"] = because(self.explanation)
        if "confidence" in shown:
            shown["confidence"] = round(shown["confidence"], 4)
        return {"text": self.text, **shown, "dead_letter": ""}


class Predictor:
    """The loaded model and the page's decisions (top-k, review threshold)."""

    def __init__(self, model_dir: str, k: int = DEFAULT_TOP_K, review_threshold: float = DEFAULT_REVIEW_THRESHOLD,
                 limits: PageLimits | None = None, precision: str = "auto", force_precision: bool = False,
                 explain: int = 0):
        """`explain`: the words each verdict of `predict` names (every row, not only those that need review);
        the page's one-complaint answer always names `PAGE_EXPLAIN`."""
        self.k = k
        self.limits = limits or PageLimits()
        config = WorkerConfig(model_dir=model_dir, top_k=k, review_threshold=review_threshold, precision=precision,
                              force_precision=force_precision, explain=explain, explain_all=True)
        self.classifier = LocalClassifier(config)
        self.explaining = LocalClassifier(dataclasses.replace(config, explain=explain or PAGE_EXPLAIN))

    @property
    def metadata(self) -> dict:
        return self.classifier.metadata

    def predict(self, texts: list[str], classifier: LocalClassifier | None = None) -> list[Verdict]:
        outcomes = (classifier or self.classifier).classify(texts_as_records(texts))
        return [Verdict(text, record, tag == DEAD_LETTERS) for text, (tag, record) in zip(texts, outcomes, strict=True)]

    def highlighted(self, v: Verdict) -> list[tuple[str, str | None]]:
        """The text in pieces, each word the explanation names marked with what it adds (the page shows them
        highlighted): a piece is matched as the model's standardisation sees it, so `İADE` matches `iade`."""
        weights = dict(v.explanation)
        pieces = [p for p in re.split(r"(\s+)", v.text) if p]
        seen = self.explaining.slot.current.words(pieces) if weights else [[] for _ in pieces]
        marked = []
        for piece, words in zip(pieces, seen, strict=True):
            hits = [w for w in words if w in weights]
            marked.append((piece, f"+{max(weights[w] for w in hits):.2f}" if hits else None))
        return marked

    def classify_one(self, text: str | None) -> Verdict:
        if text is None or not text.strip():
            raise UserError(EMPTY_INPUT)
        if len(text) > self.limits.max_text_chars:
            raise UserError(f"This complaint has {len(text):,} characters, more than this page takes "
                            f"({self.limits.max_text_chars:,}).")
        return self.predict([text], self.explaining)[0]

    def classify_many(self, pasted: str | None, upload_path: str | None) -> pd.DataFrame:
        """One complaint per pasted line, or the `text` column of an uploaded CSV/Parquet (read lazily)."""
        texts = uploaded_texts(upload_path, self.limits) if upload_path else pasted_texts(pasted, self.limits)
        if not texts:
            raise UserError("Paste complaints (one per line) or upload a CSV/Parquet file with a 'text' column.")
        return pd.DataFrame([v.shown() for v in self.predict(texts)])

    def header(self) -> str:
        m = self.metadata
        metrics = m.get("test_metrics", {})
        figures = ", ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in metrics.items() if isinstance(v, float))
        header = (f"### Complaint classifier `{m['model_version']}`\n"
                  f"{m['architecture'].get('name', 'bilstm')} model, {m['n_classes']} categories, "
                  f"locale `{m['locale']}`. Test split: {figures}.")
        shares = (m.get("baseline") or {}).get("label_shares")
        if shares:  # what the nightly drift check compares with, for comparing by eye
            ranked = sorted(shares.items(), key=lambda kv: (-kv[1], kv[0]))
            header += "\n\nTraining label distribution: " + ", ".join(f"{n} {v:.1%}" for n, v in ranked) + "."
        return header


def because(explanation: list[tuple[str, float]]) -> str:
    """An explanation on one line: `iade +0.31, kargo +0.12`."""
    return ", ".join(f"{word} +{value:.2f}" for word, value in explanation)
