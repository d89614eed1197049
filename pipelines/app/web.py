"""`complaints serve`: a page to try a model on single complaints before a nightly run.

The prediction functions are plain Python (tested without a browser); the Gradio
page only lays them out. Gradio is an optional extra (`pip install -e '.[ui]'`)
so Dataflow workers never install it.
"""

from __future__ import annotations

import os
import tempfile

from model.errors import UserError
from pipelines.app.predictor import EMPTY_INPUT, MAX_BATCH_ROWS, Predictor, Verdict

__all__ = ["EMPTY_INPUT", "EXAMPLES", "MAX_BATCH_ROWS", "Predictor", "Verdict", "build_app", "serve", "verdict"]

EXAMPLES = [
    "Kargom 12 gündür teslim edilmedi, kurye adreste kimse yok diye not bırakmış. Paramı geri istiyorum!",
    "Yeni aldığım buzdolabı soğutmuyor, yetkili servis üç haftadır gelmedi.",
    "Kredi kartımdan izinsiz aidat kesildi, müşteri hizmetlerine ulaşamıyorum.",
    "İnternet her akşam kopuyor, modem değişti ama sorun devam ediyor.",
    "Otel odası fotoğraftakinden çok farklıydı, havuz kirliydi, rezervasyonum da bulunamadı.",
]


def verdict(v: Verdict) -> str:
    """The one-complaint answer: label, confidence, review flag and any further shown field; or the
    dead-letter reason the jobs would give the same text."""
    if v.rejected:
        return (f"Not classified: **{v.record['reason']}** ({v.record['detail']}). "
                "The nightly and live jobs dead-letter this text too.")
    review = "yes" if v.needs_review else "no"
    more = {k: value for k, value in v.shown().items() if k not in _IN_THE_HEADLINE}
    return f"**{v.label}**, confidence {v.confidence:.4f}, needs review: {review}" + "".join(
        f", {k.replace('_', ' ')}: {value}" for k, value in more.items())


_IN_THE_HEADLINE = {"text", "label", "confidence", "needs_review", "top_k", "dead_letter"}


def build_app(predictor: Predictor):
    import gradio as gr

    def one(text):
        try:
            p = predictor.classify_one(text)
        except UserError as exc:
            raise gr.Error(str(exc)) from None
        return dict(p.top), verdict(p)

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
