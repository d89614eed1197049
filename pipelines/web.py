"""`complaints serve`: a page to try a model on single complaints before a nightly run.

The prediction functions are plain Python (tested without a browser); the Gradio
page only lays them out. Gradio is an optional extra (`pip install -e '.[ui]'`)
so Dataflow workers never install it.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import numpy as np
import pandas as pd

from model import artifact
from model.errors import UserError
from model.predict import top_k

EXAMPLES = [
    "Kargom 12 gündür teslim edilmedi, kurye adreste kimse yok diye not bırakmış. Paramı geri istiyorum!",
    "Yeni aldığım buzdolabı soğutmuyor, yetkili servis üç haftadır gelmedi.",
    "Kredi kartımdan izinsiz aidat kesildi, müşteri hizmetlerine ulaşamıyorum.",
    "İnternet her akşam kopuyor, modem değişti ama sorun devam ediyor.",
    "Otel odası fotoğraftakinden çok farklıydı, havuz kirliydi, rezervasyonum da bulunamadı.",
]
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
        probabilities = self.artifact.predict(texts)
        indices, values = top_k(probabilities, self.k)
        labels = np.array(self.artifact.labels, dtype=object)
        return [
            Prediction(text, labels[idx[0]], float(val[0]),
                       [(labels[i], float(v)) for i, v in zip(idx, val, strict=True)],
                       bool(val[0] < self.review_threshold))
            for text, idx, val in zip(texts, indices, values, strict=True)
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
        return (f"### Complaint classifier `{m['model_version']}`\n"
                f"{m['architecture'].get('name', 'bilstm')} model, {m['n_classes']} categories, "
                f"locale `{m['locale']}`. Test split: {figures}.")


def verdict(prediction: Prediction) -> str:
    review = "yes" if prediction.needs_review else "no"
    return f"**{prediction.label}**, confidence {prediction.confidence:.4f}, needs review: {review}"


def build_app(predictor: Predictor):
    import gradio as gr

    def one(text):
        try:
            p = predictor.classify_one(text)
        except UserError as exc:
            raise gr.Error(str(exc)) from None
        return {name: value for name, value in p.top}, verdict(p)

    def many(pasted, upload):
        try:
            frame = predictor.classify_many(pasted, upload)
        except UserError as exc:
            raise gr.Error(str(exc)) from None
        path = os.path.join(tempfile.mkdtemp(prefix="complaints-"), "predictions.csv")
        frame.to_csv(path, index=False)
        return frame, path

    with gr.Blocks(title="Complaint classifier") as app:
        gr.Markdown(predictor.header())
        with gr.Tab("One complaint"):
            text = gr.Textbox(label="Complaint", lines=4, elem_id="complaint")
            button = gr.Button("Classify", variant="primary", elem_id="classify")
            result = gr.Markdown(elem_id="verdict")
            top = gr.Label(num_top_classes=predictor.k, label="Top categories", elem_id="top")
            gr.Examples(EXAMPLES, inputs=text)
            button.click(one, inputs=text, outputs=[top, result])
        with gr.Tab("Many complaints"):
            pasted = gr.Textbox(label="One complaint per line", lines=8, elem_id="pasted")
            upload = gr.File(label="…or a CSV/Parquet file with a 'text' column", file_types=[".csv", ".parquet"],
                             type="filepath")
            run_all = gr.Button("Classify all", elem_id="classify-all")
            table = gr.Dataframe(label="Predictions", elem_id="table")
            download = gr.File(label="Download CSV")
            run_all.click(many, inputs=[pasted, upload], outputs=[table, download])
    return app


def serve(model_dir: str, host: str, port: int, k: int, review_threshold: float) -> None:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    predictor = Predictor(model_dir, k, review_threshold)  # a broken model directory fails here, in one line
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UserError("the web page needs the ui extra: pip install -e '.[ui]'") from None
    import gradio as gr

    theme = gr.themes.Default(font=["sans-serif"], font_mono=["monospace"])  # no web fonts: works offline
    build_app(predictor).launch(server_name=host, server_port=port, share=False, show_error=True, theme=theme)
