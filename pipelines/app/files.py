"""Small local-file helpers for the commands (sample data, reports)."""

from __future__ import annotations

import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def write_frame(frame: pd.DataFrame, path: str) -> None:
    """Write a DataFrame as Parquet (zstd), creating the parent directory."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, compression="zstd")
