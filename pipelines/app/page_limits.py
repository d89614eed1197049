"""The web page's bounds, importable without pandas or pyarrow (the CLI reads them for `serve --help`)."""

from __future__ import annotations

from dataclasses import dataclass

from worker.defaults import MAX_TEXT_CHARS


@dataclass(frozen=True)
class PageLimits:
    """The page's bounds; one request never costs more than these, whoever sends it."""

    max_text_chars: int = MAX_TEXT_CHARS  # the jobs truncate above this; the page refuses instead
    max_rows: int = 5_000
    max_upload_mb: int = 10  # also the bound on pasted text
    max_expanded_mb: int = 100  # a compressed Parquet upload may decode to at most this much text
    queue_size: int = 16
    download_minutes: float = 10  # how long a results CSV stays downloadable

    @property
    def cache_clean_up(self) -> tuple[int, int]:
        """Gradio's `delete_cache` (every, older than), in whole seconds."""
        age = max(1, round(self.download_minutes * 60))
        return max(1, min(60, age // 4)), age

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 2**20
