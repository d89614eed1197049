"""The web page's bounds, importable without pandas or pyarrow (the CLI reads them for `serve --help`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from worker.defaults import MAX_TEXT_CHARS


@dataclass(frozen=True)
class PageLimits:
    """The page's bounds; one request never costs more than these, whoever sends it."""

    max_text_chars: int = field(default=MAX_TEXT_CHARS, metadata={  # the jobs truncate above; the page refuses
        "low": 1, "help": "Longest complaint the page takes."})
    max_rows: int = field(default=5_000, metadata={"low": 1, "help": "Most complaints one request may classify."})
    max_upload_mb: int = field(default=10, metadata={
        "low": 1, "help": "Largest upload (and pasted text) one request may send."})
    max_expanded_mb: int = 100  # a compressed Parquet upload may decode to at most this much text
    queue_size: int = field(default=16, metadata={
        "low": 1, "help": "Requests that may wait; more are told the queue is full."})
    download_minutes: float = field(default=10, metadata={
        "low": 0.02, "help": "How long a results CSV stays on the server for download."})

    @property
    def cache_clean_up(self) -> tuple[int, int]:
        """Gradio's `delete_cache` (every, older than), in whole seconds."""
        age = max(1, round(self.download_minutes * 60))
        return max(1, min(60, age // 4)), age

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 2**20
