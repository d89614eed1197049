"""Labels, confidences and top-k for a handful of texts: `predict` and the web page.

Loads the model directory once and decodes a whole batch of probabilities with NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from model import artifact
from model.errors import UserError
from model.predict import decode

MAX_BATCH_ROWS = 5_000
EMPTY_INPUT = "Type or paste a complaint first."


@dataclass
class Prediction:
    text: str
    label: str
    confidence: float
    top: list[tuple[str, float]]
    needs_review: bool


class Predictor:
    """The loaded model and the page's decisions (top-k, review threshold)."""

    def __init__(self, model_dir: str, k: int = 3, review_threshold: float = 0.5):
        self.artifact = artifact.load(model_dir)
        self.k = k
        self.review_threshold = review_threshold

    @property
    def metadata(self) -> dict:
        return self.artifact.metadata

    def predict(self, texts: list[str]) -> list[Prediction]:
        labels = np.array(self.artifact.labels, dtype=object)
        rows = decode(self.artifact.predict(texts), labels, self.k, self.review_threshold)
        return [
            Prediction(text, row["label"], row["confidence"], [(t["label"], t["confidence"]) for t in row["top_k"]],
                       row["needs_review"])
            for text, row in zip(texts, rows, strict=True)
        ]

    def classify_one(self, text: str | None) -> Prediction:
        if text is None or not text.strip():
            raise UserError(EMPTY_INPUT)
        return self.predict([text])[0]

    def classify_many(self, pasted: str | None, upload_path: str | None) -> pd.DataFrame:
        """One complaint per pasted line, or the `text` column of an uploaded CSV/Parquet."""
        if upload_path:
            frame = pd.read_parquet(upload_path) if upload_path.endswith(".parquet") else pd.read_csv(upload_path)
            if "text" not in frame.columns:
                raise UserError(f"the uploaded file has no 'text' column (columns: {', '.join(frame.columns)})")
            texts = [t for t in frame["text"].fillna("").astype(str) if t.strip()]
        else:
            texts = [line for line in (pasted or "").splitlines() if line.strip()]
        if not texts:
            raise UserError("Paste complaints (one per line) or upload a CSV/Parquet file with a 'text' column.")
        if len(texts) > MAX_BATCH_ROWS:
            raise UserError(f"{len(texts)} complaints is more than this page takes ({MAX_BATCH_ROWS}): "
                            "use `complaints label` for archives")
        rows = self.predict(texts)
        return pd.DataFrame({
            "text": [r.text for r in rows],
            "label": [r.label for r in rows],
            "confidence": [round(r.confidence, 4) for r in rows],
            "needs_review": [r.needs_review for r in rows],
            "top_k": ["; ".join(f"{name} {p:.3f}" for name, p in r.top) for r in rows],
        })

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
