"""Generated Parquet archives for the job tests, with the bad rows real exports have."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq

from model.sample import generate

BAD_TEXTS = [None, "", "?!... :)"]  # missing, empty, empty after standardisation


def write_archive(directory, rows: int = 3000, files: int = 3, seed: int = 13, with_id: bool = True,
                  row_group_size: int = 400) -> list[dict]:
    """Write `files` Parquet files with a `store` column and 3 bad rows; returns the input rows."""
    os.makedirs(directory, exist_ok=True)
    frame = generate(rows, seed=seed, labelled=False)
    frame["store"] = [f"store-{i % 5}" for i in range(rows)]
    frame.loc[frame.index[[rows // 300, rows // 6, rows // 2]], "text"] = BAD_TEXTS
    all_rows = []
    for part in range(files):
        chunk = frame.iloc[part::files].reset_index(drop=True)
        if not with_id:
            chunk = chunk.drop(columns=["id"])
        path = os.path.join(directory, f"part-{part}.parquet")
        pq.write_table(pa.Table.from_pandas(chunk, preserve_index=False), path, compression="zstd",
                       row_group_size=row_group_size)
        all_rows += chunk.assign(_file=os.path.basename(path), _row=range(len(chunk))).to_dict("records")
    return all_rows


def corrupt_row_group(path: str, row_group: int = 1) -> None:
    """Garble the first page header of one row group's text column, leaving the footer readable."""
    column = pq.ParquetFile(path).metadata.row_group(row_group).column(1)
    data = bytearray(open(path, "rb").read())
    start = column.data_page_offset
    data[start : start + 64] = b"\xff" * 64
    open(path, "wb").write(data)


def snapshot(folder) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones too) with its content: "as it was" means equal snapshots."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            found[os.path.relpath(path, folder)] = open(path, "rb").read()
    return found


def output_problem(names: list[str], summary: dict, counts: dict[str, int]) -> str | None:
    """What a consumer would find wrong in a committed output: files that disagree with its summary, or None.

    `names`: the output's visible files; `counts`: the rows of each Parquet file among them.
    """
    listed = sorted(n for n in names if n.endswith(".parquet") or n == "report.png")
    if listed != sorted(summary["output_files"]):
        return f"files {listed} beside a summary listing {sorted(summary['output_files'])}"
    predicted = sum(c for n, c in counts.items() if n.startswith("predictions-"))
    dead = sum(c for n, c in counts.items() if n.startswith("dead_letters-"))
    if (predicted, dead) != (summary["predicted"], summary["dead_lettered"]):
        return f"{predicted} + {dead} rows in files beside a summary of {summary['predicted']} + " \
               f"{summary['dead_lettered']}"
    return None
