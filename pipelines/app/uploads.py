"""What the web page lets in and what it hands back: limits, lazy reading of uploads, safe CSV.

The page is the one door a stranger can reach, so nothing it reads may grow past a
bound it chose: an upload is read at most `max_rows + 1` rows deep (a Parquet file's
footer is believed for the row count and its uncompressed size before any row is
decoded), and pasted text is held to the same byte budget as an upload.
"""

from __future__ import annotations

import csv
import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from model.errors import UserError
from pipelines.app.page_limits import PageLimits

TEXT_COLUMN = "text"
FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")  # OWASP's list for CSV injection


def pasted_texts(pasted: str | None, limits: PageLimits) -> list[str]:
    """One complaint per non-blank line, within the byte and row budget."""
    pasted = pasted or ""
    if len(pasted.encode("utf-8", "surrogatepass")) > limits.max_upload_bytes:
        raise UserError(f"The pasted text is larger than this page takes ({limits.max_upload_mb} MB); "
                        "use `complaints label` for archives.")
    texts = [line for line in pasted.splitlines() if line.strip()]
    return _within(texts, limits, len(texts) > limits.max_rows)


def uploaded_texts(path: str, limits: PageLimits) -> list[str]:
    """The non-blank `text` cells of an uploaded CSV or Parquet file, read no deeper than the limits."""
    try:
        size = os.path.getsize(path)
    except OSError:
        raise UserError("The uploaded file is no longer on the server; upload it again.") from None
    if size > limits.max_upload_bytes:
        raise UserError(f"The uploaded file is {size / 2**20:.1f} MB, more than this page takes "
                        f"({limits.max_upload_mb} MB); use `complaints label` for archives.")
    if path.lower().endswith(".parquet"):
        cells, more = _parquet_cells(path, limits)
    elif path.lower().endswith(".csv"):
        cells, more = _csv_cells(path, limits)
    else:
        raise UserError("Upload a .csv or .parquet file with a 'text' column.")
    return _within([c for c in cells if c.strip()], limits, more)


def _within(texts: list[str], limits: PageLimits, more: bool) -> list[str]:
    if more:
        raise UserError(f"There are more than {limits.max_rows:,} complaints, more than this page takes; "
                        "use `complaints label` for archives.")
    longest = max((len(t) for t in texts), default=0)
    if longest > limits.max_text_chars:
        raise UserError(f"A complaint has {longest:,} characters, more than this page takes "
                        f"({limits.max_text_chars:,}).")
    return texts


def _csv_cells(path: str, limits: PageLimits) -> tuple[list[str], bool]:
    try:
        columns = pd.read_csv(path, nrows=0, encoding="utf-8").columns
        if TEXT_COLUMN not in columns:
            raise UserError(_no_text_column(columns))
        frame = pd.read_csv(path, usecols=[TEXT_COLUMN], nrows=limits.max_rows + 1, dtype=str,
                            keep_default_na=False, encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError("The uploaded CSV is not UTF-8 text; save it as UTF-8 and upload it again.") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error) as exc:
        raise UserError(f"The uploaded CSV could not be read: {_first_line(exc)}.") from None
    cells = frame[TEXT_COLUMN].tolist()
    return cells[: limits.max_rows], len(cells) > limits.max_rows


def _parquet_cells(path: str, limits: PageLimits) -> tuple[list[str], bool]:
    try:
        file = pq.ParquetFile(path)
    except (pa.ArrowException, OSError):
        raise UserError("The uploaded file is not a readable Parquet file.") from None
    names = file.schema_arrow.names
    if TEXT_COLUMN not in names:
        raise UserError(_no_text_column(names))
    if file.metadata.num_rows > limits.max_rows:
        return [], True
    index = names.index(TEXT_COLUMN)
    expanded = sum(file.metadata.row_group(g).column(index).total_uncompressed_size
                   for g in range(file.metadata.num_row_groups))
    if expanded > limits.max_expanded_mb * 2**20:
        raise UserError(f"The uploaded file's text decompresses to {expanded / 2**20:,.0f} MB, more than this "
                        f"page takes ({limits.max_expanded_mb} MB).")
    cells: list[str] = []
    try:
        for batch in file.iter_batches(batch_size=256, columns=[TEXT_COLUMN]):
            column = batch.column(0)
            if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
                    or pa.types.is_string_view(column.type)):
                raise UserError(f"The uploaded file's 'text' column holds {column.type}, not text.")
            cells.extend("" if c is None else c for c in column.to_pylist())
            if len(cells) > limits.max_rows:  # the footer undercounted: stop reading at once
                return [], True
    except pa.ArrowException as exc:
        raise UserError(f"The uploaded Parquet file could not be read: {_first_line(exc)}.") from None
    return cells, False


def _no_text_column(columns) -> str:
    shown = ", ".join(map(str, list(columns)[:20])) or "none"
    return f"The uploaded file has no 'text' column (columns: {shown})."


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")[:200]


def forget(path: str | None) -> None:
    """Deletes an uploaded file (and its folder, if that is left empty): complaints are personal data."""
    if not path:
        return
    try:
        os.remove(path)
        os.rmdir(os.path.dirname(path))
    except OSError:
        pass


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells a spreadsheet would read as a formula get a leading apostrophe (CSV injection)."""
    safe = frame.copy()
    for name in safe.columns:
        if safe[name].dtype == object or pd.api.types.is_string_dtype(safe[name].dtype):
            safe[name] = safe[name].map(defused)
    return safe


def defused(value):
    """A text a spreadsheet would run as a formula (OWASP's leads), with a leading apostrophe; other values as
    they are. Apostrophes already before a lead count too, so `restored` gives every text back exactly."""
    if isinstance(value, str) and value.lstrip("'").startswith(FORMULA_LEADS):
        return "'" + value
    return value


def restored(value):
    """`defused`'s text back, as a CSV the project wrote (and a spreadsheet kept) holds it."""
    if isinstance(value, str) and value.startswith("'") and value.lstrip("'").startswith(FORMULA_LEADS):
        return value[1:]
    return value
