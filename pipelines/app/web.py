"""`complaints serve`: a page to try a model on single complaints before a nightly run.

The prediction functions are plain Python (tested without a browser); the Gradio
page only lays them out. Gradio is an optional extra (`pip install -e '.[ui]'`)
so Dataflow workers never install it. The page may be shared, so it has bounds
(`uploads.PageLimits`), a login (`access.Access`), and keeps complaint texts on disk
no longer than needed: uploads are deleted once read, and every file it writes lives
in one private folder that is removed when the server stops.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import signal
import tempfile
import uuid
from dataclasses import dataclass, field

from model.errors import UserError
from model.predict import DEFAULT_REVIEW_THRESHOLD, DEFAULT_TOP_K
from pipelines.app.access import Access
from pipelines.app.predictor import EMPTY_INPUT, MAX_BATCH_ROWS, Predictor, Verdict
from pipelines.app.uploads import PageLimits, forget, spreadsheet_safe

__all__ = ["EMPTY_INPUT", "EXAMPLES", "MAX_BATCH_ROWS", "PageLimits", "Predictor", "ServeConfig", "Verdict",
           "build_app", "serve", "verdict"]

SERVER_FAULT = "Something went wrong on the server while classifying; its log has the details."

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
    more = {("because" if k == "explanation" else k): value for k, value in more.items()}
    return f"**{v.label}**, confidence {v.confidence:.4f}, needs review: {review}" + "".join(
        f", {k.replace('_', ' ')}: {value}" for k, value in more.items())


_IN_THE_HEADLINE = {"text", "label", "confidence", "needs_review", "top_k", "dead_letter"}


@dataclass(frozen=True)
class ServeConfig:
    model_dir: str
    port: int = 7860
    top_k: int = DEFAULT_TOP_K
    review_threshold: float = DEFAULT_REVIEW_THRESHOLD
    access: Access = field(default_factory=Access)
    limits: PageLimits = field(default_factory=PageLimits)
    precision: str = "auto"  # worker.config.WorkerConfig's
    force_precision: bool = False


def plain_errors(fn):
    """Every failure reaches the browser as one sentence: a user's mistake as itself, anything
    else as SERVER_FAULT (the traceback goes to the server's log, never to the page)."""
    import gradio as gr

    @functools.wraps(fn)
    def wrapper(*args):
        try:
            return fn(*args)
        except UserError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        except Exception:
            logging.getLogger(__name__).exception("the page's request failed")
            raise gr.Error(SERVER_FAULT, print_exception=False) from None
    return wrapper


def write_download(frame, folder: str) -> str:
    """The results as CSV, formula-safe, in Gradio's own cache folder so it is served from there
    (no second copy) and deleted by its age-based clean-up."""
    path = os.path.join(folder, uuid.uuid4().hex, "predictions.csv")
    os.makedirs(os.path.dirname(path), mode=0o700)
    spreadsheet_safe(frame).to_csv(path, index=False)
    return path


def build_app(predictor: Predictor):
    import gradio as gr

    limits = predictor.limits

    @plain_errors
    def one(text):
        p = predictor.classify_one(text)
        return dict(p.top), verdict(p), [] if p.rejected else predictor.highlighted(p)

    @plain_errors
    def many(pasted, upload):
        try:
            frame = predictor.classify_many(pasted, upload)
        finally:
            forget(upload)  # read once, then gone: the texts are personal data
        return frame, write_download(frame, app.GRADIO_CACHE), None

    with gr.Blocks(title="Complaint classifier", delete_cache=limits.cache_clean_up) as app:
        gr.Markdown(predictor.header())
        with gr.Tab("One complaint"):
            text = gr.Textbox(label="Complaint", lines=4, elem_id="complaint", max_length=limits.max_text_chars)
            button = gr.Button("Classify", variant="primary", elem_id="classify")
            result = gr.Markdown(elem_id="verdict")
            top = gr.Label(num_top_classes=predictor.k, label="Top categories", elem_id="top")
            why = gr.HighlightedText(label="Why: the words that pushed most towards the label (the label's "
                                     "probability each one adds)", elem_id="why", show_legend=False)
            gr.Examples(EXAMPLES, inputs=text)
            button.click(one, inputs=text, outputs=[top, result, why])
        with gr.Tab("Many complaints"):
            pasted = gr.Textbox(label="One complaint per line", lines=8, elem_id="pasted")
            upload = gr.File(label=f"…or a CSV/Parquet file with a 'text' column (at most {limits.max_upload_mb} MB, "
                             f"{limits.max_rows:,} rows)", file_types=[".csv", ".parquet"], type="filepath",
                             elem_id="upload")
            run_all = gr.Button("Classify all", elem_id="classify-all")
            table = gr.Dataframe(label="Predictions", elem_id="table")
            download = gr.File(label="Download CSV", elem_id="download")
            run_all.click(many, inputs=[pasted, upload], outputs=[table, download, upload])
    app.queue(max_size=limits.queue_size, default_concurrency_limit=1)
    return app


def serve(config: ServeConfig) -> None:
    credentials = config.access.credentials()  # refuses an open network page before anything loads
    predictor = Predictor(config.model_dir, config.top_k, config.review_threshold, config.limits, config.precision,
                          config.force_precision)
    private = tempfile.mkdtemp(prefix="complaints-page-")  # mode 0700: this user's eyes only
    os.environ["GRADIO_TEMP_DIR"] = private  # before Gradio's import, which reads it
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio as gr
    except ImportError:
        shutil.rmtree(private, ignore_errors=True)
        raise UserError("the web page needs the ui extra: pip install -e '.[ui]'") from None

    theme = gr.themes.Default(font=["sans-serif"], font_mono=["monospace"])  # no web fonts: works offline
    signal.signal(signal.SIGTERM, _as_interrupt)  # Gradio stops cleanly on KeyboardInterrupt
    try:
        build_app(predictor).launch(
            server_name=config.access.host, server_port=config.port, share=False, show_error=False, theme=theme,
            auth=credentials or None, max_file_size=config.limits.max_upload_bytes, allowed_paths=[],
            auth_message="Sign in to classify complaints.")
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _as_interrupt(signum, frame):
    raise KeyboardInterrupt
