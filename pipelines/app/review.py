"""The review loop's way out: a night's uncertain rows, with their texts, as tasks for reviewers.

**Export** (`complaints review export`) takes a committed night (`_SUCCESS` present),
picks its `needs_review` rows (or every row, or one label), samples them with a seed
when `--limit` asks, and writes Label Studio tasks (`.json`, with the labelling config
beside it as `FILE.label_config.xml`) or CSV. The prediction record holds no text, and
this stays so: complaint texts carry names, addresses and phone numbers, and the
labels are read far more widely than the archive. The export joins the chosen ids
back to the very files the night read (`summary.json`'s `inputs`, with its `source`
saying which columns were the id and the text, or how ids were derived), reading only
those columns.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from model import files
from model.errors import UserError
from pipelines.app import label_studio
from pipelines.app.predictor import because
from pipelines.app.uploads import defused
from pipelines.nightly.reading import derived_ids
from pipelines.plumbing import commit
from pipelines.plumbing.night import normalised

CSV_COLUMNS = ["id", "text", "label", "confidence", "model_version", "top_k", "explanation", "night", "category",
               "annotator"]  # a reviewer fills `category` (and, in a team, `annotator`)
CONFIG_SUFFIX = ".label_config.xml"


@dataclass(frozen=True)
class Selection:
    """Which rows of a night go to review."""

    everything: bool = False
    label: str | None = None
    limit: int | None = None
    seed: int = 0

    def describe(self) -> str:
        what = "every row" if self.everything else f"label {self.label!r}" if self.label else "needs_review rows"
        return what + (f", a seeded sample of at most {self.limit:,}" if self.limit else "")


def export(output: str, to: str, labels: list[str], model_version: str, selection: Selection) -> str:
    """Write the night's chosen rows to `to` (`.json`: Label Studio tasks and their config; `.csv`); the line the
    command prints."""
    kind = _kind(to)
    records = chosen_records(output, model_version, selection)
    if kind == "json":
        with open(to, "w", encoding="utf-8") as f:
            json.dump([label_studio.task(r) for r in records], f, ensure_ascii=False, indent=1)
        config = to + CONFIG_SUFFIX
        with open(config, "w", encoding="utf-8") as f:
            f.write(label_studio.labelling_config(labels))
        beside = f", and the labelling config for its {len(labels)} categories to {config}"
    else:
        with open(to, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(CSV_COLUMNS)
            for r in records:  # customer text, for a spreadsheet: a formula's lead is defused, as on the page
                writer.writerow([defused(cell) for cell in (
                    r["id"], r["text"], r["label"], f"{r['confidence']:.4f}", r["model_version"], r["top_k_shown"],
                    r["explanation_shown"], r["night"], "", "")])
        beside = " (fill in `category` where the label is wrong, leave it empty where it is right)"
    return f"wrote {len(records):,} rows of {output} ({selection.describe()}) to {to}{beside}"


def chosen_records(output: str, model_version: str, selection: Selection) -> list[dict]:
    """The committed night's chosen rows, each with its text from the archive and what the model said, shown."""
    if not files.exists(commit.join(output, commit.SUCCESS)):
        raise UserError(f"{output} has no _SUCCESS: not a committed night (a run still under way, or one that "
                        "failed); export from a night whose labelling run finished")
    summary = commit.read_summary(output)
    if summary.get("model_version") != model_version:
        raise UserError(f"{output} was labelled by model {summary.get('model_version')}, --model is {model_version}: "
                        "give the model that labelled the night (its categories make the labelling config)")
    rows = _chosen(output, summary, selection)
    texts = _texts(summary, output, set(rows.column("id").to_pylist()))
    missing = [i for i in rows.column("id").to_pylist() if i not in texts]
    if missing:
        raise UserError(f"{len(missing):,} of the chosen ids (e.g. {missing[0]!r}) are not in the files the night "
                        "read (moved or rewritten since?): the export needs the archive as it was labelled")
    night = normalised(output)
    return [{**_shown(r, texts[r["id"]]), "night": night} for r in rows.to_pylist()]


def _kind(path: str) -> str:
    kind = os.path.splitext(path)[1].lower().lstrip(".")
    if kind not in ("json", "csv"):
        raise UserError(f"{path}: write .json (Label Studio tasks) or .csv")
    return kind


def night_ids(output: str) -> set[str] | None:
    """Every id the committed night at `output` labelled; None where no committed night is there (any more)."""
    try:
        if not files.exists(commit.join(output, commit.SUCCESS)):
            return None
        ids: set[str] = set()
        for path in _predictions(output, commit.read_summary(output)):
            ids.update(str(i) for i in pq.ParquetFile(_readable(path)).read(columns=["id"]).column(0).to_pylist())
        return ids
    except (OSError, pa.ArrowException, ValueError, KeyError):
        return None


def _predictions(output: str, summary: dict) -> list[str]:
    paths = [commit.join(output, name) for name in summary.get("output_files", []) if "predictions-" in name]
    return paths or sorted(files.glob(commit.join(output, "predictions-*.parquet")))


def _chosen(output: str, summary: dict, selection: Selection) -> pa.Table:
    paths = _predictions(output, summary)
    wanted = ["id", "label", "confidence", "top_k", "needs_review", "model_version"]
    tables = []
    for path in paths:
        parquet = pq.ParquetFile(_readable(path))
        names = parquet.schema_arrow.names
        tables.append(parquet.read(columns=wanted + (["explanation"] if "explanation" in names else [])))
    table = pa.concat_tables(tables, promote_options="default") if tables else pa.table({n: [] for n in wanted})
    if selection.label is not None:
        table = table.filter(pc.equal(table.column("label"), selection.label))
    elif not selection.everything:
        table = table.filter(table.column("needs_review"))
    table = table.sort_by("id")
    if selection.limit is not None and table.num_rows > selection.limit:
        picked = np.sort(np.random.default_rng(selection.seed).choice(table.num_rows, selection.limit, replace=False))
        table = table.take(pa.array(picked))
    return table


def _texts(summary: dict, output: str, ids: set[str]) -> dict[str, str]:
    """The chosen ids' texts, from the files the night read (only their id and text columns)."""
    source = summary.get("source") or {"id_column": "id", "text_column": "text", "derive_missing_id": False}
    found: dict[str, str] = {}
    for entry in summary.get("inputs", []):
        path = entry["path"]
        try:
            parquet = pq.ParquetFile(_readable(path))
            if source["id_column"] in parquet.schema_arrow.names:
                table = parquet.read(columns=[source["id_column"], source["text_column"]])
                keys, column = [str(k) for k in table.column(0).to_pylist()], table.column(1)
            elif source.get("derive_missing_id") and source.get("input"):  # ids as the night derived them
                column = parquet.read(columns=[source["text_column"]]).column(0)
                keys = derived_ids(path, 0, len(column))
            else:
                continue
        except (OSError, pa.ArrowException) as exc:
            raise UserError(f"{path} (read by the night) cannot be read now: {exc}") from None
        texts = column.to_pylist()
        for key, text in zip(keys, texts, strict=True):
            if key in ids:
                found[key] = text
    return found


def _readable(path: str):
    """A local path as it is; an object (gs://) read whole into memory first (pyarrow cannot open it)."""
    return pa.BufferReader(files.read_bytes(path)) if files.remote(path) else path


def _shown(row: dict, text: str) -> dict:
    return {**row, "text": text,
            "top_k_shown": "; ".join(f"{t['label']} {t['confidence']:.3f}" for t in row["top_k"] or []),
            "explanation_shown": because([(e["word"], e["contribution"]) for e in row.get("explanation") or []])}
